"""The wsolevaluation metadata reader/writer, on the real official metadata and on broken files."""
from __future__ import annotations

import numpy as np
import pytest

from tedloc.data import Split, WSOLDataset, import_wsol, load_dataset, read_split_metadata, save_dataset
from tedloc.data.wsol_format import write_split_metadata
from tedloc.errors import DataError

# (dataset, split) -> (images, localization rows, max rows per image): the official counts
OFFICIAL = {
    ("CUB", "train"): (5994, 5994, 1),
    ("CUB", "val"): (1000, 1000, 1),
    ("CUB", "test"): (5794, 5794, 1),
    ("ILSVRC", "val"): (10000, 18532, 259),
    ("ILSVRC", "test"): (50000, 80477, 20),
    ("OpenImages", "val"): (2500, 3854, 25),
    ("OpenImages", "test"): (5000, 7632, 62),
}
CLASSES = {"CUB": 200, "ILSVRC": 1000, "OpenImages": 100}


@pytest.mark.parametrize("dataset,split", sorted(OFFICIAL))
def test_official_metadata_counts(wsol_metadata, dataset, split):
    s, problems = read_split_metadata(wsol_metadata / dataset / split, split, CLASSES[dataset])
    assert problems == []
    images, rows, most = OFFICIAL[(dataset, split)]
    assert len(s) == images
    per_image = [len(m) for m in s.mask_paths] if dataset == "OpenImages" else [len(b) for b in s.boxes]
    assert sum(per_image) == rows and max(per_image) == most and min(per_image) >= 1
    assert len(np.unique(s.labels)) == CLASSES[dataset]
    if dataset == "OpenImages":
        assert (s.sizes == -1).all() and s.num_boxes == 0
        assert all(ig is not None and ig.endswith("_ignore.png") for ig in s.ignore_paths)
    else:
        w, h = s.sizes[:, 0], s.sizes[:, 1]
        for i, b in enumerate(s.boxes[:2000]):
            assert (b[:, 2] <= w[i] - 1).all() and (b[:, 3] <= h[i] - 1).all()


def test_official_first_records(wsol_metadata):
    s, _ = read_split_metadata(wsol_metadata / "CUB" / "train", "train", 200)
    assert s.image_ids[0] == "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg"
    assert s.labels[0] == 0 and tuple(s.sizes[0]) == (500, 336)
    assert s.boxes[0].tolist() == [[139, 30, 292, 294]]
    v, _ = read_split_metadata(wsol_metadata / "ILSVRC" / "val", "val", 1000)
    assert v.boxes[v.index_of("val2/0/0.jpeg")].tolist()[0] == [156, 163, 318, 230]


@pytest.mark.parametrize("dataset", ["CUB", "OpenImages"])
def test_import_then_write_read_identity(wsol_metadata, tmp_path, dataset):
    out, skipped = import_wsol(wsol_metadata, dataset, tmp_path / "ds")
    ds = load_dataset(out)
    assert ds.num_classes == CLASSES[dataset]
    for name, split in ds.splits.items():
        original, _ = read_split_metadata(wsol_metadata / dataset / name, name, CLASSES[dataset])
        assert split.equals(original)
    # write -> read again is the identity
    save_dataset(ds, tmp_path / "again", image_root=None)
    again = load_dataset(tmp_path / "again")
    assert again.class_names == ds.class_names
    assert all(again[n].equals(ds[n]) for n in ds.splits)
    if dataset == "CUB":
        assert ds.class_names[0] == "Black footed Albatross" and ds.class_names[199] == "Common Yellowthroat"
        assert skipped == {}
    else:
        assert ds.class_names[0] == "/m/01226z" and "train" in skipped


def test_ilsvrc_class_names(wsol_metadata, tmp_path):
    out, skipped = import_wsol(wsol_metadata, "ILSVRC", tmp_path / "ds")
    ds = load_dataset(out, splits=["val"])
    assert ds.class_names[:2] == ["tench", "goldfish"] and len(ds.class_names) == 1000
    assert "train" in skipped


def _write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


GOOD = dict(
    image_ids="a/1.jpg\na/2.jpg\n",
    class_labels="a/1.jpg,0\na/2.jpg,1\n",
    image_sizes="a/1.jpg,10,20\na/2.jpg,30,40\n",
    localization="a/1.jpg,0,0,9,19\na/2.jpg,1,2,3,4\na/2.jpg,5,6,7,8\n",
)


def test_reader_accepts_crlf_and_missing_final_newline(tmp_path):
    files = {k: v.replace("\n", "\r\n").rstrip("\r\n") for k, v in GOOD.items()}
    s, problems = read_split_metadata(_write(tmp_path / "m", **files), "val", 2)
    assert problems == []
    assert s.image_ids == ["a/1.jpg", "a/2.jpg"]
    assert s.boxes[1].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


