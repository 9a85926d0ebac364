"""``tedloc bench zoo``: several WSOL methods trained on one dataset with the same backbone, selection and
evaluation, then compared in one table and in the thesis' protocol table.

    OUT/runs/<method>/        one run per method (its config: the preset's, or <dataset>_<method>.yaml)
    OUT/cache/val_cam.txt     val pseudo-boxes of the CAM run (the protocol table's realistic column)
    OUT/eval/<name>.json      test metrics of each run (and of the CAM run's post-hoc maps, cam_<kind>.json)
    OUT/results.json          method -> test metrics (the CAM's post-hoc maps under ``posthoc``; the no-look
                              baselines centered_box and centered_gaussian first)
    OUT/protocol.json         method -> protocol table (tedloc protocol-table over the runs)
    OUT/report.md             the comparison table, the protocol table and each method's seconds

Every step reuses what a previous call finished (a run whose epochs are done, an evaluation of the same model).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tedloc.errors import OptionError
from tedloc.methods import TrainConfig, get_method
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text

__all__ = ["ZooRecipe", "ZOO_METHODS", "VIT_METHODS", "ZOO_PRESETS", "zoo_preset", "zoo_paper_recipe", "run_zoo",
           "zoo_table", "parse_methods"]

# the CAM baseline and the trained zoo methods, in the thesis' order (CNNs, then the ViT methods)
ZOO_METHODS = ("cam", "has", "cutmix", "adl", "acol", "spg", "nlccam", "tscam", "scm", "sat")
VIT_METHODS = ("tscam", "scm", "sat")
ZOO_PRESETS = ("synthetic", "tinyimagenet")
ZOO_DATASETS = ("cub", "ilsvrc")
COLUMNS = ("CL@1", "MaxBoxAcc", "MaxBoxAccV2", "Top1Loc", "Top1Loc@val_thr", "PxAP")


@dataclass
class ZooRecipe:
    """What ``tedloc bench zoo`` trains (``configs``: method -> its config) and how it evaluates them: the
    CAM run's post-hoc maps ``posthoc``, the test protocol (as :class:`~tedloc.recipes.Recipe`'s fields of the
    same names) and the protocol table's threshold ``protocol_interval``."""

    configs: dict[str, TrainConfig]
    posthoc: tuple[str, ...] = ()
    evaluation: str = "standard"
    eval_interval: float | None = None
    map_sizes: dict = field(default_factory=dict)
    eval_batch_size: int = 64
    protocol_interval: float | None = None


def parse_methods(text: str | None) -> tuple[str, ...]:
    """The methods of ``--methods a,b,...`` (None: all of :data:`ZOO_METHODS`); an unknown one is one line."""
    if not text:
        return ZOO_METHODS
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in ZOO_METHODS]
    if unknown or not names:
        raise OptionError(f"--methods: {', '.join(unknown) or 'none given'}; choose from {', '.join(ZOO_METHODS)}")
    return names


def _overrides_of(method: str, overrides: dict, fields: set[str]) -> dict:
    """``KEY`` (every method whose config has the field) and ``METHOD.KEY`` (that method's) overrides."""
    out = {}
    for key, value in overrides.items():
        owner, dot, name = key.rpartition(".")
        if (not dot and name in fields) or owner == method:
            out[name] = value
    return out


def _check_overrides(methods: tuple[str, ...], overrides: dict, fields: dict[str, set[str]]) -> None:
    for key in overrides:
        owner, dot, name = key.rpartition(".")
        if dot and owner not in methods:
            raise OptionError(f"--set {key}: {owner!r} is not among the methods ({', '.join(methods)})")
        if (dot and name not in fields[owner]) or (not dot and not any(name in f for f in fields.values())):
            raise OptionError(f"--set {key}: no method's config has {name!r}")


def _from_scratch(method: str, cnn: dict, vit: dict) -> TrainConfig:
    """A preset's config of ``method``: tedloc's tiny CNN or ViT from random weights."""
    config = get_method(method).config
    values = dict(vit if method in VIT_METHODS else cnn)
    names = {f.name for f in dataclasses.fields(config)}
    if method == "nlccam":  # its authors' Adam at its own rate, as the contract's tiny run
        values.update(optimizer="adam", lr=1e-3)
    if method == "acol":  # its branches have no normalisation: at 0.1 from scratch the loss blows up (8.3 after
        values.update(lr=0.01)  # one synthetic epoch, chance accuracy after four; 0.01: 60% CL@1)
    values.update(acol_width=128, spg_width=64)  # branches as wide as the tiny CNN's features (ResNet-50's: 1024, 512)
    return config(**{k: v for k, v in values.items() if k in names})


