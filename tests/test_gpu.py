"""GPU-only checks (skipped without CUDA; CI has none): CUDA equals the CPU where it must."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tedloc.pseudolabels import PseudoLabelSampler, SamplerConfig
from tedloc.utils.device import Runtime
from tedloc.utils.keyed_random import keyed_uniform, sample_keys

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_keyed_draws_and_pseudo_labels_are_the_same_on_cuda():
    keys = sample_keys(3, 1, torch.arange(64))
    assert torch.equal(keyed_uniform(keys.cuda(), 300).cpu(), keyed_uniform(keys, 300))
    maps = torch.rand(64, 16, 16, generator=torch.Generator().manual_seed(0))
    sampler = PseudoLabelSampler(SamplerConfig(k=10))
    cpu, gpu = sampler(maps, keys=keys), sampler(maps.cuda(), keys=keys.cuda())
    assert torch.equal(gpu.fg.cpu(), cpu.fg) and torch.equal(gpu.bg.cpu(), cpu.bg)


def test_a_training_step_on_cuda_equals_the_cpu_step():
    from tedloc.models.encoders import create_encoder
    from tedloc.models.tedloc import TeDLoc, tedloc_losses

    torch.manual_seed(0)
    model = TeDLoc(create_encoder("tedloc_resnet_tiny", img_size=64), torch.eye(8, 16), (16, 8))
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3])
    keys = sample_keys(0, 0, torch.arange(4))
    grads = []
    for device in ("cpu", "cuda"):
        torch.backends.cudnn.deterministic = True
        m = TeDLoc(create_encoder("tedloc_resnet_tiny", img_size=64), torch.eye(8, 16), (16, 8))
        m.load_state_dict(model.state_dict())
        m = m.to(device).train()
        out = m(images.to(device))
        pseudo = PseudoLabelSampler(SamplerConfig(k=4))(out["fg"].detach().float(), keys=keys.to(device))
        loss = tedloc_losses(m, out, labels.to(device), pseudo)["total"]
        loss.backward()
        grads.append({n: p.grad.detach().cpu() for n, p in m.head.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-4, rtol=1e-3)


def test_predict_on_cuda_agrees_with_the_cpu(tmp_path):
    from tedloc.data import SyntheticConfig, load_dataset, make_synthetic
    from tedloc.inference import Localizer
    from tedloc.methods.cam import PretrainConfig, pretrain

    data = make_synthetic(tmp_path / "d", SyntheticConfig(classes=4, train=24, val=8, test=8, size=48, seed=3))
    pretrain(data, tmp_path / "run", PretrainConfig(input_size=48, epochs=1, batch_size=8, workers=0),
             runtime=Runtime.create("cuda", "fp32"))
    images = [load_dataset(data)["test"].image_path(i) for i in range(4)]
    cpu = Localizer.from_run(tmp_path / "run", device="cpu")(images)
    for precision in ("fp32", "bf16"):
        gpu = Localizer.from_run(tmp_path / "run", device="cuda", precision=precision)(images)
        for a, b in zip(cpu, gpu):
            assert a.top_classes[0][0] == b.top_classes[0][0]
            assert np.abs(a.map - b.map).max() < (1e-4 if precision == "fp32" else 0.05)


def test_tedloc_trains_on_cuda_from_cuda_maps_and_predicts_compiled(tmp_path):
    """The whole path on CUDA: pretrain, CAM cache, TeD-Loc (the pseudo-label sampler on CUDA maps), predict."""
    from tedloc.methods.run_maps import compute_run_map_cache
    from tedloc.data import SyntheticConfig, load_dataset, make_synthetic
    from tedloc.inference import Localizer
    from tedloc.text import build_anchors
    from tedloc.methods.cam import PretrainConfig, pretrain
    from tedloc.methods.tedloc import TeDLocTrainConfig, train_tedloc

    cuda = Runtime.create("cuda", "bf16")
    data = make_synthetic(tmp_path / "d", SyntheticConfig(classes=4, train=24, val=8, test=8, size=48, seed=3))
    pretrain(data, tmp_path / "cnn", PretrainConfig(input_size=48, epochs=1, batch_size=8, workers=0), runtime=cuda)
    compute_run_map_cache(tmp_path / "cnn", data, "train", tmp_path / "cam", runtime=cuda)
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(4, 16)))
    names = load_dataset(data).class_names
    build_anchors(names, f"file:{tmp_path / 'emb.npy'}").save(tmp_path / "anchors.safetensors")
    cfg = TeDLocTrainConfig(encoder_run=str(tmp_path / "cnn"), input_size=48, decoder_channels=(16, 8), epochs=1,
                            batch_size=8, k=4, workers=1)
    history = train_tedloc(data, tmp_path / "run", tmp_path / "anchors.safetensors", tmp_path / "cam", cfg,
                           runtime=cuda)
    assert np.isfinite(history[-1]["loss_total"])
    images = [load_dataset(data)["test"].image_path(i) for i in range(4)]
    eager = Localizer.from_run(tmp_path / "run", device="cuda", precision="fp32")(images)
    compiled = Localizer.from_run(tmp_path / "run", device="cuda", precision="fp32", compile=True)(images)
    for a, b in zip(eager, compiled):
        assert a.top_classes[0][0] == b.top_classes[0][0] and np.abs(a.map - b.map).max() < 1e-3


def test_dips_seeds_and_crf_loss_on_cuda(tmp_path):
    from tedloc.data.transforms import View
    from tedloc.methods.dips.train import DecoderStage, DiPSTrainConfig, build_dips, choose_proposals
    from tedloc.models.dense_crf_loss import dense_crf_loss
    from tedloc.pseudolabels.proposal_cache import ProposalCache
    from tedloc.pseudolabels.proposals import Proposal

    torch.manual_seed(0)
    cfg = DiPSTrainConfig(input_size=32, top_k=2, fg_count=5, bg_count=5, dilation=1)
    net = build_dips(cfg, 4)
    cache = ProposalCache(tmp_path / "cache", [f"im{i}" for i in range(8)], 2, {})
    cache.write(list(range(8)), [[Proposal((2, 2, 13, 13), 0), Proposal((16, 16, 29, 29), 3)]] * 8,
                [np.array([1.0, 0.5])] * 8)
    views = torch.stack([View((32, 32), (32, 32), (0, 0, 32, 32)).to_tensor()] * 8)
    attention = net.vit(torch.randn(8, 3, 32, 32), attention=True).attention
    task = DecoderStage(net, None, cache, None, None, cfg)
    labels = {}
    for device in ("cpu", "cuda"):
        batch = {"index": torch.arange(8), "view": views, "label": torch.zeros(8, dtype=torch.long, device=device)}
        labels[device] = task.pixel_labels(batch, attention.to(device), (32, 32), epoch=0).cpu()
    keys = sample_keys(cfg.seed, 0, torch.arange(8), stream=0x6470)
    chosen, union, _ = choose_proposals(cache, list(range(8)), views, keys, 2, (32, 32))
    gpu = labels["cuda"]
    assert ((gpu == 1) & ~chosen).sum() == 0 and ((gpu == 0) & union).sum() == 0
    assert ((gpu == 1).flatten(1).sum(1) == 5).all() and ((gpu == 0).flatten(1).sum(1) == 5).all()
    assert (gpu == labels["cpu"]).float().mean() > 0.99  # bilinear maps may differ in the last bit on CUDA
    probs = torch.rand(2, 2, 32, 32, generator=torch.Generator().manual_seed(2)).softmax(dim=1)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 255
    torch.testing.assert_close(dense_crf_loss(probs.cuda(), images.cuda()).cpu(), dense_crf_loss(probs, images),
                               rtol=1e-4, atol=1e-2)


def test_dips_trains_on_cuda_in_bf16_and_predicts(tmp_path):
    from tedloc.cli import main
    from tedloc.data import SyntheticConfig, make_synthetic
    from tedloc.methods import load_model

    data = make_synthetic(tmp_path / "data", SyntheticConfig(classes=4, train=64, val=16, test=16, size=48, seed=3))
    cuda = ["--device", "cuda", "--precision", "bf16"]
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "vit"), "--arch", "tedloc_vit_tiny",
                 "--input-size", "32", "--epochs", "1", "--optimizer", "adamw", "--lr", "1e-3", "--workers", "0",
                 *cuda]) == 0
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "cnn"), "--input-size", "48", "--epochs", "1",
                 "--workers", "0", *cuda]) == 0
    assert main(["proposals", "--data", str(data), "--out", str(tmp_path / "p"), "--classifier-run",
                 str(tmp_path / "cnn"), "--encoder-run", str(tmp_path / "vit"), "--input-size", "32", *cuda]) == 0
    assert main(["train", "--method", "dips", "--data", str(data), "--out", str(tmp_path / "run"), "--proposals",
                 str(tmp_path / "p"), "--encoder-run", str(tmp_path / "vit"), "--input-size", "32", "--epochs", "1",
                 "--classifier-epochs", "1", "--batch-size", "16", *cuda]) == 0
    model = load_model(tmp_path / "run", runtime=Runtime.create("cuda", "bf16"))
    scores, maps = model.predict(torch.randn(2, 3, 32, 32))
    assert scores.shape == (2, 4) and maps.shape == (2, 32, 32) and torch.isfinite(maps).all()