@pytest.mark.parametrize(
    "file,text,line,needle",
    [
        ("localization", "a/1.jpg,0,0,9,19\na/2.jpg,1,2,3\n", 2, "fields"),
        ("localization", "a/1.jpg,0,0,9,19\na/2.jpg,5,2,3,4\n", 2, "x1 < x0"),
        ("localization", "a/1.jpg,0,0,10,19\n", 1, "outside the 10x20 image"),
        ("localization", "a/1.jpg,-1,0,9,19\n", 1, "negative"),
        ("localization", "a/1.jpg,0,0,9.5,19\n", 1, "integer"),
        ("localization", "a/3.jpg,0,0,1,1\n", 1, "unknown image id"),
        ("class_labels", "a/1.jpg,0\na/2.jpg,7\n", 2, "unknown class 7"),
        ("class_labels", "a/1.jpg,0\na/2.jpg,x\n", 2, "integer"),
        ("image_ids", "a/1.jpg\n../etc/passwd\n", 2, "escapes the image root"),
        ("image_ids", "a/1.jpg\n/abs/2.jpg\n", 2, "absolute"),
        ("image_ids", "a/1.jpg\na/1.jpg\n", 2, "duplicate"),
        ("image_ids", "a/1.jpg\n\na/2.jpg\n", 2, "blank line"),
        ("image_sizes", "a/1.jpg,10,20\na/2.jpg,0,40\n", 2, "positive"),
    ],
)
def test_reader_reports_file_line_and_reason(tmp_path, file, text, line, needle):
    folder = _write(tmp_path / "m", **{**GOOD, file: text})
    _, problems = read_split_metadata(folder, "val", 2)
    assert problems, "the broken line must be reported"
    p = problems[0]
    assert p.path.endswith(f"{file}.txt") and p.line == line and needle in p.message
    assert f"{file}.txt:{line}:" in str(p)


def test_masks_only_first_line_names_ignore(tmp_path):
    folder = _write(tmp_path / "m", image_ids="x.jpg\n", class_labels="x.jpg,0\n", image_sizes="",
                    localization="x.jpg,m1.png,ig.png\nx.jpg,m2.png,ig2.png\n")
    s, problems = read_split_metadata(folder, "test", 1)
    assert problems[0].line == 2 and "ignore" in problems[0].message
    assert s.mask_paths[0] == ("m1.png",) and s.ignore_paths[0] == "ig.png"


def test_load_dataset_raises_one_error_listing_problems(tmp_path):
    root = tmp_path / "ds"
    _write(root / "metadata" / "val", **{**GOOD, "localization": "a/1.jpg,0,0,99,19\na/2.jpg,9,2,3,4\n"})
    (root / "class_names.txt").write_text("cat\ndog\n")
    (root / "dataset.yaml").write_text("name: t\nimage_root: images\n")
    with pytest.raises(DataError) as e:
        load_dataset(root)
    text = str(e.value)
    assert "localization.txt:1:" in text and "localization.txt:2:" in text
    ds, problems = load_dataset(root, strict=False)
    assert len(problems) == 2 and ds["val"].num_boxes == 0


def test_dataset_yaml_errors(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    with pytest.raises(DataError, match="dataset.yaml is missing"):
        load_dataset(root)
    (root / "dataset.yaml").write_text("name: [unclosed\n")
    with pytest.raises(DataError, match="invalid YAML"):
        load_dataset(root)


def test_write_read_identity_with_boxes_and_masks(tmp_path):
    split = Split("test", ["c/1.png", "c/2.png", "d/3.png"], [0, 1, 1], [[5, 6], [7, 8], [9, 9]],
                  [[[0, 0, 4, 5]], [], [[1, 1, 2, 2], [0, 0, 8, 8]]],
                  [("c/1_m.png",), (), ("d/3_a.png", "d/3_b.png")], ["c/1_i.png", None, "d/3_i.png"])
    write_split_metadata(split, tmp_path / "m")
    back, problems = read_split_metadata(tmp_path / "m", "test", 2)
    assert problems == [] and back.equals(split)
    ds = WSOLDataset("x", ["a", "b"], {"test": split})
    save_dataset(ds, tmp_path / "ds", image_root="images", mask_root="/abs/masks")
    again = load_dataset(tmp_path / "ds")
    assert again["test"].equals(split)
    assert again["test"].image_root == tmp_path / "ds" / "images"
    assert str(again["test"].mask_root) == "/abs/masks"


def test_writer_refuses_unrepresentable_ids(tmp_path):
    split = Split("t", ["a,b.jpg"], [0], [[1, 1]], [[]])
    with pytest.raises(DataError, match="comma"):
        write_split_metadata(split, tmp_path)
