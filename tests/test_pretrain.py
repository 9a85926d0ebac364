"""Classifier pretraining: learns, checkpoints are safetensors + JSON, resume equals an uninterrupted run."""
from __future__ import annotations

import json

import pytest
import torch

from tedloc.cli import main
from tedloc.engine import load_checkpoint
from tedloc.engine import RunFolder
from tedloc.errors import TedlocError
from tedloc.methods.cam import PretrainConfig, pretrain
from runtimes import CPU

CFG = dict(arch="tedloc_resnet_tiny", input_size=48, epochs=2, batch_size=8, lr=0.05, lr_step=1, workers=0, seed=3)


def test_resume_gives_the_same_weights(synthetic_small, tmp_path):
    full = pretrain(synthetic_small, tmp_path / "full", PretrainConfig(**CFG), runtime=CPU)
    half = pretrain(synthetic_small, tmp_path / "part", PretrainConfig(**{**CFG, "epochs": 1}), runtime=CPU)
    assert len(full) == 2 and len(half) == 1
    # continue the interrupted run: rewrite its config as if --epochs 2 had been asked from the start
    cfg_path = tmp_path / "part" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["config"]["epochs"] = 2
    cfg_path.write_text(json.dumps(cfg))
    resumed = pretrain(synthetic_small, tmp_path / "part", PretrainConfig(**CFG), runtime=CPU)
    a, _, meta_a = load_checkpoint(tmp_path / "full" / "model")
    b, _, meta_b = load_checkpoint(tmp_path / "part" / "model")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in full]
    assert meta_a["class_names"] == ["red circle", "green square", "blue triangle", "yellow diamond"]


def test_checkpoint_files_and_partial_writes(synthetic_small, tmp_path):
    pretrain(synthetic_small, tmp_path / "run", PretrainConfig(**{**CFG, "epochs": 1}), runtime=CPU)
    ckpt = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_001.json", "epoch_001.safetensors"]
    assert not list((tmp_path / "run").rglob("*.pt")) and not list((tmp_path / "run").rglob("*.pkl"))
    (ckpt / "epoch_002.safetensors").write_bytes(b"half-written")  # no JSON: not complete
    assert RunFolder(ckpt.parent).latest_checkpoint().name == "epoch_001"
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("epoch,lr,train_loss")


def test_learns_the_synthetic_classes(tmp_path):
    from tedloc.data import SyntheticConfig, make_synthetic

    data = make_synthetic(tmp_path / "d", SyntheticConfig(classes=4, train=160, val=40, test=8, size=48, seed=1))
    config = PretrainConfig(arch="tedloc_resnet_tiny", input_size=48, epochs=4, batch_size=16, lr=0.05, lr_step=3,
                            workers=0)
    history = pretrain(data, tmp_path / "run", config, runtime=CPU)
    assert history[-1]["val_top1"] >= 50.0  # chance is 25 %


def test_cli_and_config_mismatch(synthetic_small, tmp_path, capsys):
    args = ["pretrain", "--data", str(synthetic_small), "--out", str(tmp_path / "r"), "--epochs", "1",
            "--batch-size", "8", "--input-size", "48", "--workers", "0"]
    assert main(args) == 0
    assert "val top-1" in capsys.readouterr().out
    assert main(args[:-2] + ["--workers", "0", "--lr", "0.5"]) == 2
    assert "another configuration" in capsys.readouterr().err
    with pytest.raises(TedlocError, match="unknown architecture"):
        pretrain(synthetic_small, tmp_path / "x", PretrainConfig(arch="nope_net"), runtime=CPU)
