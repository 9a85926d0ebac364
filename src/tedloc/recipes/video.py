"""The video recipe: a video dataset (the synthetic one, YouTube-Objects) to TrCAM-V and the CAM family, CorLoc.

Steps, each resumed or skipped when done:

1. the classifier of the CAM-family baselines (``tedloc train --method cam`` on frames drawn from the train shots);
2. the frozen ViT of TrCAM-V: timm's weights (``vit_small_patch16_224.dino``, network once), a given run, or,
   offline, a ``tedloc_vit_tiny`` trained here on the train frames;
3. the pseudo-label maps of every train frame: CLIP-ES or CLIPSeg (their weights needed) or, offline, the CAM of
   the step-1 classifier;
4. TrCAM-V (``tedloc train --method trcamv``);
5. every method on the test frames: TrCAM-V, CAM, Grad-CAM, Grad-CAM++, Smooth Grad-CAM++, XGrad-CAM, LayerCAM
   of the classifier, and the centered box: tedloc's image metrics per frame, CorLoc as the papers compute it (a
   threshold per class chosen on the test frames) and the realistic CorLoc (one threshold chosen on the val frames);
6. ``results.json``, ``report.md`` (the tables and test frames with their boxes).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tedloc.engine.run_folder import RunFolder
from tedloc.errors import TedlocError
from tedloc.methods import get_method
from tedloc.recipes.pipeline import finished_run, log_step, overlay_pictures
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text

__all__ = ["VideoRecipe", "run_video_recipe", "CAM_FAMILY", "corloc_table", "video_preset", "video_paper_recipe",
           "VIDEO_DATASETS"]

CAM_FAMILY = ("cam", "gradcam", "gradcam++", "smoothgradcam++", "xgradcam", "layercam")
PSEUDO_SOURCES = ("cam", "clip-es", "clipseg")


@dataclass
class VideoRecipe:
    """What the video recipe trains and how it evaluates (see the module docstring)."""

    classifier: object  # the cam method's config: the CAM-family baselines' classifier (and the offline CAM maps)
    trcamv: object  # TrCAM-V's config
    vit: object | None = None  # the cam method's config of the ViT trained offline; None: trcamv's own encoder
    encoder_run: str | None = None  # or a run whose ViT TrCAM-V takes (e.g. the image demo's)
    pseudo_labels: str = "cam"  # cam (offline), clip-es or clipseg (weights needed)
    clip: str = "ViT-B-16"
    clip_pretrained: str = "openai"
    baselines: tuple[str, ...] = CAM_FAMILY
    protocol: str = "standard"
    eval_batch_size: int = 64
    overlays: int = 6
    extra: dict = field(default_factory=dict)


def _pseudo_label_maps(data: Path, cams: Path, recipe: VideoRecipe, classifier: Path, runtime: Runtime) -> None:
    from tedloc.methods.run_maps import compute_run_map_cache
    from tedloc.pseudolabels.clip_localizers import create_training_free
    from tedloc.pseudolabels.compute import compute_map_cache

    if recipe.pseudo_labels == "cam":
        compute_run_map_cache(classifier, data, "train", cams, batch_size=recipe.eval_batch_size, runtime=runtime)
        return
    from tedloc.data import load_dataset
    from tedloc.models.clip_vit import ClipSpec

    names = load_dataset(data, splits=["val"]).class_names
    model = create_training_free(recipe.pseudo_labels, names, ClipSpec(recipe.clip, recipe.clip_pretrained),
                                 runtime=runtime)
    compute_map_cache(model, data, "train", cams, method=recipe.pseudo_labels, batch_size=recipe.eval_batch_size,
                      runtime=runtime, model_record=model.record())


def _centered_box(data: Path, size: int, protocol) -> dict:
    """CorLoc of a no-look centered square: its side chosen on val (pooled BoxAcc), scored on test."""
    from tedloc.data import load_dataset
    from tedloc.eval.corloc import CorLocAccumulator
    from tedloc.methods.centered_box import centered_box_map

    dataset = load_dataset(data, splits=["val", "test"])

    def accumulator(split, fraction: float) -> CorLocAccumulator:
        acc = CorLocAccumulator(split, np.array([0.5]), dataset.class_names)
        m = centered_box_map(size, fraction)
        for image_id in split.image_ids:
            acc.accumulate(image_id, m)
        return acc

    fractions = np.arange(0.3, 1.0001, 0.05)
    best = max(fractions, key=lambda f: accumulator(dataset["val"], float(f)).pooled_threshold()[1])
    result = accumulator(dataset["test"], float(best)).compute(0.5)
    return {"map": "centered", "box_fraction": float(best), "corloc": {
        "oracle": {"CorLoc": result["CorLoc"], "per_class": result["CorLoc_per_class"],
                   "chosen_on": "the box side on val; no threshold to choose"},
        "realistic": {"CorLoc": result["CorLoc@tau"], "per_class": result["CorLoc@tau_per_class"],
                      "chosen_on": "the box side on val"},
        "CL": None, "frames": result["frames"], "iou": result["iou"]}}


def _evaluate(run: Path, data: Path, out: Path, recipe: VideoRecipe, kind: str | None, name: str,
              runtime: Runtime) -> dict:
    """Test metrics and CorLoc of a run's map ``kind``, cached in OUT/eval/<name>.json until the run changes."""
    from tedloc.data import load_dataset
    from tedloc.eval.video_eval import evaluate_video_localizer
    from tedloc.methods import load_model

    path = out / "eval" / f"{name}.json"
    folder = RunFolder(run)
    if path.exists() and path.stat().st_mtime >= folder.metadata_path.stat().st_mtime:
        return json.loads(path.read_text())
    dataset = load_dataset(data, splits=["val", "test"])
    localizer = load_model(run, runtime=runtime, map_kind=kind)
    metrics = evaluate_video_localizer(localizer, dataset["test"], recipe.protocol, val=dataset["val"],
                                       batch_size=recipe.eval_batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(metrics, indent=1) + "\n")
    return metrics


