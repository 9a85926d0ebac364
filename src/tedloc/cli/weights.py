"""``tedloc weights list|fetch|check``: the pretrained weights a config, a benchmark or named models load, where
they are kept, whether they are here; ``fetch`` on a machine with network, ``check`` before a job on one without."""
from __future__ import annotations

import argparse

from tedloc.cli.commands import command


def _models(args: argparse.Namespace) -> list[str]:
    from tedloc.errors import TedlocError
    from tedloc.recipes.weights import models_of_benchmark, models_of_config

    specs: list[str] = []
    for name in args.config or []:
        specs += models_of_config(name)
    for name in args.bench or []:
        specs += models_of_benchmark(name)
    specs += list(args.model or [])
    if not (args.config or args.bench or args.model):
        raise TedlocError("name what to look at: --config NAME|FILE, --bench BENCHMARK or --model LIBRARY:NAME")
    return list(dict.fromkeys(specs))


def _fetch_args(args: argparse.Namespace) -> str:
    """The same selection as options of ``tedloc weights fetch``."""
    return " ".join([*(f"--config {c}" for c in args.config or []), *(f"--bench {b}" for b in args.bench or []),
                     *(f"--model {m}" for m in args.model or [])])


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _rows(specs: list[str]) -> list[tuple[str, str, str, str, str]]:
    from tedloc.weights import size_on_disk, weights_of

    rows = []
    for spec in specs:
        model = weights_of(spec)
        if not model.sources:
            rows.append((spec, "(nothing to download: local, shipped or random weights)", "-", "-", "ok"))
        for source in model.sources:
            path = source.present()
            rows.append((spec, source.describe(), source.location, _size(size_on_disk(path)),
                         "ok" if path else "MISSING"))
    return rows


def _print(rows) -> None:
    header = ("model", "files", "kept in", "size", "here")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _list(args: argparse.Namespace) -> int:
    _print(_rows(_models(args)))
    return 0


def _check(args: argparse.Namespace) -> int:
    from tedloc.weights import ensure_weights, weights_of

    specs = _models(args)
    missing = [(spec, s) for spec in specs for s in weights_of(spec).missing()]
    if not missing:
        print(f"all weights here ({len(specs)} model(s))")
        return 0
    for spec, source in missing:
        print(f"missing: {spec}: {source.describe()} (in {source.location})")
    ensure_weights(specs, fetch=False, fetch_args=_fetch_args(args))  # raises the one-line error with the fixes
    return 2


def _fetch(args: argparse.Namespace) -> int:
    from tedloc.weights import ensure_weights

    specs = _models(args)
    ensure_weights(specs, fetch_args=_fetch_args(args))
    _print(_rows(specs))
    return 0


@command("weights", help="the pretrained weights of a config, a benchmark or models: list, fetch (with network), "
                         "check (before a job without network)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc weights``."""
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    for name, func, text in (
            ("list", _list, "the files each model loads, where they are kept (HF_HOME, TORCH_HOME), their size "
                            "here and whether they are here (no network used)"),
            ("fetch", _fetch, "download what is missing into the caches the libraries read (run where there is "
                              "network; share HF_HOME/TORCH_HOME with the compute nodes)"),
            ("check", _check, "exit 0 when every file is here, else list the missing ones and exit 2 (no network "
                              "used)")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", action="append", metavar="NAME|FILE",
                       help="a shipped config (cub_bench, cub_tedloc, ...) or a config file; repeatable")
        p.add_argument("--bench", action="append", metavar="BENCHMARK",
                       help="what `tedloc bench BENCHMARK` loads (cub, ilsvrc, openimages, ytov1, ytov2; zoo-cub, "
                            "zoo-ilsvrc: `tedloc bench zoo --dataset cub|ilsvrc`); repeatable")
        p.add_argument("--model", action="append", metavar="LIBRARY:NAME",
                       help="a model: timm:NAME, open_clip:ARCH@TAG, sentence-transformers:NAME, hf:REPO, "
                            "torchvision:NAME; repeatable")
        p.set_defaults(func=func)
