"""The compute-node workflow end to end, against a local Hub that serves random weights under the real repository
names and formats of ``cub_bench`` (ResNet-50 ``timm/resnet50.a1_in1k``, EVA-02-L
``timm/eva02_large_patch14_448.mim_in22k_ft_in22k_in1k``, CLIP ViT-B/16 ``timm/vit_base_patch16_clip_224.openai``):

1. ``tedloc weights fetch --config cub_bench`` with the Hub at 127.0.0.1 (the login node);
2. ``HF_HUB_OFFLINE=1 tedloc weights check --config cub_bench`` (the job script);
3. ``HF_HUB_OFFLINE=1 tedloc bench cub`` on a small synthetic dataset, one epoch each (the job), and the same
   command with the cache emptied: it must stop before any work, in one line.

The weights are random (fp16 files, as the Hub's are often stored), so the numbers mean nothing: what is checked is
that every loader finds its file and the pipeline runs. About 15 minutes and 3 GB of memory on 2 CPU cores.

    python scripts/offline_cluster_check.py --out /tmp/offline_check
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hub_fixtures import FakeHub, hub_env, safetensors_bytes, timm_state_dict  # noqa: E402


def _half(state: dict) -> dict:
    return {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}


def _open_clip_state() -> dict:
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(args: list[str], env: dict, log: Path) -> tuple[int, float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tedloc", *args], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    log.write_text(f"$ tedloc {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return done.returncode, elapsed, errors[0] if errors else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="work folder (removed first)")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    t0 = time.monotonic()
    repos = {
        "timm/resnet50.a1_in1k": {"model.safetensors": safetensors_bytes(_half(timm_state_dict("resnet50")))},
        "timm/eva02_large_patch14_448.mim_in22k_ft_in22k_in1k": {
            "model.safetensors": safetensors_bytes(_half(timm_state_dict("eva02_large_patch14_448")))},
        "timm/vit_base_patch16_clip_224.openai": {"open_clip_model.safetensors": safetensors_bytes(_half(
            _open_clip_state()))},
    }
    sizes = {repo: sum(len(b) for b in files.values()) for repo, files in repos.items()}
    print(f"random weights made in {time.monotonic() - t0:.0f} s: " +
          ", ".join(f"{r} {s / 2**20:.0f} MiB" for r, s in sizes.items()), flush=True)

    data = out / "data"
    subprocess.run([sys.executable, "-m", "tedloc", "data", "synthetic", "--out", str(data), "--classes", "4",
                    "--train", "8", "--val", "4", "--test", "4", "--size", "96"], check=True, capture_output=True,
                   env=hub_env(out))
    bench = ["bench", "cub", "--data", str(data), "--set", "cam.epochs=1", "cam.batch_size=8", "cam.workers=0",
             "tedloc.epochs=1", "tedloc.batch_size=8", "tedloc.workers=0", "eval_batch_size=8", "overlays=2"]
    results = []
    with FakeHub(repos) as hub:
        steps = [
            ("fetch (Hub reachable)", ["weights", "fetch", "--config", "cub_bench"], hub_env(out, hub.url)),
            ("check (HF_HUB_OFFLINE=1)", ["weights", "check", "--config", "cub_bench"],
             hub_env(out, hub.url, offline=True)),
        ]
        for name, command, env in steps:
            results.append((name, *_run(command, env, out / f"{len(results)}.log")))
            print(results[-1], flush=True)
        served = len(hub.downloads())
        results.append(("bench cub (HF_HUB_OFFLINE=1)",
                        *_run([*bench, "--out", str(out / "bench")], hub_env(out, hub.url, offline=True),
                              out / "bench.log")))
        print(results[-1], flush=True)
        assert len(hub.downloads()) == served, "the offline bench asked the Hub for a file"
    shutil.rmtree(out / "hf")
    results.append(("bench cub, empty cache (HF_HUB_OFFLINE=1)",
                    *_run([*bench, "--out", str(out / "bench_empty")], hub_env(out, offline=True),
                          out / "bench_empty.log")))
    print(results[-1], flush=True)

    print("\n| step | exit | seconds | error line |\n|---|---|---|---|")
    for name, code, seconds, error in results:
        print(f"| {name} | {code} | {seconds:.0f} | {error[:120]} |")
    ok = [r[1] for r in results] == [0, 0, 0, 2] and not (out / "bench_empty" / "runs").exists()
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