# one line per column of :func:`corloc_table`, under the table of the report
VIDEO_COLUMNS = (
    "per-class columns, CorLoc: the share of a class's test frames whose box (the largest region of the map cut at a "
    "threshold) has IoU >= 0.5 with a GT box, and the class mean; the papers' CorLoc: each class's threshold is the "
    "best on the test frames themselves (an oracle: test boxes used)",
    "CorLoc (realistic): the same with one threshold chosen on the val frames (no test box used)",
    "CL: test frames whose top class is the video's",
    "MaxBoxAcc: frames with a box at IoU >= 0.5, at the best single threshold on the test frames (test boxes used)",
    "PxAP: the area under the maps' pixel precision-recall curve against the object masks",
    "peak on object: frames whose map peaks inside the object's mask",
)


def corloc_table(results: dict, class_names: list[str]) -> str:
    """A markdown table: per-class CorLoc (the papers' oracle), its mean, the realistic CorLoc, CL, MaxBoxAcc."""
    short = [n[:8] for n in class_names]
    lines = ["| method | " + " | ".join(short) + " | CorLoc | CorLoc (realistic) | CL | MaxBoxAcc | PxAP | peak on "
             "object |", "|---" * (len(short) + 7) + "|"]

    def cell(value) -> str:
        return "-" if value is None else f"{value:.1f}"

    for name, metrics in results.items():
        c = metrics["corloc"]
        per_class = c["oracle"]["per_class"]
        lines.append(f"| {name} | " + " | ".join(cell(per_class.get(n)) for n in class_names)
                     + f" | {cell(c['oracle']['CorLoc'])} | {cell(c.get('realistic', {}).get('CorLoc'))} | "
                       f"{cell(c['CL'])} | {cell(metrics.get('MaxBoxAcc'))} | {cell(metrics.get('PxAP'))} | "
                       f"{cell(c.get('peak_in_mask'))} |")
    return "\n".join(lines)


