"""The training engine's parts: devices and precisions, keyed random draws, sample order and sharding,
batch norm across processes, validation in eval mode."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tedloc.engine import LossTerm, Schedule, Trainer
from tedloc.engine.distributed import epoch_order, rank_batches, shard_indices
from tedloc.errors import TedlocError
from tedloc.pseudolabels import PseudoLabelSampler, SamplerConfig
from tedloc.utils.device import Runtime, resolve_device, resolve_precision
from tedloc.utils.keyed_random import _mix32, keyed_uniform, sample_keys
from tedloc.utils.progress import progress
from runtimes import CPU

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_CUDA, reason="checks the messages of a machine without CUDA")
def test_devices_and_precisions_that_do_not_exist_are_one_line_errors():
    for name in ("cuda", "cuda:3"):
        with pytest.raises(TedlocError, match=r"CUDA is not available on this machine \(available: cpu"):
            resolve_device(name)
    with pytest.raises(TedlocError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(TedlocError, match="fp16 needs a GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(TedlocError, match="unknown precision"):
        resolve_precision("fp8", torch.device("cpu"))
    assert Runtime.create("auto", "auto") == Runtime(torch.device("cpu"), "fp32")
    with pytest.raises(TypeError):
        Runtime()  # no default runtime: one is resolved at the entry point and passed down
    assert Runtime.create("cpu", "bf16").precision == "bf16"
    assert Runtime.create().describe() == {"device": "cpu", "device_name": "cpu", "precision": "fp32"}


def test_runtime_moves_nested_batches_and_autocasts():
    runtime = Runtime(torch.device("cpu"), "bf16")
    batch = runtime.to_device({"x": torch.ones(2), "pair": (torch.zeros(1), 3), "name": "a"})
    assert batch["pair"][1] == 3 and batch["name"] == "a"
    with runtime.autocast():
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16
    with CPU.autocast():
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.float32


def _lowbias32(x: int) -> int:
    """Chris Wellons' published lowbias32, in plain Python integers."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_keyed_hash_is_lowbias32_on_tensors():
    values = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, 0xFFFFFFFF]
    assert _mix32(torch.tensor(values)).tolist() == [_lowbias32(v) for v in values]
    assert [_mix32(v) for v in values] == [_lowbias32(v) for v in values]  # and on Python integers


def test_keyed_draws_depend_on_the_key_only():
    keys = sample_keys(7, 3, torch.arange(10))
    assert keys.unique().numel() == 10
    u = keyed_uniform(keys, 50)
    assert torch.equal(keyed_uniform(keys[[4, 2]], 50), u[[4, 2]])  # any batch, any order
    assert torch.equal(sample_keys(7, 3, torch.tensor([9, 0])), keys[[9, 0]])
    assert not torch.equal(sample_keys(7, 4, torch.arange(10)), keys)  # another epoch
    assert not torch.equal(sample_keys(8, 3, torch.arange(10)), keys)  # another seed
    big = keyed_uniform(sample_keys(0, 0, torch.arange(200)), 1000)
    assert 0 <= float(big.min()) and float(big.max()) < 1
    assert abs(float(big.mean()) - 0.5) < 0.005 and abs(float(big.std()) - 12 ** -0.5) < 0.005


def test_pseudo_label_draws_keyed_by_sample_do_not_depend_on_the_batch():
    maps = torch.rand(6, 12, 12, generator=torch.Generator().manual_seed(0))
    keys = sample_keys(0, 2, torch.arange(100, 106))
    sampler = PseudoLabelSampler(SamplerConfig(k=5))
    whole = sampler(maps, keys=keys)
    for rows in ([3], [5, 0, 1]):
        part = sampler(maps[rows], keys=keys[rows])
        assert torch.equal(part.fg, whole.fg[rows]) and torch.equal(part.bg, whole.bg[rows])
    again = sampler(maps, keys=sample_keys(0, 3, torch.arange(100, 106)))
    assert not torch.equal(again.fg, whole.fg)  # the next epoch draws afresh


class _Indices(Dataset):
    def __len__(self) -> int:
        return 37

    def __getitem__(self, i: int) -> int:
        return i


