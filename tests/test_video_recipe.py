"""The video recipe (classifier, ViT, pseudo-labels, TrCAM-V, CorLoc both ways, report), its resumption, CorLoc's
oracle and realistic variants, ``tedloc evaluate`` on a video dataset, and ``tedloc bench ytov1|ytov2`` on fake raw
YouTube-Objects trees with random weights and tiny networks (the code path, not the numbers)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from runtimes import CPU

from tedloc.cli import main
from tedloc.data import load_dataset
from tedloc.eval.corloc import CorLocAccumulator
from tedloc.methods import get_method, load_model
from tedloc.recipes.video import CAM_FAMILY, VideoRecipe, run_video_recipe

BASELINES = ("cam", "gradcam")
RUNS = ("classifier", "vit", "trcamv")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def video_data(tmp_path_factory) -> Path:
    from tedloc.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video

    return make_synthetic_video(tmp_path_factory.mktemp("video_recipe") / "video", SyntheticVideoConfig(
        classes=3, train_videos=1, val_videos=1, test_videos=1, shots=2, min_frames=3, max_frames=4, seed=3))


def _tiny_recipe(**changes) -> VideoRecipe:
    cam, trcamv = get_method("cam").config, get_method("trcamv").config
    settings = {
        "classifier": cam(input_size=32, epochs=1, batch_size=8),
        "trcamv": trcamv(encoder="tedloc_vit_tiny", input_size=32, epochs=1, classifier_epochs=1, batch_size=8,
                         crf_scale=0.5, fg_count=10, bg_count=10),
        "vit": cam(arch="tedloc_vit_tiny", input_size=32, epochs=1, batch_size=8),
        "baselines": BASELINES, "overlays": 2, "eval_batch_size": 8}
    return VideoRecipe(**{**settings, **changes})


@pytest.fixture(scope="module")
def recipe_out(video_data, tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """(OUT, the results returned, the log lines) of one tiny recipe run."""
    out = tmp_path_factory.mktemp("video_recipe_out")
    log: list[str] = []
    results = run_video_recipe(video_data, out, _tiny_recipe(), log=log.append, runtime=CPU)
    return out, results, log


def _mtimes(out: Path) -> dict[str, int]:
    files = [out / "runs" / r / "model.json" for r in RUNS] + sorted((out / "eval").glob("*.json"))
    return {str(f.relative_to(out)): f.stat().st_mtime_ns for f in files}


# --- the recipe -------------------------------------------------------------------------------------------------


def test_recipe_results_report_and_pictures(recipe_out, video_data):
    out, results, log = recipe_out
    dataset = load_dataset(video_data)
    test = dataset["test"]
    frames = sum(len(b) > 0 for b in test.boxes)
    assert json.loads((out / "results.json").read_text()) == results
    assert list(results) == ["centered_box", "trcamv", *BASELINES]
    assert [results[k]["map"] for k in results] == ["centered", "fg", *BASELINES]
    with_frames = sorted({dataset.class_names[int(test.labels[i])] for i in range(len(test)) if len(test.boxes[i])})
    for name, metrics in results.items():
        corloc = metrics["corloc"]
        for way in ("oracle", "realistic"):
            block = corloc[way]
            assert isinstance(block["chosen_on"], str) and block["chosen_on"]
            assert sorted(block["per_class"]) == with_frames
            assert 0 <= block["CorLoc"] <= 100
            assert block["CorLoc"] == pytest.approx(np.mean(list(block["per_class"].values())))
        for cls, value in corloc["oracle"]["per_class"].items():  # the oracle maximises per class
            assert value >= corloc["realistic"]["per_class"][cls], (name, cls)
        assert corloc["frames"] == frames and corloc["iou"] == 0.5
        assert "CL" in corloc
        if name == "centered_box":
            assert corloc["CL"] is None and 0.3 <= metrics["box_fraction"] <= 1.0
        else:
            assert 0 <= corloc["CL"] <= 100 and "val frames" in corloc["realistic"]["chosen_on"]
            assert "test frames" in corloc["oracle"]["chosen_on"]
            assert "curves" not in metrics and metrics["images"] == len(test)
    report = (out / "report.md").read_text()
    assert report.startswith(f"# tedloc video results: {dataset.name}\n")  # the dataset's name, not its folder's
    short = " | ".join(n[:8] for n in dataset.class_names)
    assert f"| method | {short} | CorLoc | CorLoc (realistic) | CL | MaxBoxAcc |" in report
    rows = [line.split(" | ")[0] for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["| method", "| centered_box", "| trcamv", *[f"| {b}" for b in BASELINES]]
    pictures = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert len(pictures) == 2 and all((out / p).is_file() for p in pictures)
    assert "TrCAM-V vs the best CAM-family baseline" in report
    # one line per column under the table, saying which thresholds come from test boxes
    columns = report.split("## What the columns mean (percent)\n\n")[1].split("\n\n")[0].splitlines()
    assert [line.split(":")[0] for line in columns] == [
        "- per-class columns, CorLoc", "- CorLoc (realistic)", "- CL", "- MaxBoxAcc", "- PxAP", "- peak on object"]
    assert "test boxes" in columns[0] and "no test box" in columns[1]
    assert set(json.loads((out / "timings.json").read_text())) == {"classifier", "vit", "pseudo_labels", "trcamv",
                                                                  "evaluate"}
    assert any(line.startswith("[1/6]") for line in log) and any(line.startswith("[6/6]") for line in log)
    # TrCAM-V took the recipe's ViT run
    config = json.loads((out / "runs" / "trcamv" / "config.json").read_text())["config"]
    assert config["encoder_run"] == str((out / "runs" / "vit").resolve()) and config["encoder"] == "tedloc_vit_tiny"


def test_second_call_resumes_without_retraining_and_gives_the_same_results(recipe_out, video_data):
    out, results, _ = recipe_out
    before = _mtimes(out)
    assert len(before) == 3 + 1 + len(BASELINES)
    log: list[str] = []
    again = run_video_recipe(video_data, out, _tiny_recipe(), log=log.append, runtime=CPU)
    assert _mtimes(out) == before  # no run retrained, no evaluation redone
    assert again == results
    assert not any(line.startswith("epoch ") for line in log)
    # the evaluations redone from the same runs give the same numbers
    shutil.rmtree(out / "eval")
    assert run_video_recipe(video_data, out, _tiny_recipe(), log=log.append, runtime=CPU) == results
    assert {k: v for k, v in _mtimes(out).items() if k.startswith("runs")} == \
        {k: v for k, v in before.items() if k.startswith("runs")}


def test_recipe_refuses_an_unknown_pseudo_label_source_and_image_data(video_data, synthetic_small, tmp_path):
    from tedloc.errors import TedlocError

    with pytest.raises(TedlocError, match="pseudo_labels must be one of cam, clip-es, clipseg"):
        run_video_recipe(video_data, tmp_path, _tiny_recipe(pseudo_labels="otsu"), runtime=CPU)
    with pytest.raises(TedlocError, match="needs a video dataset"):
        run_video_recipe(synthetic_small, tmp_path, _tiny_recipe(), runtime=CPU)


# --- CorLoc: oracle vs realistic --------------------------------------------------------------------------------


@pytest.mark.parametrize("run, kind", [("trcamv", None), ("classifier", "cam"), ("classifier", "layercam")])
def test_oracle_corloc_is_at_least_the_realistic_one_per_class(recipe_out, video_data, run, kind):
    from tedloc.eval.video_eval import evaluate_video_localizer, val_threshold

    out, _, _ = recipe_out
    dataset = load_dataset(video_data, splits=["val", "test"])
    localizer = load_model(out / "runs" / run, runtime=CPU, map_kind=kind)
    metrics = evaluate_video_localizer(localizer, dataset["test"], val=dataset["val"], batch_size=8)
    corloc = metrics["corloc"]
    oracle, realistic = corloc["oracle"], corloc["realistic"]
    assert set(oracle["per_class"]) == set(realistic["per_class"])
    for cls in oracle["per_class"]:
        assert oracle["per_class"][cls] >= realistic["per_class"][cls]
    assert oracle["CorLoc"] >= realistic["CorLoc"]
    tau, accuracy = val_threshold(localizer, dataset["val"], kind=kind, batch_size=8)
    assert realistic["threshold"] == pytest.approx(tau) and realistic["val_BoxAcc"] == accuracy
    assert set(oracle["thresholds"]) == set(oracle["per_class"])
    # without val: the oracle alone, the same numbers
    alone = evaluate_video_localizer(localizer, dataset["test"], batch_size=8)["corloc"]
    assert "realistic" not in alone and alone["oracle"] == oracle and alone["CL"] == corloc["CL"]


def test_corloc_of_perfect_maps_is_100_and_of_blank_maps_0(video_data):
    dataset = load_dataset(video_data, splits=["test"])
    split = dataset["test"]
    thresholds = np.arange(0, 1, 0.01)
    acc = CorLocAccumulator(split, thresholds, dataset.class_names)
    first = int(split.labels[next(i for i in range(len(split)) if len(split.boxes[i]))])
    for i, image_id in enumerate(split.image_ids):
        w, h = split.sizes[i]
        score_map = np.zeros((h, w), np.float32)
        if len(split.boxes[i]) and int(split.labels[i]) == first:  # one class's frames: the GT box exactly
            x0, y0, x1, y1 = split.boxes[i][0]
            score_map[y0:y1 + 1, x0:x1 + 1] = 1
        scores = np.eye(len(dataset.class_names))[int(split.labels[i])]
        acc.accumulate(image_id, score_map, scores)
    result = acc.compute(0.5)
    classes = sorted({int(split.labels[i]) for i in range(len(split)) if len(split.boxes[i])})
    expected = {dataset.class_names[c]: 100.0 if c == first else 0.0 for c in classes}
    assert result["CorLoc_per_class"] == expected and result["CorLoc@tau_per_class"] == expected
    assert result["CorLoc"] == pytest.approx(100 / len(classes)) and result["CL"] == 100.0
    assert result["tau"] == 0.5 and result["frames"] == sum(len(b) > 0 for b in split.boxes)


def test_evaluate_cli_on_a_video_dataset_prints_both_corlocs(recipe_out, video_data, tmp_path, capsys):
    out, results, _ = recipe_out
    path = tmp_path / "metrics.json"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out / "runs" / "trcamv"), "--data", str(video_data), "--split", "test",
                 "--json", str(path), "--device", "cpu", "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "CorLoc (oracle)" in printed and "CorLoc (realistic)" in printed and "CL (frames)" in printed
    metrics = json.loads(path.read_text())
    assert metrics["corloc"] == results["trcamv"]["corloc"]  # what the recipe reported, same protocol


# --- tedloc bench ytov1 / ytov2 ---------------------------------------------------------------------------------

SMALL = ["classifier.arch=tedloc_resnet_tiny", "classifier.input_size=32", "classifier.resize_size=null",
         "classifier.epochs=1", "classifier.batch_size=8", "trcamv.encoder=tedloc_vit_tiny", "trcamv.input_size=32",
         "trcamv.resize_size=null", "trcamv.epochs=1", "trcamv.classifier_epochs=1", "trcamv.batch_size=8",
         "trcamv.crf_scale=0.5", "eval_batch_size=8", "overlays=1"]


def _bench(benchmark: str, raw: Path, out: Path, *extra: str) -> int:
    return main(["bench", benchmark, "--raw", str(raw), "--out", str(out), "--weights", "random", "--device", "cpu",
                 "--set", *SMALL, *extra])


def _check_bench(out: Path, printed: str) -> dict:
    assert printed.startswith("[0] convert ") and f"-> {out / 'data'}" in printed.splitlines()[0]
    info = load_dataset(out / "data")
    assert info.is_video and (out / "data" / "conversion.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["centered_box", "trcamv", *CAM_FAMILY]
    for metrics in results.values():
        assert {"oracle", "realistic", "CL"} <= set(metrics["corloc"])
    report = (out / "report.md").read_text()
    assert "| method |" in report and "| trcamv |" in report and "| layercam |" in report
    # --weights random: every network random, nothing downloaded, no ViT trained here
    classifier = json.loads((out / "runs" / "classifier" / "config.json").read_text())["config"]
    trcamv = json.loads((out / "runs" / "trcamv" / "config.json").read_text())["config"]
    assert classifier["pretrained"] is False and classifier["arch"] == "tedloc_resnet_tiny"
    assert trcamv["pretrained"] is False and trcamv["encoder"] == "tedloc_vit_tiny" and trcamv["encoder_run"] is None
    assert not (out / "runs" / "vit").exists()
    assert "bench finished" in printed
    return results


def test_bench_ytov1_on_a_fake_raw_tree(tmp_path, capsys):
    from test_youtube_objects import _fake_v1

    raw = _fake_v1(tmp_path / "raw")
    out = tmp_path / "out"
    capsys.readouterr()
    assert _bench("ytov1", raw, out, "pseudo_labels=cam") == 0
    _check_bench(out, capsys.readouterr().out)
    assert (out / "cache" / "maps_cam" / "index.json").is_file()
    assert yaml_image_root(out / "data") == str(raw)  # v1.0: the frames are referenced in the raw tree


def yaml_image_root(data: Path) -> str:
    import yaml

    return yaml.safe_load((data / "dataset.yaml").read_text())["image_root"]


def test_bench_ytov2_with_random_weight_clip_es_pseudo_labels(tmp_path, capsys):
    pytest.importorskip("open_clip")
    from conftest import TINY_CLIP, register_tiny_clip
    from test_youtube_objects import _fake_v2

    register_tiny_clip(tmp_path)
    raw = _fake_v2(tmp_path / "raw")
    out = tmp_path / "out"
    capsys.readouterr()
    assert _bench("ytov2", raw, out, "pseudo_labels=clip-es", f"clip={TINY_CLIP}") == 0
    _check_bench(out, capsys.readouterr().out)
    index = json.loads((out / "cache" / "maps_clip-es" / "index.json").read_text())
    assert index["source"]["method"] == "clip-es"
    assert index["source"]["model"]["clip"] == TINY_CLIP and index["source"]["model"]["clip_pretrained"] == "random"
    frames = load_dataset(out / "data")
    assert yaml_image_root(out / "data") == "frames" and (out / "data" / "frames").is_dir()
    assert len(index["image_ids"]) == sum(len(list((out / "data" / "frames" / s).iterdir()))
                                          for s in frames["train"].image_ids)


def test_bench_bad_settings_are_one_line(tmp_path, capsys):
    capsys.readouterr()
    assert main(["bench", "ytov1", "--raw", str(tmp_path), "--out", str(tmp_path / "out"), "--set",
                 "baselines=[cam]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown recipe option(s) baselines" in err[0], err
    assert main(["bench", "ytov1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give --raw" in err[0], err
    assert main(["bench", "ytov2", "--raw", str(tmp_path), "--out", str(tmp_path / "out"), "--set",
                 "nothing.epochs=1"]) == 2
    assert "the sections are classifier. and trcamv." in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