def run_video_recipe(data: str | os.PathLike, out: str | os.PathLike, recipe: VideoRecipe,
                     log: Callable[[str], None] = print, *, runtime: Runtime) -> dict:
    """Run (or resume) the video recipe on ``runtime``; returns method -> test metrics (also OUT/results.json)."""
    from tedloc.data import load_dataset

    data, out = Path(data), Path(out)
    if runtime.dist.enabled:
        raise TedlocError("the recipes run in one process; run the training steps under torchrun one by one instead")
    if recipe.pseudo_labels not in PSEUDO_SOURCES:
        raise TedlocError(f"pseudo_labels must be one of {', '.join(PSEUDO_SOURCES)}, got {recipe.pseudo_labels!r}")
    dataset = load_dataset(data)
    if not dataset.is_video:
        raise TedlocError(f"{data}: the video recipe needs a video dataset (kind: video)")
    n, step = 6, 1
    timings: dict[str, float] = {}

    def done(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)
        log(f"      {name}: {timings[name]:.0f} s")

    classifier = out / "runs" / "classifier"
    t0 = log_step(log, step, n, f"the CAM-family classifier {recipe.classifier.arch} -> {classifier}")
    if not finished_run(classifier, recipe.classifier):
        get_method("cam").train(data, classifier, recipe.classifier, runtime=runtime)
    done("classifier", t0)
    step += 1
    trcamv = recipe.trcamv
    if recipe.encoder_run:
        trcamv = dataclasses.replace(trcamv, encoder_run=str(Path(recipe.encoder_run).resolve()))
        log_step(log, step, n, f"TrCAM-V's ViT: the run {recipe.encoder_run}")
    elif recipe.vit is not None:
        vit = out / "runs" / "vit"
        t0 = log_step(log, step, n, f"TrCAM-V's ViT (offline stand-in for DINO) {recipe.vit.arch} -> {vit}")
        if not finished_run(vit, recipe.vit):
            get_method("cam").train(data, vit, recipe.vit, runtime=runtime)
        trcamv = dataclasses.replace(trcamv, encoder=recipe.vit.arch, encoder_run=str(vit.resolve()),
                                     input_size=recipe.vit.input_size)
        done("vit", t0)
    else:
        log_step(log, step, n, f"TrCAM-V's ViT: {trcamv.encoder} (pretrained: {trcamv.pretrained})")
    step += 1
    cams = out / "cache" / f"maps_{recipe.pseudo_labels}"
    t0 = log_step(log, step, n, f"{recipe.pseudo_labels} pseudo-label maps of every train frame -> {cams}")
    _pseudo_label_maps(data, cams, recipe, classifier, runtime)
    done("pseudo_labels", t0)
    step += 1
    run = out / "runs" / "trcamv"
    t0 = log_step(log, step, n, f"TrCAM-V -> {run}")
    if not finished_run(run, trcamv):
        get_method("trcamv").train(data, run, trcamv, runtime=runtime, cams=cams)
    done("trcamv", t0)
    step += 1
    t0 = log_step(log, step, n, "evaluate TrCAM-V, the CAM family and the centered box on the test frames")
    results = {"centered_box": _centered_box(data, recipe.classifier.input_size, recipe.protocol),
               "trcamv": _evaluate(run, data, out, recipe, None, "trcamv", runtime)}
    for kind in recipe.baselines:
        results[kind] = _evaluate(classifier, data, out, recipe, kind, f"classifier_{kind}", runtime)
    for metrics in results.values():
        metrics.pop("curves", None)
    done("evaluate", t0)
    step += 1
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    log_step(log, step, n, f"report -> {out / 'report.md'}")
    pictures = overlay_pictures(data, out, {"classifier (CAM)": classifier, "trcamv": run}, recipe.overlays, runtime) \
        if recipe.overlays else []
    table = corloc_table(results, dataset.class_names)
    baselines = [k for k in recipe.baselines if k in results]
    best = max(baselines, key=lambda k: results[k]["corloc"]["oracle"]["CorLoc"]) if baselines else None
    text = [f"# tedloc video results: {dataset.name}", "",
            f"Test frames of `{data}`; the centered box never looks at the frame.", "", table, "",
            "## What the columns mean (percent)", ""] + [f"- {line}" for line in VIDEO_COLUMNS] + [""]
    if best is not None:
        gap = results["trcamv"]["corloc"]["oracle"]["CorLoc"] - results[best]["corloc"]["oracle"]["CorLoc"]
        text += [f"TrCAM-V vs the best CAM-family baseline ({best}): {gap:+.1f} CorLoc points.", ""]
    if pictures:
        text += ["## Test frames (GT boxes green, predicted boxes white)", ""] + [f"![{p}]({p})" for p in pictures]
        text += [""]
    text += ["## Step times (s)", "", json.dumps(timings), ""]
    atomic_write_text(out / "report.md", "\n".join(text))
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=1) + "\n")
    log(table)
    return results


