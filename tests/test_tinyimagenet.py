"""Tiny ImageNet converter: the real subset beside the checkout and hand-made broken copies."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tedloc.cli import main
from tedloc.data import convert_tinyimagenet, load_dataset
from tedloc.errors import DataError


def _fake_tin(root, wnids=("n02", "n01", "n03"), per_class=6, val=4):
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text(
        "n00\tentity\nn01\tgoldfish, Carassius auratus\nn02\t  tabby,  tabby cat\nn03\tEgyptian cat\n")
    for w in wnids:
        d = root / "train" / w / "images"
        d.mkdir(parents=True)
        lines = []
        for k in range(per_class):
            Image.new("RGB", (64, 64), (k, 0, 0)).save(d / f"{w}_{k}.JPEG")
            lines.append(f"{w}_{k}.JPEG\t{k}\t1\t{40 + k}\t63")
        (root / "train" / w / f"{w}_boxes.txt").write_text("\n".join(lines) + "\n")
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for k in range(val):
        Image.new("L", (64, 64), k).save(root / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnids[k % len(wnids)]}\t0\t0\t{10 + k}\t20")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_fake_layout(tmp_path):
    src = _fake_tin(tmp_path / "src")
    ds = load_dataset(convert_tinyimagenet(src, tmp_path / "out", val_per_class=2))
    assert ds.class_names == ["goldfish", "tabby", "Egyptian cat"]  # sorted wnids, first synonym, cleaned
    assert {n: len(s) for n, s in ds.splits.items()} == {"train": 12, "val": 6, "test": 4}
    for split in (ds["train"], ds["val"]):
        for image_id, label, boxes in zip(split.image_ids, split.labels, split.boxes):
            k = int(image_id.rsplit("_", 1)[1].split(".")[0])
            assert boxes.tolist() == [[k, 1, 40 + k, 63]]
            assert ds.class_names[label] == {"n01": "goldfish", "n02": "tabby", "n03": "Egyptian cat"}[
                image_id.split("/")[1]]
    assert ds["test"].boxes[3].tolist() == [[0, 0, 13, 20]]
    assert ds["test"].image_path(0) == src.resolve() / "val/images/val_0.JPEG"  # referenced, not copied
    assert not any((tmp_path / "out").rglob("*.JPEG"))
    # the held-out choice is a pure function of the file names
    again = load_dataset(convert_tinyimagenet(src, tmp_path / "out2", val_per_class=2))
    assert again["val"].image_ids == ds["val"].image_ids


@pytest.mark.parametrize(
    "target,text,needle",
    [
        ("train/n01/n01_boxes.txt", "n01_0.JPEG\t0\t1\t2\n", "n01_boxes.txt:1: expected 5 tab-separated"),
        ("train/n01/n01_boxes.txt", "n01_0.JPEG\t5\t1\t2\t9\n", "n01_boxes.txt:1: invalid box"),
        ("train/n01/n01_boxes.txt", "n01_0.JPEG\t0\t1\t2\t64\n", "n01_boxes.txt:1: box (0, 1, 2, 64) lies outside the 64x64 image"),
        ("val/val_annotations.txt", "val_0.JPEG\tn99\t0\t0\t1\t1\n", "val_annotations.txt:1: wnid: unknown wnid"),
    ],
)
def test_bad_source_files_are_named(tmp_path, target, text, needle):
    src = _fake_tin(tmp_path / "src")
    (src / target).write_text(text)
    with pytest.raises(DataError) as e:
        convert_tinyimagenet(src, tmp_path / "out", val_per_class=2)
    assert needle in str(e.value)
    assert not (tmp_path / "out" / "dataset.yaml").exists()


def test_not_a_tiny_imagenet_folder(tmp_path):
    with pytest.raises(DataError, match="wnids.txt is missing"):
        convert_tinyimagenet(tmp_path, tmp_path / "out")


def test_real_subset_converts_and_checks(tiny_imagenet_src, tmp_path, capsys):
    out = tmp_path / "tin"
    assert main(["data", "tinyimagenet", "--src", str(tiny_imagenet_src), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == 200 and report["problems"] == []
    assert {k: v["images"] for k, v in report["splits"].items()} == {"train": 58000, "val": 2000, "test": 2000}
    assert {k: v["boxes"] for k, v in report["splits"].items()} == {"train": 58000, "val": 2000, "test": 2000}
    ds = load_dataset(out)
    # boxes are those of the source files
    wnid = "n01443537"
    k = ds.class_names.index("goldfish")
    src_boxes = {}
    for line in (tiny_imagenet_src / "train" / wnid / f"{wnid}_boxes.txt").read_text().splitlines():
        f, *xs = line.split("\t")
        src_boxes[f"train/{wnid}/images/{f}"] = [int(x) for x in xs]
    got = {i: b.tolist()[0] for s in ("train", "val") for i, b, l in
           zip(ds[s].image_ids, ds[s].boxes, ds[s].labels) if l == k}
    assert got == src_boxes and len(got) == 300
    ann = (tiny_imagenet_src / "val" / "val_annotations.txt").read_text().splitlines()[0].split("\t")
    test = ds["test"]
    j = test.index_of(f"val/images/{ann[0]}")
    assert test.boxes[j].tolist() == [[int(x) for x in ann[2:]]]
    assert ds.class_names[test.labels[j]] == ds.class_names[sorted(
        (tiny_imagenet_src / "wnids.txt").read_text().split()).index(ann[1])]
    assert np.bincount(ds["val"].labels).tolist() == [10] * 200


def test_first_classes_only(tmp_path, capsys):
    """``--classes N``: the first N classes in sorted-wnid order, their train/val images and their test images."""
    src = _fake_tin(tmp_path / "src")
    ds = load_dataset(convert_tinyimagenet(src, tmp_path / "out", val_per_class=2, classes=2))
    assert ds.class_names == ["goldfish", "tabby"]
    assert {n: len(s) for n, s in ds.splits.items()} == {"train": 8, "val": 4, "test": 3}
    assert sorted({i.split("/")[1] for i in ds["train"].image_ids}) == ["n01", "n02"]
    assert ds["test"].image_ids == ["val/images/val_0.JPEG", "val/images/val_1.JPEG", "val/images/val_3.JPEG"]
    assert [ds.class_names[k] for k in ds["test"].labels] == ["tabby", "goldfish", "tabby"]
    full = load_dataset(convert_tinyimagenet(src, tmp_path / "full", val_per_class=2))
    assert ds["val"].image_ids == [i for i in full["val"].image_ids if "/n03/" not in i]
    with pytest.raises(DataError, match="--classes must be in 1..3, got 4"):
        convert_tinyimagenet(src, tmp_path / "bad", classes=4)
    assert main(["data", "tinyimagenet", "--src", str(src), "--out", str(tmp_path / "cli"), "--val-per-class", "2",
                 "--classes", "1"]) == 0
    assert load_dataset(tmp_path / "cli").class_names == ["goldfish"]
