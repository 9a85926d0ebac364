"""The recipes of docs/ARCHITECTURE.md ("How to add ..."), followed from outside tedloc: a method (the toy of
``toy_method.py``) reaches every command, and a map source reaches ``tedloc cams`` and the library."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import toy_method  # noqa: F401  (registers "toy")
from runtimes import CPU
from tedloc.cli import main
from tedloc.models.localizer import ClassConditionalMaps


def test_a_method_from_outside_trains_evaluates_predicts_and_sweeps(synthetic_small, tmp_path, capsys):
    pytest.importorskip("optuna")
    from tedloc.data import load_dataset
    from tedloc.data.box_files import write_box_file

    run = tmp_path / "run"
    assert main(["train", "--method", "toy", "--data", str(synthetic_small), "--out", str(run), "--epochs", "2",
                 "--device", "cpu"]) == 0
    assert main(["evaluate", "--run", str(run), "--data", str(synthetic_small), "--json", str(tmp_path / "e.json"),
                 "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["map"] == "class" and metrics["protocol"]["interval"] == 0.001 and metrics["images"] == 8
    test = load_dataset(synthetic_small)["test"]
    assert main(["predict", "--run", str(run), str(test.image_path(0)), "--device", "cpu"]) == 0
    val = load_dataset(synthetic_small)["val"]  # the GT boxes as a box file: the sweep only needs one
    boxes = tmp_path / "boxes.txt"
    write_box_file(boxes, {image_id: val.boxes[i][0] for i, image_id in enumerate(val.image_ids)})
    sweep = ["sweep", "--method", "toy", "--data", str(synthetic_small), "--pseudo-boxes", str(boxes), "--out",
             str(tmp_path / "sweep"), "--epochs", "1", "--device", "cpu"]
    assert main([*sweep, "--trials", "1"]) == 0
    assert main([*sweep, "--trials", "2"]) == 0  # the study continues
    assert json.loads((tmp_path / "sweep" / "trial_0001" / "model.json").read_text())["kind"] == "toy"
    cached = json.loads(next((tmp_path / "sweep" / "trial_0001" / "protocol").glob("*.json")).read_text())
    assert all('"interval": 0.01' in key for key in cached)  # the trials are scored under the validation preset


def test_a_map_source_from_outside_reaches_the_library_and_the_command(synthetic_small, tmp_path):
    from tedloc.methods import load_model
    from tedloc.pseudolabels import MAP_SOURCES, MapCache, MapSource, compute_map_cache, register_map_source

    def corner_maps(model, images, classes):  # a map of ones in the top-left quarter, whatever the class
        maps = torch.zeros(len(images), 8, 8)
        maps[:, :4, :4] = 1
        return maps

    if "corner" not in MAP_SOURCES:
        register_map_source(MapSource("corner", "a test source", ClassConditionalMaps, corner_maps))
    run = tmp_path / "cam"
    assert main(["pretrain", "--data", str(synthetic_small), "--out", str(run), "--input-size", "48", "--epochs", "1",
                 "--batch-size", "8", "--workers", "0", "--device", "cpu"]) == 0
    cache = compute_map_cache(load_model(run, runtime=CPU), synthetic_small, "val", tmp_path / "lib", method="corner",
                              runtime=CPU)
    assert cache.size == (8, 8) and cache.source["method"] == "corner"
    assert main(["cams", "--source", "corner", "--run", str(run), "--data", str(synthetic_small), "--split", "val",
                 "--out", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    maps = MapCache(tmp_path / "cli").get(np.arange(8)).numpy()
    assert (maps[:, :4, :4] == 1).all() and (maps[:, 4:, :] == 0).all()
