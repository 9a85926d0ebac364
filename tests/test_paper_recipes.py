"""The shipped configs, ``--config`` and ``tedloc bench cub|ilsvrc|openimages`` on tiny fake datasets in each
wsolevaluation format (random weights, small sizes: the code path, not the numbers)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tedloc.cli import main

open_clip = pytest.importorskip("open_clip")

from conftest import TINY_CLIP, register_tiny_clip  # noqa: E402



@pytest.fixture(scope="module", autouse=True)
def tiny_clip(tmp_path_factory):
    register_tiny_clip(tmp_path_factory.mktemp("clip_config"))


def _ids(dataset: str, split: str, label: int, k: int) -> str:
    if dataset == "CUB":
        return f"{label + 1:03d}.Bird_{label}/Bird_{label}_{split}_{k}.jpg"
    if dataset == "ILSVRC":
        return {"train": f"train/n0000000{label}/n0000000{label}_{k}.JPEG", "val": f"val2/{label}/{k}.jpeg",
                "test": f"val/ILSVRC2012_val_{label * 10 + k:08d}.JPEG"}[split]
    return f"{split}/0{label}abc/{label}{k:03d}.jpg"


def make_fake_wsol(root, dataset: str, classes: int = 3, per_class: dict | None = None):
    """A metadata root, an image root and (OpenImages) a mask root in wsolevaluation's layout."""
    per_class = per_class or {"train": 4, "val": 2, "test": 2}
    rng = np.random.default_rng(0)
    meta, images, masks = root / "metadata" / dataset, root / "images", root / "masks"
    for split, n in per_class.items():
        folder = meta / split
        folder.mkdir(parents=True)
        ids, labels, sizes, loc = [], [], [], []
        for label in range(classes):
            for k in range(n):
                image_id = _ids(dataset, split, label, k)
                w, h = int(rng.integers(40, 64)), int(rng.integers(40, 64))
                x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
                x1, y1 = x0 + w // 3, y0 + h // 3
                pixels = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
                pixels[y0:y1 + 1, x0:x1 + 1] = (60 * label, 200, 40)
                (images / image_id).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(images / image_id)
                ids.append(image_id)
                labels.append(f"{image_id},{label}")
                sizes.append(f"{image_id},{w},{h}")
                if dataset == "OpenImages" and split != "train":
                    mask = np.zeros((h, w), dtype=np.uint8)
                    mask[y0:y1 + 1, x0:x1 + 1] = 255
                    stem = image_id.rsplit(".", 1)[0]
                    (masks / stem).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(masks / f"{stem}_m0{label}abc_0.png")
                    loc.append(f"{image_id},{stem}_m0{label}abc_0.png,")
                elif dataset != "OpenImages":
                    loc.append(f"{image_id},{x0},{y0},{x1},{y1}")
        (folder / "image_ids.txt").write_text("\n".join(ids) + "\n")
        (folder / "class_labels.txt").write_text("\n".join(labels) + "\n")
        (folder / "image_sizes.txt").write_text("\n".join(sizes) + "\n")
        if loc:
            (folder / "localization.txt").write_text("\n".join(loc) + "\n")
    return root / "metadata", images, masks


SMALL = ["cam.arch=tedloc_resnet_tiny", "cam.input_size=32", "cam.resize_size=null", "cam.epochs=1",
         "cam.batch_size=8", "cam.workers=0", "tedloc.encoder=tedloc_resnet_tiny", "tedloc.input_size=32",
         "tedloc.resize_size=null", "tedloc.decoder_channels=[8]", "tedloc.epochs=1", "tedloc.batch_size=8",
         f"clip={TINY_CLIP}", f"text_encoder=open_clip:{TINY_CLIP}@random", "map_sizes={classifier: 32}",
         "tedloc.map_size=48", "eval_batch_size=8", "overlays=1"]


@pytest.mark.parametrize("dataset", ["cub", "ilsvrc", "openimages"])
def test_bench_runs_the_papers_pipeline_on_a_fake_dataset(dataset, tmp_path, capsys):
    name = {"cub": "CUB", "ilsvrc": "ILSVRC", "openimages": "OpenImages"}[dataset]
    metadata, images, masks = make_fake_wsol(tmp_path / "src", name)
    out = tmp_path / "out"
    args = ["bench", dataset, "--metadata-root", str(metadata), "--images", str(images), "--out", str(out),
            "--weights", "random", "--device", "cpu", "--set", *SMALL]
    if dataset == "openimages":
        args[6:6] = ["--masks", str(masks)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"cam", "tedloc"}
    cam, tedloc = results["cam"], results["tedloc"]
    assert cam["map_class"] == "true" and "cam@pred" in cam["maps"] and cam["interval"] == 0.001
    assert cam["map_size"] == 32 and tedloc["map_size"] == 48 and set(tedloc["maps"]) == {"class", "class@pred"}
    if dataset == "openimages":  # masks only: PxAP, no box metric, no centered box
        assert "PxAP" in cam and "MaxBoxAcc" not in cam and "centered_box" not in results
    else:  # Top-k Loc at the oracle threshold and at the run's val threshold
        assert 0 <= tedloc["MaxBoxAcc"] <= 100 and "centered_box" in results
        assert tedloc["val_threshold"] == json.loads((out / "runs" / "tedloc" / "model.json").read_text())["threshold"]
        assert {"Top1Loc", "Top1Loc@val_thr", "Top5Loc@val_thr"} <= set(tedloc) and "Top1Loc@val_thr" in cam
    cache = json.loads((out / "cache" / "cams_train" / "index.json").read_text())
    assert cache["source"]["method"] == "clip-es"  # TeD-Loc's pseudo-labels are CLIP-ES's
    tedloc_run = json.loads((out / "runs" / "tedloc" / "model.json").read_text())
    assert tedloc_run["config"]["encoder_run"] is None and tedloc_run["config"]["decoder_channels"] == [8]
    assert tedloc_run["config"]["map_size"] == 48  # the bench scores TeD-Loc at the size its run records
    assert tedloc_run["anchors"]["encoder"].startswith("open_clip:")
    report = (out / "report.md").read_text()
    assert "| tedloc | class@pred |" in report and "GT-known" in report
    assert main(args) == 0  # a second call reuses every step


