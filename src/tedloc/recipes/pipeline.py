"""The whole WSOL pipeline on one dataset directory, as resumable steps into one folder.

    OUT/runs/cam/             the classifier (CAM baseline; its backbone is TeD-Loc's encoder E)
    OUT/cache/cams_train/     CAM pseudo-label maps of the train split
    OUT/cache/features/       E's features of fixed training views (shared by all TeD-Loc runs)
    OUT/anchors/              text anchors, QR-orthogonalised and raw
    OUT/runs/<variant>/       one TeD-Loc run per variant (the paper's ablations)
    OUT/eval/<method>.json    test metrics of each method (same keys as `tedloc evaluate --json`)
    OUT/results.json          method -> test metrics
    OUT/report.md             a table and, if asked, overlay pictures (OUT/report/)

Every step reuses what a previous (possibly interrupted) call finished, so running the same
command again continues where it stopped. Used by ``tedloc demo`` and ``tedloc bench``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tedloc.engine.run_folder import RunFolder
from tedloc.errors import TedlocError
from tedloc.methods import get_method
from tedloc.methods.cam import PretrainConfig
from tedloc.methods.tedloc import TeDLocTrainConfig
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text
from tedloc.utils.registry import Registry

__all__ = ["Recipe", "Variant", "VARIANTS", "run_recipe", "HEADLINE_METRICS"]

HEADLINE_METRICS = ("CL@1", "MaxBoxAcc", "MaxBoxAccV2", "Top1Loc", "Top5Loc", "mIoU")


@dataclass(frozen=True)
class Variant:
    """A TeD-Loc configuration of the paper's ablations."""

    description: str
    lambdas: tuple[float, float, float] = (1.0, 1.0, 1.0)
    orthogonal: bool = True


VARIANTS: Registry[Variant] = Registry("TeD-Loc variant")
VARIANTS.register("tedloc")(Variant("TeD-Loc: L_KD + P_CL + I_CL, orthogonal anchors"))
VARIANTS.register("tedloc_no_orth")(Variant("TeD-Loc without orthogonalization (raw text anchors)", orthogonal=False))
VARIANTS.register("tedloc_kd")(Variant("L_KD only", lambdas=(1.0, 0.0, 0.0)))
VARIANTS.register("tedloc_kd_pcl")(Variant("L_KD + P_CL", lambdas=(1.0, 1.0, 0.0)))


@dataclass
class Recipe:
    """What to train and evaluate; ``tedloc`` is the base config of every variant."""

    pretrain: PretrainConfig
    tedloc: TeDLocTrainConfig
    variants: tuple[str, ...] = ("tedloc",)
    text_encoder: str | None = None  # None: the offline default
    centered_box: bool = True
    eval_batch_size: int = 128
    overlays: int = 0  # test images drawn in the report (CAM vs TeD-Loc)
    notes: dict = field(default_factory=dict)


def _log_step(log: Callable[[str], None], i: int, n: int, text: str) -> float:
    log(f"[{i}/{n}] {text}")
    return time.perf_counter()


def _finished(run: Path, epochs: int) -> bool:
    folder = RunFolder(run)
    return folder.is_finished() and len(folder.metadata().get("history", [])) == epochs


def _anchors(data: Path, out: Path, encoder: str | None, runtime: Runtime):
    from tedloc.data import load_dataset
    from tedloc.text import TextAnchors, build_anchors

    ortho, raw = out / "anchors" / "orthogonal.safetensors", out / "anchors" / "raw.safetensors"
    names = load_dataset(data, splits=[]).class_names
    if not (ortho.exists() and raw.exists() and TextAnchors.load(ortho).class_names == names):
        device = str(runtime.device)
        anchors = build_anchors(names, encoder, device=device) if encoder else build_anchors(names, device=device)
        anchors.save(ortho)
        dataclasses.replace(anchors, vectors=anchors.raw.copy(), orthogonalized=False).save(raw)
    return ortho, raw


