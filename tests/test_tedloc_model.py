"""TeD-Loc: losses on hand-made tensors, weighted pooling, shapes for ViT and CNN encoders."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from tedloc.models import create_encoder
from tedloc.models.tedloc import TeDLoc, TeDLocLosses, class_logits, tedloc_losses, weighted_pool
from tedloc.pseudolabels import PseudoLabels
from tedloc.text import orthogonalize


def test_weighted_pool_and_logits():
    z = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])  # B=1, d=1, 2x2
    fg = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert torch.allclose(weighted_pool(z, fg), torch.tensor([[(1 + 7) / (2 + 1e-6)]]))
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[2.0, -1.0]])
    assert torch.equal(class_logits(v, anchors), torch.tensor([[2.0, -1.0]]))
    assert torch.allclose(class_logits(v, anchors, "cosine", 10.0), torch.tensor([[20 / 5 ** 0.5, -10 / 5 ** 0.5]]))


def _ce(logits, target):
    return -(logits[target] - math.log(sum(math.exp(x) for x in logits)))


def test_losses_on_hand_made_tensors():
    model = SimpleNamespace(anchors=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), logit="dot", logit_scale=1.0,
                            head=SimpleNamespace(embed=lambda u: u))  # P = identity: z = u
    # grid of 2 locations (1x2), d = 2
    z = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # z_0 = (2, 0), z_1 = (0, 1)
    g = torch.tensor([[[[0.5, -0.5]], [[1.5, 0.0]]]])  # (bg, fg) logits: loc 0 (0.5, 1.5), loc 1 (-0.5, 0)
    h = torch.tensor([[1.0, 0.5]])
    out = {"u": z, "g": g, "h": h, "logits": h @ model.anchors.T}
    pseudo = PseudoLabels(fg=torch.tensor([[0]]), bg=torch.tensor([[1]]), valid=torch.tensor([[True]]))
    labels = torch.tensor([0])
    losses = tedloc_losses(model, out, labels, pseudo)
    kd = _ce([2.0, 0.0], 0)  # z_0 against the anchors, class 0
    pcl = (_ce([0.5, 1.5], 1) + _ce([-0.5, 0.0], 0)) / 2  # loc 0 is FG, loc 1 is BG
    icl = _ce([1.0, 0.5], 0)
    assert math.isclose(losses["kd"].item(), kd, rel_tol=1e-6)
    assert math.isclose(losses["pcl"].item(), pcl, rel_tol=1e-6)
    assert math.isclose(losses["icl"].item(), icl, rel_tol=1e-6)
    assert math.isclose(losses["total"].item(), kd + pcl + icl, rel_tol=1e-6)
    only_kd = tedloc_losses(model, out, labels, pseudo, TeDLocLosses(kd=1.0, pcl=0.0, icl=0.0))
    assert math.isclose(only_kd["total"].item(), kd, rel_tol=1e-6)
    none_valid = PseudoLabels(pseudo.fg, pseudo.bg, torch.tensor([[False]]))
    assert tedloc_losses(model, out, labels, none_valid)["kd"].item() == 0.0


@pytest.mark.parametrize("name,size,grid", [("vit_tiny_patch16_224", 64, 16), ("tedloc_resnet_tiny", 64, 32)])
def test_shapes_and_only_the_head_trains(name, size, grid):
    torch.manual_seed(0)
    encoder = create_encoder(name, img_size=size)
    anchors = torch.from_numpy(orthogonalize(torch.randn(5, 12).numpy())).float()
    model = TeDLoc(encoder, anchors, decoder_channels=(32, 16))
    model.train()
    out = model(torch.randn(2, 3, size, size))
    assert model.embeddings(out["u"]).shape == (2, 12, grid, grid) and out["fg"].shape == (2, grid, grid)
    assert out["h"].shape == (2, 12) and out["logits"].shape == (2, 5)
    assert model.class_map(out["u"], torch.tensor([0, 4])).shape == (2, grid, grid)
    pseudo = PseudoLabels(torch.randint(0, grid * grid, (2, 3)), torch.randint(0, grid * grid, (2, 3)),
                          torch.ones(2, 3, dtype=torch.bool))
    tedloc_losses(model, out, torch.tensor([1, 2]), pseudo)["total"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert not model.anchors.requires_grad


@pytest.mark.parametrize("logit", ["dot", "cosine"])
def test_implicit_embeddings_equal_the_explicit_model(logit):
    """g, h and <z_p, t_c> computed from u equal the textbook computation on z = P(u)."""
    torch.manual_seed(0)
    anchors = torch.from_numpy(orthogonalize(torch.randn(5, 24).numpy())).float()
    model = TeDLoc(create_encoder("tedloc_resnet_tiny", img_size=32), anchors, (8,), logit, 3.0).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
        z = model.embeddings(out["u"])  # B x d x H x W
        g = model.head.g(z.movedim(1, -1)).movedim(-1, 1)
        assert torch.allclose(out["g"], g, atol=1e-5)
        fg = g.softmax(dim=1)[:, 1]
        h = weighted_pool(z, fg)
        assert torch.allclose(out["h"], h, atol=1e-5)
        assert torch.allclose(out["logits"], class_logits(h, anchors, logit, 3.0), atol=1e-5)
        classes = torch.tensor([0, 3, 4])
        explicit = class_logits(z.movedim(1, -1), anchors, logit, 3.0)  # B x H x W x K
        expected = explicit[torch.arange(3), ..., classes]
        assert torch.allclose(model.class_map(out["u"], classes), expected, atol=1e-5)


def test_upsample2x_is_nearest_neighbour():
    from tedloc.models.tedloc import Upsample2x

    x = torch.randn(2, 3, 5, 7)
    assert torch.equal(Upsample2x()(x), torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