def zoo_preset(name: str, methods: tuple[str, ...] = ZOO_METHODS, overrides: dict | None = None) -> ZooRecipe:
    """The offline recipe ``synthetic`` (the benchmark of ``tedloc data synthetic``, 64x64; a few minutes on
    2 CPU cores) or ``tinyimagenet`` (as ``tedloc bench tinyimagenet --preset quick``): tedloc_resnet_tiny and
    tedloc_vit_tiny trained from scratch, the same epochs, batch and selection (best val MaxBoxAcc) for all."""
    from tedloc.pseudolabels.cam_family import GRADIENT_CAMS
    from tedloc.recipes.presets import OFFLINE_VIT

    if name not in ZOO_PRESETS:
        raise OptionError(f"--preset must be one of {', '.join(ZOO_PRESETS)}, got {name!r}")
    epochs, step = (4, 3) if name == "synthetic" else (2, 1)
    common = dict(input_size=64, epochs=epochs, lr_step=step, batch_size=64 if name == "synthetic" else 128,
                  selection="loc", workers=0 if name == "synthetic" else 1, pretrained=False)
    cnn = dict(common, arch="tedloc_resnet_tiny", lr=0.1)
    vit = dict(common, **OFFLINE_VIT, drop_path=0.0)
    posthoc = tuple(k for k in GRADIENT_CAMS if k != "scorecam")  # one forward pass per channel: too slow on CPUs
    return _with_overrides(ZooRecipe({m: _from_scratch(m, cnn, vit) for m in methods}, posthoc=posthoc),
                           overrides or {})


def zoo_paper_recipe(dataset: str, methods: tuple[str, ...] = ZOO_METHODS, overrides: dict | None = None
                     ) -> ZooRecipe:
    """The recipe of ``tedloc bench zoo --dataset cub|ilsvrc``: each method's shipped ``<dataset>_<method>``
    config (ImageNet weights, the thesis' schedule), maps scored at 224 as wsolevaluation."""
    from tedloc.pseudolabels.cam_family import GRADIENT_CAMS
    from tedloc.recipes.presets import method_config

    if dataset not in ZOO_DATASETS:
        raise OptionError(f"--dataset must be one of {', '.join(ZOO_DATASETS)}, got {dataset!r}")
    overrides = dict(overrides or {})
    fields = {m: {f.name for f in dataclasses.fields(get_method(m).config)} for m in methods}
    _check_overrides(methods, overrides, fields)
    configs = {m: method_config(get_method(m).config, f"{dataset}_{m}", _overrides_of(m, overrides, fields[m]), m)
               for m in methods}
    if "cam" in configs and configs["cam"].selection == "last":  # the thesis selects every method on val loc
        configs["cam"] = dataclasses.replace(configs["cam"], selection="loc")
    # the protocol table at WMS's validation interval; the test maps at the standard preset's 1,000 thresholds
    return ZooRecipe(configs, posthoc=tuple(GRADIENT_CAMS), protocol_interval=0.004)


def _with_overrides(recipe: ZooRecipe, overrides: dict) -> ZooRecipe:
    """``--set`` overrides applied to a preset's configs (each checked by its config)."""
    from tedloc.recipes.presets import coerce_value

    methods = tuple(recipe.configs)
    fields = {m: {f.name: f for f in dataclasses.fields(c)} for m, c in recipe.configs.items()}
    _check_overrides(methods, overrides, {m: set(f) for m, f in fields.items()})
    import typing

    configs = {}
    for m, config in recipe.configs.items():
        hints = typing.get_type_hints(type(config))
        changes = {k: coerce_value(hints[k], v, f"--set {k}")
                   for k, v in _overrides_of(m, overrides, set(fields[m])).items()}
        configs[m] = dataclasses.replace(config, **changes)
    return dataclasses.replace(recipe, configs=configs)


def _cell(metrics: dict, key: str) -> str:
    v = metrics.get(key)
    return f"{v:.2f}" if isinstance(v, (int, float)) else "-"


def zoo_table(results: dict, timings: dict) -> str:
    """The comparison table: one row per method and map (its other maps and the CAM's post-hoc maps below it),
    the headline test metrics (PxAP when some run has it) and the seconds its training and evaluation took."""
    rows = []
    for method, metrics in results.items():
        rows.append((method, metrics.get("map", "-"), metrics, timings.get(method, {})))
        rows += [(method, kind, other, {}) for kind, other in metrics.get("maps", {}).items()]
        rows += [(method, kind, other, timings.get(f"{method}_{kind}", {}))
                 for kind, other in metrics.get("posthoc", {}).items()]
    columns = [c for c in COLUMNS if c != "PxAP" or any("PxAP" in r[2] for r in rows)]
    lines = ["| method | map | " + " | ".join(columns) + " | train s | eval s |",
             "|---|---|" + "---|" * (len(columns) + 2)]
    for method, kind, metrics, seconds in rows:
        times = [f"{seconds[k]:.1f}" if k in seconds else "-" for k in ("train", "evaluate")]
        lines.append(f"| {method} | {kind} | " + " | ".join([*(_cell(metrics, c) for c in columns), *times]) + " |")
    return "\n".join(lines)