@pytest.mark.parametrize("workers", [0, 1])
def test_epoch_order_is_the_order_runs_were_always_trained_in(workers):
    """The engine's order equals what a shuffling DataLoader wrapped in the former progress bar
    (tqdm.auto: one extra iterator per epoch) gave: published runs reproduce bit for bit."""
    from tqdm.auto import tqdm

    for seed, epoch in ((0, 0), (3, 5)):
        loader = DataLoader(_Indices(), batch_size=5, shuffle=True, num_workers=workers,
                            generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        got = [int(i) for batch in tqdm(loader, disable=True) for i in batch]
        assert got == epoch_order(37, seed, epoch, legacy_workers=workers > 0)


def test_progress_bar_does_not_iterate_its_loader():
    made = []

    class Counting(list):
        def __iter__(self):
            made.append(1)
            return super().__iter__()

    assert list(progress(Counting([1, 2]))) == [1, 2] and len(made) == 1


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_share_each_global_batch(world):
    order = epoch_order(23, 0, 1)
    single = rank_batches(order, 4 * world)
    shares = [rank_batches(order, 4, rank, world) for rank in range(world)]
    steps = len(shares[0])
    assert all(len(s) == steps for s in shares)
    assert [sum((s[j] for s in shares), []) for j in range(steps)] == [b for b in single if len(b) >= world]
    shards = [shard_indices(23, 4, rank, world) for rank in range(world)]
    assert sorted(sum(shards, [])) == list(range(23)) and shards[0][:4] == [0, 1, 2, 3]
    assert shards[1][:4] == [4, 5, 6, 7] and shards[0][4:8] == list(range(4 * world, 4 * world + 4))


class _Toy(Dataset):
    def __init__(self):
        self.x = torch.randn(20, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        self.epochs = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": i % 2, "index": i}


class _ToyTask:
    def __init__(self):
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
        self.data = _Toy()
        self.modes: list[bool] = []

    def trainable(self):
        return self.net

    def train_dataset(self):
        return self.data

    def make_optimizer(self, module):
        return torch.optim.SGD(module.parameters(), lr=0.1)

    def loss_terms(self, module, batch, epoch):
        self.modes.append(module.training)
        logits = module(batch["x"])
        return {"ce": LossTerm(nn.functional.cross_entropy(logits, batch["y"], reduction="sum"), len(logits)),
                "seen": LossTerm(torch.tensor(float(len(logits))), None, 0.0)}

    def validate(self, runtime):
        self.modes.append(self.net.training)
        return {"acc": 1.0}

    def row(self, train, val):
        return {"ce": train["ce"], "seen": train["seen"], **val}


def test_trainer_trains_validates_in_eval_mode_and_resumes(tmp_path):
    task = _ToyTask()
    schedule = Schedule(epochs=2, batch_size=8, lr=0.1, lr_step=1, lr_gamma=0.5)
    history = Trainer(schedule, runtime=CPU).fit(task, tmp_path / "a")
    assert [r["seen"] for r in history] == [20.0, 20.0]  # counters are epoch sums
    assert task.modes == [True] * 3 + [False] + [True] * 3 + [False]  # 3 batches, then validation in eval mode
    assert [r["lr"] for r in history] == [0.1, 0.05] and task.data.epochs == [0, 1]
    assert (tmp_path / "a" / "checkpoints" / "epoch_002.safetensors").is_file()
    # a second run of 1 epoch, resumed for a second one, ends with the same weights
    part = _ToyTask()
    Trainer(Schedule(epochs=1, batch_size=8, lr=0.1, lr_step=1, lr_gamma=0.5), runtime=CPU).fit(part, tmp_path / "b")
    resumed = _ToyTask()
    again = Trainer(schedule, runtime=CPU).fit(resumed, tmp_path / "b")
    assert [r["ce"] for r in again] == [r["ce"] for r in history]
    assert all(torch.equal(a, b) for a, b in zip(task.net.state_dict().values(), resumed.net.state_dict().values()))


def _sync_bn_worker(rank: int, world: int, init_file: str, x: torch.Tensor, out_dir: str) -> None:
    import torch.distributed as dist

    from tedloc.engine.sync_batchnorm import synchronize_batchnorm

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = synchronize_batchnorm(nn.Sequential(nn.Conv2d(3, 5, 1), nn.BatchNorm2d(5)), torch.device("cpu"))
    share = x.chunk(world)[rank].clone().requires_grad_(True)
    y = net(share)
    (y.square().sum() * world / len(x)).backward()  # each rank's share of the global mean, DDP-style
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    for g in grads.values():
        dist.all_reduce(g)
        g /= world
    torch.save({"y": y.detach(), "xgrad": share.grad, "grads": grads, "state": net.state_dict()},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_batchnorm_synchronised_over_gloo_equals_one_process(tmp_path):
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 3 + 1
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(3, 5, 1), nn.BatchNorm2d(5))
    xr = x.clone().requires_grad_(True)
    y = ref(xr)
    (y.square().sum() / len(x)).backward()
    torch.multiprocessing.spawn(_sync_bn_worker, args=(2, str(tmp_path / "init"), x, str(tmp_path)), nprocs=2)
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.testing.assert_close(torch.cat([p["y"] for p in parts]), y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([p["xgrad"] for p in parts]), xr.grad, atol=1e-5, rtol=1e-5)
    for name, param in ref.named_parameters():
        for part in parts:
            torch.testing.assert_close(part["grads"][name], param.grad, atol=1e-5, rtol=1e-5)
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(parts[0]["state"][key], value, atol=1e-5, rtol=1e-5)


def test_a_single_process_is_a_world_of_one():
    dist = Runtime.create("cpu").dist
    assert (dist.rank, dist.world_size, dist.is_main, dist.enabled) == (0, 1, True, False)
    t = torch.ones(3)
    assert dist.all_reduce_sum(t) is t and dist.gather_objects(5) == [5] and dist.broadcast_object("a") == "a"


NETWORK_COMMANDS = ["pretrain", "cams", "anchors", "train", "evaluate", "predict", "pseudo-boxes", "protocol-table",
                    "noise-study", "sweep", "demo"]


def test_every_command_that_runs_a_network_takes_device_and_precision(capsys):
    from tedloc.cli import main

    for command in [[c] for c in NETWORK_COMMANDS] + [["bench", "tinyimagenet"]]:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "--device" in text and "--precision" in text, command


@pytest.mark.skipif(not NO_CUDA, reason="checks the messages of a machine without CUDA")
def test_cli_refuses_missing_devices_in_one_line(synthetic_small, tmp_path, capsys):
    from tedloc.cli import main

    args = ["pretrain", "--data", str(synthetic_small), "--out", str(tmp_path / "r"), "--epochs", "1"]
    assert main([*args, "--device", "cuda:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --device cuda:1: CUDA is not available on this machine (available: cpu)"]
    assert main([*args, "--device", "cpu", "--precision", "fp16"]) == 2
    assert capsys.readouterr().err.strip() == "error: --precision fp16 needs a GPU; on the CPU use fp32 or bf16"
    assert not (tmp_path / "r").exists()


def test_resume_in_another_precision_is_refused_and_runtime_is_recorded(synthetic_small, tmp_path, capsys):
    import json

    from tedloc.cli import main

    args = ["pretrain", "--data", str(synthetic_small), "--out", str(tmp_path / "r"), "--epochs", "1",
            "--batch-size", "8", "--input-size", "48", "--workers", "0", "--device", "cpu"]
    assert main([*args, "--precision", "bf16"]) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["precision"] == "bf16" and config["runtime"]["processes"] == 1
    capsys.readouterr()
    assert main([*args, "--precision", "fp32"]) == 2
    assert 'precision: "bf16" in the run, "fp32" now' in capsys.readouterr().err


def test_bench_gpu_smoke_runs_on_the_cpu(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_gpu", Path(__file__).parents[1] / "scripts" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke", "--json", str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert set(result["decoders"]) == {"2-stage", "4-stage"}
    for row in result["decoders"].values():
        assert row["latency_ms"]["fp32"] > 0 and row["throughput_img_s"]["bf16"] > 0
        assert row["train_img_s"]["full_bf16"] > 0 and row["train_img_s"]["head_only_bf16"] > 0


def test_batchnorm_with_activation_keeps_its_activation_when_synchronised():
    """timm's fused BatchNormAct2d (EfficientNet, MobileNet, RegNet...) keeps its activation."""
    from timm.layers import BatchNormAct2d

    from tedloc.engine.sync_batchnorm import GlooSyncBatchNorm, synchronize_batchnorm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), BatchNormAct2d(4, act_layer=nn.SiLU), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 5, 5)
    for mode in (True, False):
        net.train(mode)
        expected = net(x)
        synced = synchronize_batchnorm(__import__("copy").deepcopy(net), torch.device("cpu"))
        assert isinstance(synced[1], GlooSyncBatchNorm) and isinstance(synced[1].act, nn.SiLU)
        torch.testing.assert_close(synced.train(mode)(x), expected)
    with pytest.raises(TedlocError, match="BatchNorm1d"):
        synchronize_batchnorm(nn.Sequential(nn.BatchNorm1d(3)), torch.device("cpu"))


def test_a_runtime_made_by_hand_under_torchrun_is_refused(monkeypatch):
    assert hash(CPU) == hash(Runtime(torch.device("cpu"), "fp32", CPU.dist))  # a runtime is a value
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TedlocError, match=r"one of 2 \(torchrun\).*Runtime.create"):
        Runtime(torch.device("cpu"), "fp32")