def test_shipped_configs_are_valid_for_their_commands(tmp_path, capsys):
    """Every shipped config parses into its command's config, with architectures timm knows."""
    import timm

    from tedloc.cli import build_parser
    from tedloc.cli.method_args import config_of
    from tedloc.utils.config_files import read_config_file, shipped_configs

    names = shipped_configs()
    assert {"cub_tedloc", "ilsvrc_tedloc", "openimages_tedloc", "cub_cam", "ilsvrc_cam", "openimages_cam",
            "cub_dips", "ilsvrc_dips", "cub_bench"} <= set(names)
    for name in names:
        if name.endswith("_bench"):
            continue
        values = read_config_file(name)
        command = "pretrain" if name.endswith("_cam") else "train"  # the others name their method
        inputs = {"tedloc": ["--anchors", "A", "--cams", "C"], "dips": ["--proposals", "P"],
                  "trcamv": ["--cams", "C"]}.get(values.get("method"), [])
        argv = [command, "--config", name, "--data", "D", "--out", "O", *inputs]
        args = build_parser(argv).parse_args(argv)
        config = config_of(args)
        arch = getattr(config, "arch", None) or config.encoder
        assert timm.is_model(arch.split(".")[0]), arch
        for key, value in values.items():
            if key != "method":
                expected = tuple(value) if isinstance(value, list) else value
                assert getattr(config, key) == expected, (name, key)
        if name.endswith("_tedloc"):  # the paper's E: EVA-02-L fine-tuned for classification; maps scored at 256
            assert config.encoder in timm.list_pretrained(config.encoder) and "_ft_" in config.encoder, name
            assert config.map_size == 256 and config.input_size == 224, name
    from tedloc.methods.tedloc import TeDLocTrainConfig  # noqa: F401

    argv = ["train", "--config", "cub_tedloc", "--data", "D", "--out", "O", "--lr", "0.05", "--anchors", "A",
            "--cams", "C"]
    args = build_parser(argv).parse_args(argv)
    assert config_of(args).lr == 0.05 and config_of(args).batch_size == 16  # a flag overrides the file


def test_config_file_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 3\n")
    assert main(["pretrain", "--config", str(bad), "--data", "D", "--out", str(tmp_path / "o")]) == 2
    assert "bad.yaml: unknown option(s) learning_rate" in capsys.readouterr().err
    bad.write_text("epochs: many\n")
    assert main(["pretrain", "--config", str(bad), "--data", "D", "--out", str(tmp_path / "o")]) == 2
    assert "bad.yaml: epochs: 'many' is not a valid value" in capsys.readouterr().err
    bad.write_text("epochs: [1\n")
    assert main(["pretrain", "--config", str(bad), "--data", "D", "--out", str(tmp_path / "o")]) == 2
    assert "bad.yaml line 2: not valid YAML" in capsys.readouterr().err
    assert main(["pretrain", "--config", "nonexistent", "--data", "D", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such file, nor a shipped config (" in err and "cub_bench, " in err


def test_yaml_values_are_typed_as_the_fields(tmp_path, capsys):
    from tedloc.errors import TedlocError
    from tedloc.recipes.presets import paper_recipe

    _, recipe = paper_recipe("cub", {"tedloc.lr": "1e-3", "cam.epochs": 2, "tedloc.lambdas": [1, 0, 1]})
    assert recipe.tedloc.lr == 0.001 and recipe.tedloc.lambdas == (1.0, 0.0, 1.0) and recipe.pretrain.epochs == 2
    with pytest.raises(TedlocError, match="--set tedloc.lambdas: expected 3 values"):
        paper_recipe("cub", {"tedloc.lambdas": [1, 1]})
    with pytest.raises(TedlocError, match="unknown option.s. of PretrainConfig: --set cam.foo"):
        paper_recipe("cub", {"cam.foo": 1})
    with pytest.raises(TedlocError, match="--set tedloc.encoder: expected a str, got None"):
        paper_recipe("cub", {"tedloc.encoder": None})
    with pytest.raises(TedlocError, match="--set cam.epochs: expected an int, got True"):
        paper_recipe("cub", {"cam.epochs": True})
    assert paper_recipe("cub", {"eval_interval": "1e-3", "overlays": "2"})[1].eval_interval == 0.001
    bad = tmp_path / "bad.yaml"
    bad.write_text("lambdas: [1, 1]\n")
    args = ["train", "--config", str(bad), "--data", "D", "--out", str(tmp_path / "o"), "--anchors", "A", "--cams", "C"]
    assert main(args) == 2 and "lambdas: expected 3 values, got 2" in capsys.readouterr().err
    bad.write_text("restart: yes-please\n")
    assert main(args) == 2 and "restart: expected true or false" in capsys.readouterr().err


def test_config_file_sets_required_options_and_the_run_records_them(synthetic_small, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {synthetic_small}\ninput-size: 48\nepochs: 1\nbatch_size: 8\nworkers: 0\nlr: 1e-3\n")
    assert main(["pretrain", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["config"]["lr"] == 0.001 and meta["config"]["input_size"] == 48 and meta["config"]["epochs"] == 1