def run_zoo(data: str | os.PathLike, out: str | os.PathLike, recipe: ZooRecipe, log: Callable[[str], None] = print,
            *, runtime: Runtime) -> dict:
    """Train (or reuse) every method of ``recipe`` on ``data``, evaluate each on its test split (and the CAM run's
    post-hoc maps), build the protocol table over the runs and write results.json, protocol.json and report.md;
    returns method -> test metrics."""
    from tedloc.data import load_dataset
    from tedloc.eval.conventions import eval_protocol
    from tedloc.protocol.box_files import supervision_sets
    from tedloc.protocol.make_boxes import make_pseudo_boxes
    from tedloc.protocol.selection import evaluate_runs, format_methods_table, protocol_table
    from tedloc.recipes.pipeline import (centered_box_on_test, centered_gaussian_on_test, evaluate_on_test,
                                         finished_run, recipe_protocol, without_curves)
    from tedloc.report.glossary import no_look_markdown

    data, out = Path(data), Path(out)
    if runtime.dist.enabled:
        raise OptionError("tedloc bench zoo runs in one process; train the methods under torchrun one by one")
    dataset = load_dataset(data, splits=["val", "test"])
    path = out / "timings.json"
    timings: dict = json.loads(path.read_text()) if path.exists() else {}
    n = len(recipe.configs) + 2
    runs: dict[str, Path] = {}
    for i, (method, config) in enumerate(recipe.configs.items(), 1):
        run = out / "runs" / method
        log(f"[{i}/{n}] {method}: train {getattr(config, 'arch', '')} -> {run}")
        if not finished_run(run, config):
            t0 = time.perf_counter()
            get_method(method).train(data, run, config, runtime=runtime)
            timings.setdefault(method, {})["train"] = round(time.perf_counter() - t0, 1)
        runs[method] = run
        atomic_write_text(path, json.dumps(timings, indent=1) + "\n")
    log(f"[{n - 1}/{n}] evaluate every run on the test split")
    results: dict = {}
    def timed(name: str, evaluate: Callable[[], dict]) -> dict:
        """``evaluate()``, its seconds recorded unless it read a cached evaluation (whose seconds are kept)."""
        path, t0 = out / "eval" / f"{name}.json", time.perf_counter()
        before = path.stat().st_mtime_ns if path.exists() else None
        metrics = evaluate()
        if not path.exists() or path.stat().st_mtime_ns != before or "evaluate" not in timings.get(name, {}):
            timings.setdefault(name, {})["evaluate"] = round(time.perf_counter() - t0, 1)
        return without_curves(metrics)

    if dataset["val"].has_boxes and dataset["test"].has_boxes:  # the no-look baselines, at the input size
        size = next(iter(recipe.configs.values())).input_size
        results["centered_box"] = timed("centered_box", lambda: centered_box_on_test(data, out, size))
        results["centered_gaussian"] = timed("centered_gaussian", lambda: centered_gaussian_on_test(
            data, out, size, recipe_protocol(recipe)))
    for method, run in runs.items():
        results[method] = timed(run.name, lambda: evaluate_on_test(run, data, out, recipe, runtime))
        if method == "cam":
            for kind in recipe.posthoc:
                results[method].setdefault("posthoc", {})[kind] = timed(
                    f"{run.name}_{kind}", lambda: evaluate_on_test(run, data, out, recipe, runtime, map_kind=kind))
        log(f"      {method}: MaxBoxAcc {_cell(results[method], 'MaxBoxAcc')}")
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(path, json.dumps(timings, indent=1) + "\n")
    log(f"[{n}/{n}] the protocol table over the runs -> {out / 'protocol.json'}")
    specs = []
    if "cam" in runs and dataset["val"].has_boxes:  # the CAM run as the val pseudo-annotator
        boxes = out / "cache" / "val_cam.txt"
        make_pseudo_boxes(data, "val", "cam", runs["cam"], boxes, runtime=runtime)
        specs.append(f"cam={boxes}")
    sets = supervision_sets(dataset["val"], specs)
    protocol = eval_protocol("validation", **({} if recipe.protocol_interval is None
                                              else {"interval": recipe.protocol_interval}))
    tables = {m: protocol_table(evaluate_runs([run], sets, dataset["test"], protocol, runtime=runtime), list(sets))
              for m, run in runs.items()} if sets else {}
    atomic_write_text(out / "protocol.json", json.dumps(tables, indent=1) + "\n")
    table = zoo_table(results, timings)
    text = [f"# tedloc zoo: {dataset.name}", "",
            f"Test split of `{data}`; each method's run in `runs/`, full metrics in `results.json`. `Top1Loc`: at the "
            f"oracle threshold (test boxes used); `Top1Loc@val_thr`: at the run's threshold chosen on val; the "
            f"CAM's post-hoc maps (`gradcam`, ...) are scored without a val threshold.", "", table, ""]
    text += no_look_markdown(results)
    if tables:
        text += ["## The protocol table (one configuration per method)", "",
                 f"Columns: the val supervision (`GT`, `cam`: the CAM run's val pseudo-boxes) and the cell; "
                 f"thresholds every {protocol.interval}.", "", format_methods_table(tables), "",
                 format_methods_table(tables, detail=True), ""]
    text += ["## Seconds", "", json.dumps(timings), ""]
    atomic_write_text(out / "report.md", "\n".join(text))
    log(table)
    return results
