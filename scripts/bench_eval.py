"""Benchmark tedloc's box evaluation against the reference wsolevaluation code, side by side.

    python scripts/bench_eval.py --maps 5000 --interval 0.01 --reference /path/to/wsolevaluation

Makes ``--maps`` CAM-like score maps (random low-resolution fields, ReLU, bicubic to 224x224,
min-max: the reference's own normalisation) for the first images of the ILSVRC test metadata
(their real sizes and GT boxes), saves them as ``<id>.npy`` and evaluates them:

- tedloc: ``evaluate_map_folder`` with 1 process and with ``--workers`` processes (all metrics:
  MaxBoxAcc, MaxBoxAccV2, mIoU, ... in one pass);
- the reference (when ``--reference`` points to a checkout of clovaai/wsolevaluation):
  ``BoxEvaluator(multi_contour_eval=True)`` (MaxBoxAccV2) and ``multi_contour_eval=False``
  (MaxBoxAcc), each map loaded the same way; numbers must be equal, times are compared.

The reference needs two small shims on current numpy (``np.float``) and without ``munch``;
nothing of it is copied into tedloc.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np

from tedloc.data import Split, read_split_metadata
from tedloc.data.wsol_format import write_split_metadata
from tedloc.eval import evaluate_map_folder, normalize_scoremap

REPO = Path(__file__).resolve().parents[1]
DEFAULT_METADATA = REPO.parent / "shared" / "data" / "wsolevaluation" / "metadata" / "ILSVRC" / "test"


def make_split(n: int, metadata: Path) -> Split:
    if metadata.exists():
        split, problems = read_split_metadata(metadata, "test", 1000)
        assert not problems
        return split.subset(range(n))
    rng = np.random.default_rng(0)
    sizes = rng.integers(200, 600, (n, 2))
    boxes = []
    for w, h in sizes:
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        boxes.append([[x0, y0, rng.integers(x0, w), rng.integers(y0, h)]])
    return Split("test", [f"img/{i:06d}.jpg" for i in range(n)], np.zeros(n, int), sizes, boxes)


def make_maps(split: Split, folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for image_id in split.image_ids:
        path = folder / f"{image_id}.npy"
        if path.exists():
            continue
        k = int(rng.choice([7, 14, 28]))
        cam = np.maximum(rng.normal(size=(k, k)) + cv2.GaussianBlur(rng.normal(size=(k, k)) * 3, (0, 0), k / 7), 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, normalize_scoremap(cam, (224, 224)))


def stream(n: int, metadata: Path, interval: float) -> dict:
    """Evaluate ``n`` maps made on the fly (never stored): time and peak memory of the accumulator."""
    import resource

    from tedloc.eval import WSOLEvaluator

    split = make_split(n, metadata)
    rng = np.random.default_rng(0)
    evaluator = WSOLEvaluator(split, interval=interval)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for k, image_id in enumerate(split.image_ids):
        cam = np.maximum(rng.normal(size=(14, 14)), 0)
        evaluator.accumulate(image_id, normalize_scoremap(cam, (224, 224)))
        if k == 999:
            rss1k = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = evaluator.compute()
    return {"stream_maps": n, "interval": interval, "seconds": seconds, "ms_per_map": seconds / n * 1000,
            "peak_rss_mb_before": rss0 / 1024, "peak_rss_mb_after_1000": rss1k / 1024 if n >= 1000 else None,
            "peak_rss_mb_end": rss / 1024, "MaxBoxAccV2": result["MaxBoxAccV2"]}


def load_reference(path: Path):
    np.float = float  # removed from numpy; the reference uses it as float64

    class Munch(dict):
        __getattr__ = dict.__getitem__
        __setattr__ = dict.__setitem__

    sys.modules.setdefault("munch", types.SimpleNamespace(Munch=Munch))
    sys.path.insert(0, str(path))
    import evaluation  # noqa: E402  (the reference module)

    return evaluation


def run_reference(ref, split: Split, maps: Path, interval: float, multi: bool) -> tuple[list, float]:
    with tempfile.TemporaryDirectory() as tmp:
        write_split_metadata(split, tmp)
        evaluator = ref.BoxEvaluator(
            metadata=ref.configure_metadata(tmp), dataset_name="ILSVRC", split="test",
            cam_threshold_list=list(np.arange(0, 1, interval)), iou_threshold_list=[30, 50, 70],
            mask_root="", multi_contour_eval=multi)
        start = time.perf_counter()
        for image_id in split.image_ids:
            evaluator.accumulate(np.load(maps / f"{image_id}.npy"), image_id)
        result = evaluator.compute()
        return [float(v) for v in result], time.perf_counter() - start


def end_to_end(ref, split: Split, maps: Path, interval: float, workers: int) -> dict:
    """Both command-line paths as users run them: the reference's ``evaluate_wsol`` (MaxBoxAccV2
    settings: multi-contour, multi-IoU) and ``tedloc evaluate-maps``, from the same .npy files."""
    import subprocess

    from tedloc.data import WSOLDataset, save_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_split_metadata(split, tmp / "metadata" / "ILSVRC" / "test")
        start = time.perf_counter()
        theirs = ref.evaluate_wsol(scoremap_root=str(maps), metadata_root=str(tmp / "metadata"), mask_root=str(tmp),
                                   dataset_name="ILSVRC", split="test", multi_contour_eval=True, multi_iou_eval=True,
                                   iou_threshold_list=[30, 50, 70], cam_curve_interval=interval)
        t_ref = time.perf_counter() - start
        root = save_dataset(WSOLDataset("ILSVRC", [f"class_{k}" for k in range(1000)], {"test": split}),
                            tmp / "ds", image_root=None)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tedloc", "evaluate-maps", "--data", str(root), "--split", "test",
                        "--maps", str(maps), "--interval", str(interval), "--workers", str(workers),
                        "--json", str(tmp / "m.json")], check=True, capture_output=True)
        t_ours = time.perf_counter() - start
        ours = json.loads((tmp / "m.json").read_text())["MaxBoxAccV2"]
    return {"cli_reference_s": t_ref, "cli_tedloc_s": t_ours, "cli_speedup": t_ref / t_ours,
            "cli_equal": float(theirs) == ours}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maps", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reference", type=Path, help="checkout of clovaai/wsolevaluation")
    parser.add_argument("--metadata", type=Path, default=DEFAULT_METADATA)
    parser.add_argument("--cache", type=Path, help="folder for the generated maps (default: a temp folder per --maps)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cli", action="store_true", help="also time both command-line paths end to end")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (every side timed once per round); medians reported")
    parser.add_argument("--stream", type=int, help="instead: evaluate this many maps made on the fly (memory check)")
    args = parser.parse_args()
    if args.stream:
        report = stream(args.stream, args.metadata, args.interval)
        print(json.dumps(report, indent=1))
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        return 0

    split = make_split(args.maps, args.metadata)
    args.cache = args.cache or Path(tempfile.gettempdir()) / f"tedloc_bench_maps_{args.maps}"
    make_maps(split, args.cache)
    report: dict = {"maps": len(split), "interval": args.interval, "cpu_count": os.cpu_count()}
    for image_id in split.image_ids:  # warm the page cache: both sides then read from memory
        (args.cache / f"{image_id}.npy").read_bytes()

    # The machine's speed drifts (shared cores, steal time): each round times every side back to back
    # (tedloc 1 process, tedloc N processes, the reference, and with --cli both command lines);
    # speed-ups are computed per round, and the medians over rounds are reported.
    ref = load_reference(args.reference) if args.reference else None
    n_proc = f"tedloc_{args.workers}proc_s"
    rounds: list[dict] = []
    for _ in range(args.repeat):
        r: dict = {}
        start = time.perf_counter()
        ours = evaluate_map_folder(split, args.cache, workers=1, interval=args.interval)
        r["tedloc_1proc_s"] = time.perf_counter() - start
        start = time.perf_counter()
        ours_w = evaluate_map_folder(split, args.cache, workers=args.workers, interval=args.interval)
        r[n_proc] = time.perf_counter() - start
        if ref is not None:
            v2, r["reference_v2_s"] = run_reference(ref, split, args.cache, args.interval, multi=True)
            r["speedup_v2_1proc"] = r["reference_v2_s"] / r["tedloc_1proc_s"]
            r[f"speedup_v2_{args.workers}proc"] = r["reference_v2_s"] / r[n_proc]
            if args.cli:
                r.update(end_to_end(ref, split, args.cache, args.interval, args.workers))
        rounds.append(r)
    keys = ["MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAcc@30", "MaxBoxAcc@50", "MaxBoxAcc@70", "mIoU"]
    assert all(ours[k] == ours_w[k] for k in keys), "parallel evaluation must be identical"
    report["tedloc"] = {k: ours[k] for k in keys}
    report["rounds"] = rounds
    report["median"] = {k: float(np.median([r[k] for r in rounds])) for k in rounds[0] if k != "cli_equal"}

    if ref is not None:
        v1, t1 = run_reference(ref, split, args.cache, args.interval, multi=False)
        report["reference_v1_s"] = t1
        report["speedup_v1_1proc_last_round"] = t1 / rounds[-1]["tedloc_1proc_s"]
        report["reference"] = {"MaxBoxAcc": v1[1], "MaxBoxAccV2": float(np.average(v2)),
                               "MaxBoxAcc@30": v2[0], "MaxBoxAcc@50": v2[1], "MaxBoxAcc@70": v2[2]}
        report["equal"] = all(report["reference"][k] == ours[k] for k in report["reference"])
        if args.cli:
            report["equal"] = report["equal"] and all(r["cli_equal"] for r in rounds)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report.get("equal", True) else 1


if __name__ == "__main__":
    sys.exit(main())
