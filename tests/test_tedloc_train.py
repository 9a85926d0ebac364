"""TeD-Loc training end to end on the small synthetic set: runs, resumes exactly, loads as a localizer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tedloc.cams.compute import compute_map_cache
from tedloc.engine import PretrainConfig, load_checkpoint, pretrain
from tedloc.engine.tedloc_train import TeDLocTrainConfig, train_tedloc
from tedloc.errors import TedlocError
from tedloc.methods import load_localizer
from tedloc.text import build_anchors


@pytest.fixture(scope="module")
def inputs(synthetic_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("tedloc")
    pretrain(synthetic_small, root / "cnn", PretrainConfig(arch="tedloc_resnet_tiny", input_size=48, epochs=1,
                                                           batch_size=8, workers=0))
    compute_map_cache(root / "cnn", synthetic_small, "train", root / "cache")
    table = np.random.default_rng(0).normal(size=(4, 16))
    np.save(root / "emb.npy", table)
    build_anchors(["red circle", "green square", "blue triangle", "yellow diamond"],
                  f"file:{root / 'emb.npy'}").save(root / "anchors.safetensors")
    cfg = TeDLocTrainConfig(encoder="tedloc_resnet_tiny", encoder_run=str(root / "cnn"), input_size=48,
                            decoder_channels=(16, 8), epochs=2, batch_size=8, lr=0.01, lr_step=1, k=4)
    return root, cfg


def test_train_resume_and_localizer(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    full = train_tedloc(synthetic_small, tmp_path / "full", root / "anchors.safetensors", root / "cache", cfg)
    assert len(full) == 2 and all(np.isfinite(r["loss_total"]) for r in full)
    one = TeDLocTrainConfig(**{**cfg.__dict__, "epochs": 1})
    train_tedloc(synthetic_small, tmp_path / "part", root / "anchors.safetensors", root / "cache", one)
    conf = json.loads((tmp_path / "part" / "config.json").read_text())
    conf["config"]["epochs"] = 2
    (tmp_path / "part" / "config.json").write_text(json.dumps(conf))
    train_tedloc(synthetic_small, tmp_path / "part", root / "anchors.safetensors", root / "cache", cfg)
    a, _, meta = load_checkpoint(tmp_path / "full" / "model")
    b, _, _ = load_checkpoint(tmp_path / "part" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert meta["kind"] == "tedloc" and meta["anchors"]["class_names"][0] == "red circle"
    # the encoder is the pretrained CNN's backbone, and stays frozen
    cnn, _, _ = load_checkpoint(root / "cnn" / "model")
    assert torch.equal(a["encoder.model.stem.0.weight"], cnn["stem.0.weight"])
    localizer = load_localizer(tmp_path / "full")
    scores, maps = localizer.predict(torch.zeros(2, 3, 48, 48))
    assert scores.shape == (2, 4) and maps.shape == (2, 24, 24) and (maps >= 0).all() and (maps <= 1).all()


def test_refuses_mismatched_inputs(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    with pytest.raises(TedlocError, match="no map cache"):
        train_tedloc(synthetic_small, tmp_path / "x", root / "anchors.safetensors", root / "cnn", cfg)
    compute_map_cache(root / "cnn", synthetic_small, "val", tmp_path / "val_cache")
    with pytest.raises(TedlocError, match="other images"):
        train_tedloc(synthetic_small, tmp_path / "y", root / "anchors.safetensors", tmp_path / "val_cache", cfg)
