"""The command line over a corpus of bad inputs: each ends with exit status 2 and one `error:` line naming the
file (or the option) at fault, never a traceback."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tedloc.cli import main
from tedloc.data import load_dataset


@pytest.fixture(scope="module")
def cnn(synthetic_small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cnn") / "run"
    assert main(["pretrain", "--data", str(synthetic_small), "--out", str(out), "--epochs", "1", "--batch-size", "8",
                 "--input-size", "48", "--workers", "0", "--device", "cpu"]) == 0
    return out


def _maps(data: Path, root: Path, scores: int | None = None) -> Path:
    """A valid map folder of the test split (with class score vectors of length ``scores``)."""
    split = load_dataset(data)["test"]
    rng = np.random.default_rng(0)
    for image_id in split.image_ids:
        path = root / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.random((48, 48)))
        if scores:
            np.save(root / f"{image_id}.scores.npy", rng.random(scores))
    return root


def _first_map(root: Path) -> Path:
    return sorted(root.rglob("*.npy"))[0]


def empty_map(data, cnn, tmp):
    maps = _maps(data, tmp / "maps")
    _first_map(maps).write_bytes(b"")
    return ["evaluate-maps", "--data", data, "--maps", maps, "--workers", "1"], _first_map(maps)


def text_named_npy(data, cnn, tmp):
    maps = _maps(data, tmp / "maps")
    _first_map(maps).write_text("0.1 0.2\n")
    return ["evaluate-maps", "--data", data, "--maps", maps, "--workers", "1"], _first_map(maps)


def _first_scores(data: Path, maps: Path) -> Path:
    return maps / f"{load_dataset(data)['test'].image_ids[0]}.scores.npy"


def short_class_scores(data, cnn, tmp):
    maps = _maps(data, tmp / "maps", scores=3)
    first = _first_scores(data, maps)
    return ["evaluate-maps", "--data", data, "--maps", maps, "--workers", "1"], first


def long_class_scores(data, cnn, tmp):
    maps = _maps(data, tmp / "maps", scores=7)
    first = _first_scores(data, maps)
    return ["evaluate-maps", "--data", data, "--maps", maps, "--workers", "2"], first


def utf16_labels(data, cnn, tmp):
    copy = tmp / "data"
    shutil.copytree(data, copy)
    labels = copy / "metadata" / "train" / "class_labels.txt"
    labels.write_bytes(labels.read_text().encode("utf-16"))
    return ["pretrain", "--data", copy, "--out", tmp / "run", "--epochs", "1"], labels


def empty_class_names(data, cnn, tmp):
    copy = tmp / "data"
    shutil.copytree(data, copy)
    (copy / "class_names.txt").write_text("")
    return ["pretrain", "--data", copy, "--out", tmp / "run", "--epochs", "1"], copy / "class_names.txt"


def corrupt_image_in_a_worker(data, cnn, tmp):
    copy = tmp / "data"
    shutil.copytree(data, copy)
    image = copy / "images" / load_dataset(copy)["train"].image_ids[0]
    image.write_bytes(b"not an image")
    return ["pretrain", "--data", copy, "--out", tmp / "run", "--epochs", "1", "--input-size", "48",
            "--batch-size", "8", "--workers", "1", "--device", "cpu"], image


def unreadable_image_to_predict(data, cnn, tmp):
    bad = tmp / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    good = data / "images" / load_dataset(data)["test"].image_ids[0]
    return ["predict", "--run", cnn, str(good), str(bad), "--out", tmp / "out", "--device", "cpu"], bad


def json_into_a_file(data, cnn, tmp):
    (tmp / "file").write_text("x")
    target = tmp / "file" / "metrics.json"
    return ["evaluate", "--run", cnn, "--data", data, "--json", target, "--device", "cpu"], target


def resume_with_other_data(data, cnn, tmp):
    copy = tmp / "data"
    shutil.copytree(data, copy)
    (copy / "metadata" / "train" / "class_labels.txt").write_text(
        "".join(line.split(",")[0] + ",0\n" for line in (data / "metadata" / "train" / "class_labels.txt")
                .read_text().splitlines()))
    run = tmp / "run"
    shutil.copytree(cnn, run)
    return ["pretrain", "--data", copy, "--out", run, "--epochs", "1", "--batch-size", "8", "--input-size", "48",
            "--workers", "0", "--device", "cpu"], run


def fixed_mode_without_tau(data, cnn, tmp):
    maps = _maps(data, tmp / "maps")
    return ["evaluate-maps", "--data", data, "--maps", maps, "--mode", "fixed"], "fixed mode needs a threshold tau"


def interval_out_of_range(data, cnn, tmp):
    return ["evaluate", "--run", cnn, "--data", data, "--interval", "0", "--device", "cpu"], "threshold interval"


def missing_device(data, cnn, tmp):
    return ["evaluate", "--run", cnn, "--data", data, "--device", "cuda:7"], "--device cuda:7"


CORPUS: list[Callable] = [empty_map, text_named_npy, short_class_scores, long_class_scores, utf16_labels,
                          empty_class_names, corrupt_image_in_a_worker, unreadable_image_to_predict, json_into_a_file,
                          resume_with_other_data, fixed_mode_without_tau, interval_out_of_range, missing_device]


@pytest.mark.parametrize("case", CORPUS, ids=[c.__name__ for c in CORPUS])
def test_bad_input_is_one_line_naming_the_file(case, synthetic_small, cnn, tmp_path, capsys):
    import torch

    if case is missing_device and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    args, culprit = case(synthetic_small, cnn, tmp_path)
    capsys.readouterr()
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1, err
    assert str(culprit) in errors[0], err