def _evaluate(run: Path, data: Path, out: Path, batch_size: int, runtime: Runtime) -> dict:
    """Test metrics of a run, cached in OUT/eval/<name>.json until the run's model changes."""
    from tedloc.data import load_dataset
    from tedloc.eval.localizer_eval import evaluate_localizer
    from tedloc.methods import load_model

    path = out / "eval" / f"{run.name}.json"
    model_mtime = RunFolder(run).metadata_path.stat().st_mtime
    if path.exists() and path.stat().st_mtime >= model_mtime:
        cached = json.loads(path.read_text())
        if "map" in cached:  # older files lack the map's name: evaluated again
            return cached
    localizer = load_model(run, runtime=runtime)
    metrics = evaluate_localizer(localizer, load_dataset(data, splits=["test"])["test"], batch_size=batch_size,
                                 all_maps=True)
    atomic_write_text(path, json.dumps(metrics, indent=1) + "\n")
    return metrics


def _centered_box(data: Path, out: Path, size: int) -> dict:
    """The centered box with its side chosen on val (best MaxBoxAcc there), scored on test."""
    from tedloc.data import load_dataset
    from tedloc.methods.centered_box import centered_box_baseline, centered_box_metrics

    path = out / "eval" / "centered_box.json"
    if path.exists():
        return json.loads(path.read_text())
    dataset = load_dataset(data, splits=["val", "test"])
    fraction, _ = centered_box_baseline(dataset["val"], size)
    metrics = centered_box_metrics(dataset["test"], size, fraction)
    metrics["box_fraction"] = fraction
    atomic_write_text(path, json.dumps(metrics, indent=1) + "\n")
    return metrics


def _strip(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k != "curves"}
    if "maps" in out:
        out["maps"] = {k: {m: v for m, v in other.items() if m != "curves"} for k, other in out["maps"].items()}
    return out


def results_table(results: dict) -> str:
    """A Markdown table of the headline test metrics (the class map of TeD-Loc runs in its own row)."""
    def cell(metrics: dict, key: str) -> str:
        v = metrics.get(key)
        return f"{v:.2f}" if isinstance(v, (int, float)) else "-"

    lines = ["| method | map | " + " | ".join(HEADLINE_METRICS) + " |",
             "|---|---|" + "---|" * len(HEADLINE_METRICS)]
    for method, metrics in results.items():
        rows = [(metrics.get("map", "-"), metrics)]
        rows += [(kind, other) for kind, other in metrics.get("maps", {}).items()]
        for kind, m in rows:
            lines.append(f"| {method} | {kind} | " + " | ".join(cell(m, k) for k in HEADLINE_METRICS) + " |")
    return "\n".join(lines)


def _overlays(data: Path, out: Path, runs: dict[str, Path], count: int, runtime: Runtime) -> list[str]:
    """Side-by-side pictures of the first ``count`` test images for each run (GT green, prediction white)."""
    from PIL import Image

    from tedloc.data import load_dataset
    from tedloc.data.images import load_image
    from tedloc.inference import Localizer
    from tedloc.viz import render_overlay

    dataset = load_dataset(data, splits=["test"])
    split = dataset["test"]
    step = max(1, len(split) // count)
    indices = list(range(0, len(split), step))[:count]
    localizers = {name: Localizer.from_run(run, device=runtime.device, precision=runtime.precision)
                  for name, run in runs.items()}
    files = []
    for i in indices:
        image = load_image(split.image_path(i))
        truth = dataset.class_names[int(split.labels[i])]
        panels = []
        for name, localizer in localizers.items():
            p = localizer(image)[0]
            mark = " ok" if p.label == truth else " x"
            panels.append(render_overlay(image, p.map, p.box, split.boxes[i], caption=f"{name}: {p.label}{mark}"))
        canvas = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), panels[0].height), "white")
        x = 0
        for p in panels:
            canvas.paste(p, (x, 0))
            x += p.width + 4
        name = f"report/test_{i:05d}.png"
        (out / "report").mkdir(parents=True, exist_ok=True)
        canvas.save(out / name)
        files.append(name)
    return files


