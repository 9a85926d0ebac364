"""``tedloc demo``: the end-to-end demo on the built-in synthetic benchmark."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tedloc.cli import command
from tedloc.cli.data import summarize
from tedloc.data import SyntheticConfig, check_dataset, make_synthetic


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    start = time.perf_counter()
    print(f"[1/2] synthetic benchmark -> {out / 'data'}")
    data = make_synthetic(out / "data", SyntheticConfig(seed=args.seed))
    print(summarize(data))
    print("[2/2] checking the dataset")
    report = check_dataset(data)
    print("dataset ok" if report.ok else "\n".join(report.problems))
    print(f"demo finished in {time.perf_counter() - start:.1f}s; results in {out}")
    return 0 if report.ok else 1


@command("demo", help="run the demo on the built-in synthetic benchmark")
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="folder for data, runs and the report")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_demo)
