"""TeD-Loc speed on one GPU: inference latency and throughput, training steps, peak memory, and the chip's
own bf16 matrix-multiply rate measured in the same run.

    python scripts/bench_gpu.py --json bench_gpu.json              # the paper's setting (random weights)
    python scripts/bench_gpu.py --smoke                            # a tiny encoder on the CPU (the tests)

The model is tedloc's own ``TeDLoc`` with the paper's encoder (EVA-02-L/14 at 224x224, 16x16
patches; random weights: the numbers are speed, not accuracy), anchors K=200, d=768, and a
2-stage (128, 64) and a 4-stage (256, 128, 64, 32) decoder. Measured:

- inference (encoder + head, label-free), batch 1: fp32, bf16, bf16 ``torch.compile`` and, on
  CUDA, compiled with CUDA graphs (``mode="reduce-overhead"``); median of the timed repeats;
- inference throughput at batch 256 in bf16 (eager and compiled), as a share of the chip's
  matmul rate (images/s x the model's FLOPs per image / measured bf16 FLOP/s);
- one training step at batch 64 in bf16 (frozen E forward under no_grad, head forward and
  backward, the three losses, SGD), and the head alone from cached features;
- peak GPU memory of each.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from tedloc.models.encoders import create_encoder
from tedloc.models.tedloc import TeDLoc, TeDLocLosses, tedloc_loss_terms
from tedloc.pseudolabels import PseudoLabels
from tedloc.utils.device import Runtime

PAPER_ENCODER = "eva02_large_patch14_448.mim_in22k_ft_in22k_in1k"
DECODERS = {"2-stage": (128, 64), "4-stage": (256, 128, 64, 32)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory(fn, device: torch.device) -> float | None:
    """Peak GPU memory (GB) of one call of ``fn`` (None on the CPU)."""
    if device.type != "cuda":
        fn()
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 1e9


def matmul_rate(device: torch.device, n: int, repeats: int) -> float:
    """The chip's dense bf16 matrix-multiply rate in TFLOP/s (fp32 on the CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = timed(lambda: a @ b, device, 3, repeats)
    return 2 * n ** 3 / seconds / 1e12