# The offline video recipe on the synthetic video benchmark (64x64 inputs, everything trained here). The CRF loss on
# a 32x32 grid, its weight rescaled from the paper's 2e-9 at 224x224 by the pixel pairs, as the offline DiPS recipe
# does ((224^2 / 32^2)^2 = 2,401), and sigma_xy 100 pixels of 224 as 100 * 64 / 224.
OFFLINE_TRCAMV = dict(lambda_crf=2e-9 * (224 * 224 / (32 * 32)) ** 2, sigma_xy=100 * 64 / 224, crf_scale=0.5,
                      fg_count=10, bg_count=10, workers=0)
OFFLINE_VIT = dict(arch="tedloc_vit_tiny", optimizer="adamw", lr=1e-3, weight_decay=0.05)
VIDEO_DATASETS = ("ytov1", "ytov2")


def video_preset(name: str, encoder_run: str | None = None) -> VideoRecipe:
    """The offline presets: ``synthetic-video`` (``tedloc bench synthetic-video``: its own ViT trained on the frames)
    and ``demo`` (the demo's video part: the ViT of ``encoder_run``, the image demo's)."""
    cam = get_method("cam").config
    if name not in ("demo", "synthetic-video"):
        raise TedlocError(f"no video preset {name!r}; choose from demo, synthetic-video")
    demo = name == "demo"  # the demo: fewer epochs and thresholds every 0.01, to fit its 10 minutes
    classifier = cam(epochs=10 if demo else 12, lr_step=8 if demo else 9, batch_size=32, frames_per_shot=4, workers=1)
    trcamv = get_method("trcamv").config(classifier_epochs=3 if demo else 4, epochs=6 if demo else 10,
                                         lr_step=5 if demo else 8, batch_size=32, frames_per_shot=4, **OFFLINE_TRCAMV)
    vit = None if encoder_run else cam(epochs=12, lr_step=10, batch_size=64, frames_per_shot=4, workers=1,
                                       **OFFLINE_VIT)
    return VideoRecipe(classifier=classifier, trcamv=trcamv, vit=vit, encoder_run=encoder_run, eval_batch_size=100,
                       protocol="validation" if demo else "standard")


def video_paper_recipe(dataset: str, overrides: dict | None = None) -> VideoRecipe:
    """The recipe of ``tedloc bench ytov1|ytov2`` from ``<dataset>_bench.yaml``; ``overrides``: ``classifier.<field>``,
    ``trcamv.<field>`` or a recipe key (``pseudo_labels``, ``clip``, ``clip_pretrained``, ``eval_batch_size``,
    ``overlays``, ``protocol``) -> value."""
    from tedloc.recipes.presets import coerce_value, method_config
    from tedloc.utils.config_files import read_config_file

    if dataset not in VIDEO_DATASETS:
        raise TedlocError(f"no video recipe for {dataset!r}; choose from {', '.join(VIDEO_DATASETS)}")
    bench = read_config_file(f"{dataset}_bench")
    overrides = dict(overrides or {})
    part: dict[str, dict] = {"classifier": {}, "trcamv": {}}
    for key in [k for k in overrides if "." in k]:
        section, _, field_name = key.partition(".")
        if section not in part:
            raise TedlocError(f"override {key!r}: the sections are classifier. and trcamv.")
        part[section][field_name] = overrides.pop(key)
    keys = ("pseudo_labels", "clip", "clip_pretrained", "eval_batch_size", "overlays", "protocol")
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise TedlocError(f"unknown recipe option(s) {', '.join(unknown)}; the keys are {', '.join(keys)}")
    hints = typing.get_type_hints(VideoRecipe)
    settings = {k: coerce_value(hints[k], v, f"--set {k}" if k in overrides else f"{dataset}_bench: {k}")
                for k, v in {**bench, **overrides}.items() if k in keys}
    return VideoRecipe(classifier=method_config(get_method("cam").config, bench["classifier"], part["classifier"],
                                                 "classifier"),
                       trcamv=method_config(get_method("trcamv").config, bench["trcamv"], part["trcamv"], "trcamv"),
                       **settings)