def run_recipe(data: str | os.PathLike, out: str | os.PathLike, recipe: Recipe,
               log: Callable[[str], None] = print, runtime: Runtime | None = None) -> dict:
    """Run (or resume) every step on ``runtime`` (default: the CPU in fp32); returns method -> test
    metrics (also in OUT/results.json)."""
    from tedloc.methods.run_maps import compute_run_map_cache

    data, out = Path(data), Path(out)
    runtime = runtime or Runtime()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TedlocError("the recipes run in one process (their steps write shared files); run the training "
                          "steps under torchrun one by one instead (docs/GPU.md)")
    for name in recipe.variants:
        VARIANTS.get(name)  # fail early on a typo
    n = 5 + len(recipe.variants) + (1 if recipe.overlays else 0)
    step = 1
    timings: dict[str, float] = {}

    def done(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)
        log(f"      {name}: {timings[name]:.0f} s")

    cam_run = out / "runs" / "cam"
    t0 = _log_step(log, step, n, f"pretrain the classifier {recipe.pretrain.arch} -> {cam_run}")
    if not _finished(cam_run, recipe.pretrain.epochs):
        get_method("cam").train(data, cam_run, recipe.pretrain, runtime=runtime)
    done("pretrain", t0)
    step += 1
    t0 = _log_step(log, step, n, "CAM pseudo-label maps of the train split")
    cams = out / "cache" / "cams_train"
    compute_run_map_cache(cam_run, data, "train", cams, batch_size=recipe.eval_batch_size, runtime=runtime)
    done("cam_cache", t0)
    step += 1
    t0 = _log_step(log, step, n, "text anchors of the class names")
    ortho, raw = _anchors(data, out, recipe.text_encoder, runtime)
    done("anchors", t0)
    step += 1
    base = dataclasses.replace(recipe.tedloc, encoder=recipe.pretrain.arch, encoder_run=str(cam_run.resolve()),
                               input_size=recipe.pretrain.input_size,
                               feature_cache=recipe.tedloc.feature_cache or str((out / "cache" / "features").resolve()))
    runs = {"cam": cam_run}
    for name in recipe.variants:
        variant = VARIANTS.get(name)
        run = out / "runs" / name
        t0 = _log_step(log, step, n, f"{variant.description} -> {run}")
        if not _finished(run, base.epochs):
            cfg = dataclasses.replace(base, lambdas=variant.lambdas)
            get_method("tedloc").train(data, run, cfg, runtime=runtime, anchors=ortho if variant.orthogonal else raw,
                                       cams=cams)
        runs[name] = run
        done(name, t0)
        step += 1
    t0 = _log_step(log, step, n, "evaluate every method on the test split")
    results: dict = {}
    if recipe.centered_box:
        results["centered_box"] = _strip(_centered_box(data, out, recipe.pretrain.input_size))
    for name, run in runs.items():
        results[name] = _strip(_evaluate(run, data, out, recipe.eval_batch_size, runtime))
    done("evaluate", t0)
    step += 1
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    pictures: list[str] = []
    if recipe.overlays:
        t0 = _log_step(log, step, n, f"overlay pictures of {recipe.overlays} test images")
        drawn = ["cam", *recipe.variants[:1]]  # the baseline and the first variant, side by side
        pictures = _overlays(data, out, {k: runs[k] for k in drawn}, recipe.overlays, runtime)
        done("overlays", t0)
        step += 1
    _log_step(log, step, n, f"report -> {out / 'report.md'}")
    table = results_table(results)
    text = [f"# tedloc results: {data.name}", "", f"Test split of `{data}`; threshold: the oracle one on test "
            "(standard protocol); runs in `runs/`, full metrics in `results.json`.", "", table, ""]
    if pictures:
        text += ["## Test images (GT boxes green, predicted boxes white)", ""]
        text += [f"![{p}]({p})" for p in pictures] + [""]
    text += ["## Step times (s)", "", json.dumps(timings), ""]
    atomic_write_text(out / "report.md", "\n".join(text))
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=1) + "\n")
    log(table)
    return results