def flops_per_image(model: TeDLoc, size: int, device: torch.device) -> float | None:
    """Forward FLOPs of one image (torch's FLOP counter), or None where it cannot count."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
        return float(counter.get_total_flops())
    except Exception:  # an op without a FLOP formula: report no share rather than a wrong one
        return None


def build(encoder_name: str, size: int, decoder: tuple[int, ...], classes: int, dim: int,
          device: torch.device) -> TeDLoc:
    torch.manual_seed(0)
    encoder = create_encoder(encoder_name, img_size=size)
    anchors = torch.linalg.qr(torch.randn(dim, classes))[0].T.contiguous()  # K orthonormal anchors
    return TeDLoc(encoder, anchors, decoder).to(device).eval()


def train_step_fn(model: TeDLoc, images: torch.Tensor, features: torch.Tensor | None, runtime: Runtime):
    """One TeD-Loc step (from images, or from cached features when given)."""
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.01, momentum=0.9)
    labels = torch.arange(len(images), device=images.device) % model.anchors.shape[0]
    weights = TeDLocLosses()

    def step() -> None:
        model.head.train()
        with runtime.autocast():
            feats = features if features is not None else model.forward_features(images)
            out = model.forward_head(feats)
            grid = out["fg"].shape[-1] * out["fg"].shape[-2]
            locations = torch.arange(10, device=images.device)
            fg = (locations[None] * 7) % grid
            pseudo = PseudoLabels(fg.expand(len(images), -1), ((fg + grid // 2) % grid).expand(len(images), -1),
                                  torch.ones(len(images), 10, dtype=torch.bool, device=images.device))
            terms = tedloc_loss_terms(model, out, labels, pseudo, weights)
            loss = sum(total / max(count, 1) for total, count in terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cpu") if args.smoke else torch.device(args.device)
    encoder = "vit_tiny_patch16_224" if args.smoke else args.encoder
    size, classes, dim = (32, 10, 64) if args.smoke else (args.size, 200, 768)
    b1, bt, btrain = (1, 4, 4) if args.smoke else (1, args.batch, args.train_batch)
    warmup, repeats = (1, 2) if args.smoke else (args.warmup, args.repeats)
    bf16 = Runtime(device, "bf16")
    fp32 = Runtime(device, "fp32")
    result: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "encoder": encoder, "img_size": size, "classes": classes,
                    "anchor_dim": dim, "batch_throughput": bt, "batch_train": btrain, "decoders": {}}
    try:
        import timm

        result["timm"] = timm.__version__
    except ImportError:
        pass
    result["matmul_tflops"] = matmul_rate(device, 256 if args.smoke else 8192, 3 if args.smoke else 20)
    for name, channels in DECODERS.items():
        if args.smoke and name == "4-stage":
            channels = (16, 8, 8, 8)
        model = build(encoder, size, channels, classes, dim, device)
        row: dict = {"channels": list(channels), "params_M": sum(p.numel() for p in model.parameters()) / 1e6}
        flops = flops_per_image(model, size, device)
        row["gflops_per_image"] = None if flops is None else flops / 1e9
        one = torch.randn(b1, 3, size, size, device=device)
        many = torch.randn(bt, 3, size, size, device=device)

        def infer(x, runtime, net=model):
            with torch.no_grad(), runtime.autocast():
                return net(x)["fg"]

        row["latency_ms"] = {"fp32": 1e3 * timed(lambda: infer(one, fp32), device, warmup, repeats),
                             "bf16": 1e3 * timed(lambda: infer(one, bf16), device, warmup, repeats)}
        row["throughput_img_s"] = {"bf16": bt / timed(lambda: infer(many, bf16), device, warmup, repeats)}
        row["peak_gb"] = {"inference_bf16": peak_memory(lambda: infer(many, bf16), device)}
        if args.compile:
            compiled = torch.compile(model)
            row["latency_ms"]["bf16_compiled"] = 1e3 * timed(lambda: infer(one, bf16, compiled), device, 3, repeats)
            row["throughput_img_s"]["bf16_compiled"] = bt / timed(lambda: infer(many, bf16, compiled), device, 3,
                                                                  repeats)
            if device.type == "cuda":
                graphed = torch.compile(model, mode="reduce-overhead")
                row["latency_ms"]["bf16_cuda_graph"] = 1e3 * timed(lambda: infer(one, bf16, graphed), device, 5,
                                                                   repeats)
        if flops is not None:
            best = max(row["throughput_img_s"].values())
            row["share_of_matmul_rate"] = best * flops / (result["matmul_tflops"] * 1e12)
        images = torch.randn(btrain, 3, size, size, device=device)
        with torch.no_grad(), bf16.autocast():
            features = model.forward_features(images)
        full = train_step_fn(model, images, None, bf16)
        head = train_step_fn(model, images, features, bf16)
        row["train_step_ms"] = {"full_bf16": 1e3 * timed(full, device, warmup, repeats),
                                "head_only_bf16": 1e3 * timed(head, device, warmup, repeats)}
        row["train_img_s"] = {k.replace("_ms", ""): btrain / (v / 1e3) for k, v in row["train_step_ms"].items()}
        row["peak_gb"]["train_full_bf16"] = peak_memory(full, device)
        row["peak_gb"]["train_head_only_bf16"] = peak_memory(head, device)
        result["decoders"][name] = row
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def markdown(result: dict) -> str:
    lines = [f"{result['device']}, torch {result['torch']}, {result['encoder']} at {result['img_size']} "
             f"(random weights), matmul rate {result['matmul_tflops']:.3g} TFLOP/s "
             f"({'bf16' if result['device'] != 'cpu' else 'fp32'})", "",
             "| decoder | batch 1 fp32 | batch 1 bf16 | batch 1 compiled | batch 1 CUDA graph | "
             f"batch {result['batch_throughput']} bf16 | compiled | share of matmul rate | "
             f"train step batch {result['batch_train']} (full) | head only | peak GB (train full) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["decoders"].items():
        lat, thr, step = row["latency_ms"], row["throughput_img_s"], row["train_img_s"]

        def f(value, unit=""):
            return "-" if value is None else f"{value:,.1f}{unit}"

        share = row.get("share_of_matmul_rate")
        lines.append(f"| {name} | {f(lat['fp32'], ' ms')} | {f(lat['bf16'], ' ms')} | "
                     f"{f(lat.get('bf16_compiled'), ' ms')} | {f(lat.get('bf16_cuda_graph'), ' ms')} | "
                     f"{f(thr['bf16'], ' img/s')} | {f(thr.get('bf16_compiled'), ' img/s')} | "
                     f"{'-' if share is None else f'{100 * share:.0f} %'} | {f(step['full_bf16'], ' img/s')} | "
                     f"{f(step['head_only_bf16'], ' img/s')} | {f(row['peak_gb']['train_full_bf16'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny encoder on the CPU, a few repeats")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--encoder", default=PAPER_ENCODER)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=256, help="inference throughput batch")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile (default: on CUDA only)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.compile is None:
        args.compile = not args.smoke and torch.cuda.is_available()
    if not args.smoke and args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here; use --smoke for the CPU check", file=sys.stderr)
        return 2
    result = run(args)
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
