"""Frozen encoders: shapes for ViTs (prefix tokens, any grid) and CNNs, frozen semantics, local weights."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tedloc.errors import TedlocError
from tedloc.models import create_encoder


@pytest.mark.parametrize(
    "name,size,grid,channels",
    [
        ("vit_tiny_patch16_224", 224, 14, 192),  # class token
        ("deit_tiny_distilled_patch16_224", 224, 14, 192),  # class + distillation tokens
        ("vit_small_patch14_reg4_dinov2", 112, 8, 384),  # registers, patch 14
        ("eva02_tiny_patch14_224", 224, 16, 192),  # the paper's family (EVA-02), tiny variant
        ("vit_tiny_patch16_224", 96, 6, 192),  # another input size: the grid follows
        ("resnet18", 64, 2, 512),
        ("tedloc_resnet_tiny", 64, 8, 128),
    ],
)
def test_patch_grids(name, size, grid, channels):
    torch.manual_seed(0)
    enc = create_encoder(name, img_size=size)
    out = enc(torch.randn(2, 3, size, size))
    assert out.shape == (2, channels, grid, grid)
    assert enc.info.channels == channels and enc.grid_size((size, size)) == (grid, grid)


def test_frozen_stays_in_eval_and_has_no_gradients():
    enc = create_encoder("tedloc_resnet_tiny")
    parent = torch.nn.Sequential(enc, torch.nn.Conv2d(128, 4, 1))
    parent.train()
    assert not enc.training and not enc.model.training
    assert all(not p.requires_grad for p in enc.parameters())
    x = torch.randn(2, 3, 64, 64)
    bn = enc.model.stem[1]
    before = bn.running_mean.clone()
    parent(x).sum().backward()
    assert torch.equal(bn.running_mean, before)
    assert parent[1].weight.grad is not None


def test_local_weight_file_is_loaded(tmp_path):
    src = create_encoder("vit_tiny_patch16_224")
    state = {k: v.clone() for k, v in src.model.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    enc = create_encoder("vit_tiny_patch16_224", weights=tmp_path / "w.safetensors")
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(enc(x), src(x))
    with pytest.raises(TedlocError, match="not found"):
        create_encoder("vit_tiny_patch16_224", weights=tmp_path / "missing.safetensors")
    with pytest.raises(TedlocError, match="unknown encoder"):
        create_encoder("no_such_model_xyz")
