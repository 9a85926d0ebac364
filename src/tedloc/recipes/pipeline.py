"""The whole WSOL pipeline on one dataset directory, as resumable steps into one folder.

    OUT/runs/cam/             the classifier (CAM baseline; offline, its backbone is TeD-Loc's encoder E)
    OUT/cache/cams_train/     pseudo-label maps of the train split (the CAM run's, or CLIP-ES's)
    OUT/cache/features/       E's features of fixed training views (shared by all TeD-Loc runs)
    OUT/anchors/              text anchors, QR-orthogonalised and raw
    OUT/runs/<variant>/       one TeD-Loc run per variant (the paper's ablations)
    OUT/runs/vit/             DiPS's ViT (trained here: the offline stand-in for DINO), when the recipe has DiPS
    OUT/cache/proposals_<heads>/  its proposals of the train split (map set h), scored by the CAM classifier
    OUT/runs/dips_classifier/ DiPS's class-token classifier (stage 1), shared by the DiPS runs
    OUT/runs/<dips variant>/  one DiPS run per variant (the thesis' ablations)
    OUT/proposals.json        the proposals' quality against the train GT boxes
    OUT/eval/<method>.json    test metrics of each method (same keys as `tedloc evaluate --json`)
    OUT/results.json          method -> test metrics
    OUT/recipe.json           the recipe's name and scope (the title and first paragraph of both reports)
    OUT/report.md             a table, what its columns mean and, if asked, overlay pictures (OUT/report/)
    OUT/report.html           the same and more in one page: curves, errors, a gallery (tedloc report)

The test evaluation follows the papers' conventions (docs/EVALUATION.md): class-dependent maps of the true
class (GT-known; the predicted-class version beside), 1,000 thresholds, maps at each run kind's size.

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
from tedloc.eval.conventions import EvalProtocol, eval_protocol
from tedloc.methods import TrainConfig, get_method
from tedloc.pseudolabels.cam_family import GRADIENT_CAMS
from tedloc.report import HEADLINE_METRICS, write_report
from tedloc.report.glossary import no_look_markdown, recipe_title, table_definitions
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text
from tedloc.utils.registry import Registry

__all__ = ["Recipe", "Variant", "VARIANTS", "DiPSVariant", "DIPS_VARIANTS", "run_recipe", "HEADLINE_METRICS",
           # the steps the other recipes (zoo, video) build on
           "recipe_protocol", "finished_run", "evaluate_on_test", "centered_box_on_test", "centered_gaussian_on_test",
           "without_curves", "log_step", "overlay_pictures", "round_run", "tedloc_round"]

# the sources of TeD-Loc's pseudo-label maps in a recipe: the CAM run's maps (its CAM or a post-hoc map), or CLIP-ES's
PSEUDO_LABELS = ("cam", *GRADIENT_CAMS, "clip-es")


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


@dataclass(frozen=True)
class DiPSVariant:
    """A DiPS configuration of the thesis' ablations: overrides of the recipe's base DiPS config."""

    description: str
    overrides: dict = field(default_factory=dict)


DIPS_VARIANTS: Registry[DiPSVariant] = Registry("DiPS variant")
DIPS_VARIANTS.register("dips")(DiPSVariant("DiPS: partial CE + dense CRF, the mean and heads 0-3"))
DIPS_VARIANTS.register("dips_no_crf")(DiPSVariant("DiPS without the CRF loss", {"lambda_crf": 0.0}))
DIPS_VARIANTS.register("dips_k1")(DiPSVariant("DiPS with K = 1 (the best-scored proposal only)", {"top_k": 1}))
DIPS_VARIANTS.register("dips_mean_map")(DiPSVariant("DiPS with the mean attention map only (no single heads)",
                                                    {"heads": ()}))


@dataclass
class Recipe:
    """What to train and evaluate; ``tedloc`` is the base config of every variant, ``dips`` of every DiPS
    variant (None: no DiPS); ``vit`` trains DiPS's ViT."""

    pretrain: TrainConfig  # get_method("cam").config
    tedloc: TrainConfig  # get_method("tedloc").config
    variants: tuple[str, ...] = ("tedloc",)
    text_encoder: str | None = None  # None: the offline default
    centered_box: bool = True
    eval_batch_size: int = 128
    overlays: int = 0  # test images drawn in the report (CAM vs TeD-Loc vs DiPS)
    notes: dict = field(default_factory=dict)
    vit: TrainConfig | None = None  # get_method("cam").config
    dips: TrainConfig | None = None  # get_method("dips").config
    dips_variants: tuple[str, ...] = ("dips",)
    proposal_min_size: float = 0.05
    evaluation: EvalProtocol | str = "standard"  # the test evaluation's protocol (a record, or a preset's name)
    eval_interval: float | None = None  # its threshold interval, if not the preset's
    map_sizes: dict = field(default_factory=dict)  # run kind -> side of the scored maps (default: the run's map_size)
    gallery: int = 4  # report.html: test images per gallery group (best, worst, random) of each method
    pseudo_labels: str = "cam"  # TeD-Loc's pseudo-labels: the CAM run's CAMs or post-hoc maps (gradcam, ...), or
    # CLIP-ES's (training-free)
    clip: str = "ViT-B-16"  # CLIP-ES's open_clip model and weights (pseudo_labels clip-es)
    clip_pretrained: str = "openai"
    tedloc_rounds: int = 1  # self-training (tedloc's, not the paper's): round r > 1 learns from round r - 1's own maps
    encoder_from_cam: bool = True  # TeD-Loc's E = the CAM run's backbone (offline); False: the tedloc config's own
    name: str = ""  # the reports' title (a preset's or benchmark's name; empty: the output folder's name)
    scope: str = ""  # what the numbers can and cannot show, said at the top of the reports


def recipe_protocol(recipe: Recipe, kind: str | None = None) -> EvalProtocol:
    """The protocol the recipe's test evaluation uses for runs of ``kind`` (their map size)."""
    changes = {} if recipe.eval_interval is None else {"interval": recipe.eval_interval}
    return eval_protocol(recipe.evaluation, map_size=recipe.map_sizes.get(kind), **changes)


def log_step(log: Callable[[str], None], i: int, n: int, text: str) -> float:
    """Log ``[i/n] text`` and return the step's start time."""
    log(f"[{i}/{n}] {text}")
    return time.perf_counter()


def finished_run(run: Path, config: TrainConfig, inputs: dict[str, str | os.PathLike] | None = None) -> bool:
    """Whether ``run`` holds a finished run of ``config`` (its epochs, and the options its ``config.json``
    records; an option it does not record, being older, counts as the option's default) and of ``inputs`` (files it
    learnt from, recorded resolved: ``{"cams": maps}``), which a recipe reuses; a run of other options or inputs is
    not, and training it again is refused, naming what differs (never a stale result)."""
    folder = RunFolder(run)
    if not (folder.is_finished() and len(folder.metadata().get("history", [])) == config.epochs):
        return False
    record = json.loads(folder.config_path.read_text()) if folder.config_path.exists() else {}
    recorded = record.get("config", {})
    current = json.loads(json.dumps(dataclasses.asdict(config)))
    defaults = json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(config)
                                      if f.default is not dataclasses.MISSING}))
    if any(recorded.get(key, defaults.get(key, value)) != value for key, value in current.items()):
        return False
    return all(record.get(key) == str(Path(path).resolve()) for key, path in (inputs or {}).items())


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


def _clip_es_maps(data: Path, out: Path, recipe: Recipe, runtime: Runtime) -> None:
    """CLIP-ES maps of the true classes of the train split into ``out`` (resumable), TeD-Loc's pseudo-labels."""
    from tedloc.pseudolabels.compute import compute_map_cache
    from tedloc.data import load_dataset
    from tedloc.models.clip_vit import ClipSpec
    from tedloc.pseudolabels.clip_localizers import create_training_free

    names = load_dataset(data, splits=[]).class_names
    model = create_training_free("clip-es", names, ClipSpec(recipe.clip, recipe.clip_pretrained), runtime=runtime)
    compute_map_cache(model, data, "train", out, method="clip-es", batch_size=recipe.eval_batch_size,
                      runtime=runtime, model_record=model.record())


def evaluate_on_test(run: Path, data: Path, out: Path, recipe: Recipe, runtime: Runtime,
                     map_kind: str | None = None) -> dict:
    """Test metrics of a run under the recipe's conventions (as ``tedloc evaluate --run``: the oracle threshold
    and the run's val threshold), cached in OUT/eval/<name>.json (<name>_<map_kind>.json for another map than the
    run's own, e.g. a post-hoc CAM) until the run's model or the conventions change. Maps are scored at the
    recipe's ``map_sizes`` of the run's kind, else the run's recorded map size, else its input size."""
    from tedloc.methods.run_evaluation import evaluate_run, run_protocol, run_val_threshold

    path = out / "eval" / (f"{run.name}_{map_kind}.json" if map_kind else f"{run.name}.json")
    folder = RunFolder(run)
    protocol = run_protocol(folder, recipe_protocol(recipe, folder.metadata().get("kind")))
    if path.exists() and path.stat().st_mtime >= folder.metadata_path.stat().st_mtime:
        cached = json.loads(path.read_text())
        threshold = run_val_threshold(folder.record(), map_kind)[0] if "MaxBoxAcc" in cached else None
        if cached.get("protocol") == protocol.to_dict() and cached.get("val_threshold") == threshold:
            return cached  # made under the same conventions and val threshold: kept
    metrics = evaluate_run(run, data, "test", protocol, runtime=runtime, map_kind=map_kind,
                           batch_size=recipe.eval_batch_size)
    atomic_write_text(path, json.dumps(metrics, indent=1) + "\n")
    return metrics


def centered_box_on_test(data: Path, out: Path, size: int) -> dict:
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


def centered_gaussian_on_test(data: Path, out: Path, size: int, protocol: EvalProtocol) -> dict:
    """The centered Gaussian scored on test under ``protocol`` (the methods')."""
    from tedloc.data import load_dataset
    from tedloc.methods.centered_box import CENTERED_GAUSSIAN_SIGMA, centered_gaussian_metrics

    path = out / "eval" / "centered_gaussian.json"
    if path.exists() and json.loads(path.read_text()).get("protocol") == protocol.to_dict():
        return json.loads(path.read_text())
    metrics = centered_gaussian_metrics(load_dataset(data, splits=["test"])["test"], size, protocol=protocol)
    metrics["sigma"] = CENTERED_GAUSSIAN_SIGMA
    atomic_write_text(path, json.dumps(metrics, indent=1) + "\n")
    return metrics


def _has_boxes(data: Path) -> bool:
    """Whether the val and test splits have GT boxes (the centered box and the overlays need them)."""
    from tedloc.data import load_dataset

    dataset = load_dataset(data, splits=["val", "test"])
    return dataset["val"].has_boxes and dataset["test"].has_boxes


def without_curves(metrics: dict) -> dict:
    """Metrics without their per-threshold ``curves`` (also those of the other ``maps``), as results.json keeps."""
    out = {k: v for k, v in metrics.items() if k != "curves"}
    if "maps" in out:
        out["maps"] = {k: {m: v for m, v in other.items() if m != "curves"} for k, other in out["maps"].items()}
    return out


def round_run(out: Path, name: str, r: int, rounds: int) -> Path:
    """The run folder of round ``r`` of ``rounds`` of the TeD-Loc variant ``name``: ``runs/<name>`` for the last
    round, ``runs/<name>_round<r>`` before it."""
    return out / "runs" / (name if r == rounds else f"{name}_round{r}")


def tedloc_round(data: Path, out: Path, name: str, r: int, rounds: int, config: TrainConfig, anchors: Path,
                 maps: Path, runtime: Runtime, batch_size: int) -> tuple[Path, Path]:
    """Round ``r`` of ``rounds`` of TeD-Loc's self-training: its run (:func:`round_run`), trained from ``maps`` unless
    finished from them, and the maps the next round learns from (this run's own maps of the train split, in
    ``cache/<name>_round<r>_train``; ``maps`` again after the last round)."""
    from tedloc.methods.run_maps import compute_run_map_cache

    run = round_run(out, name, r, rounds)
    if not finished_run(run, config, {"cams": maps}):
        get_method("tedloc").train(data, run, config, runtime=runtime, anchors=anchors, cams=maps)
    if r == rounds:
        return run, maps
    own = out / "cache" / f"{name}_round{r}_train"
    compute_run_map_cache(run, data, "train", own, method="map", batch_size=batch_size, runtime=runtime)
    return run, own


def _selected_val_metric(run: Path, key: str = "val_MaxBoxAcc") -> float | None:
    """``key`` of the run's selected epoch (its model.json history), None where it has none."""
    meta = json.loads((run / "model.json").read_text())
    epoch = meta.get("selected_epoch")
    row = next((h for h in meta.get("history", []) if h.get("epoch") == epoch), {})
    return row.get(key)


def _rounds_sentence(rounds: dict[str, list[Path]]) -> str:
    """One line on the self-training rounds: each round's val MaxBoxAcc (GT val boxes, as the run's selection)."""
    parts = []
    for name, runs in rounds.items():
        values = [_selected_val_metric(run) for run in runs]
        parts.append(f"{name}: " + " -> ".join("-" if v is None else f"{v:.2f}" for v in values))
    return (f"TeD-Loc trained in {len(next(iter(rounds.values())))} rounds, each from the previous round's own maps "
            "of the train split (self-training, tedloc's addition to the paper); val MaxBoxAcc of each round: "
            + "; ".join(parts) + ".")


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


def overlay_pictures(data: Path, out: Path, runs: dict[str, Path], count: int, runtime: Runtime) -> list[str]:
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
    localizers = {name: Localizer.from_run(run, runtime=runtime)
                  for name, run in runs.items()}
    files = []
    for i in indices:
        image = load_image(split.image_path(i))
        truth = dataset.class_names[int(split.labels[i])]
        panels = []
        for name, localizer in localizers.items():
            p = localizer(image)[0]
            label = p.label if p.label == truth else f"{p.label} (true: {truth})"
            panels.append(render_overlay(image, p.map, p.box, split.boxes[i], caption=f"{name}: {label}"))
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


def _proposal_tag(heads: tuple[int, ...]) -> str:
    return "h" + "-".join(str(h) for h in heads) if heads else "mean"


def proposals_table(quality: dict) -> str:
    """Markdown: per map set, the mean IoU of the best and of the top-scored proposal and their IoU>=0.5 shares."""
    lines = ["| map set | images | mIoU best | mIoU top-1 | best IoU>=0.5 | top-1 IoU>=0.5 |",
             "|---|---|---|---|---|---|"]
    for tag, q in quality.items():
        lines.append(f"| {tag} | {q['images']} | {q['mIoU best']:.2f} | {q['mIoU top-1']:.2f} | "
                     f"{q['best IoU>=50']:.2f} | {q['top-1 IoU>=50']:.2f} |")
    return "\n".join(lines)


def _dips_steps(data: Path, out: Path, recipe: Recipe, cam_run: Path, runs: dict, runtime: Runtime, log, done,
                step: int, n: int) -> tuple[int, dict]:
    """DiPS's steps: its ViT, the proposals of every map set the variants use (scored by the CAM classifier),
    one run per variant. Returns the next step number and the proposals' quality per map set."""
    from tedloc.methods.dips import make_proposals

    vit = recipe.vit or get_method("cam").config(arch=recipe.dips.encoder, input_size=recipe.dips.input_size)
    vit_run = out / "runs" / "vit"
    t0 = log_step(log, step, n, f"train DiPS's ViT {vit.arch} (the stand-in for DINO) -> {vit_run}")
    if not finished_run(vit_run, vit):
        get_method("cam").train(data, vit_run, vit, runtime=runtime)
    done("vit", t0)
    step += 1
    base = dataclasses.replace(recipe.dips, encoder=vit.arch, encoder_run=str(vit_run.resolve()),
                               input_size=vit.input_size,
                               classifier_dir=str((out / "runs" / "dips_classifier").resolve()))
    configs = {name: dataclasses.replace(base, **DIPS_VARIANTS.get(name).overrides) for name in recipe.dips_variants}
    t0 = log_step(log, step, n, "DiPS proposals of the train split (attention of the ViT, scored by the CAM run)")
    quality = {}
    for heads in dict.fromkeys(c.heads for c in configs.values()):
        tag = _proposal_tag(heads)
        k = max(c.top_k for c in configs.values() if c.heads == heads)  # the most any variant picks from
        _, quality[tag] = make_proposals(data, "train", out / "cache" / f"proposals_{tag}", cam_run, vit.arch,
                                         vit.input_size, encoder_run=vit_run, heads=heads, k=k,
                                         min_size=recipe.proposal_min_size, batch_size=recipe.eval_batch_size,
                                         runtime=runtime)
    quality = {tag: q for tag, q in quality.items() if q is not None}  # a train split without GT boxes: none
    atomic_write_text(out / "proposals.json", json.dumps(quality, indent=1) + "\n")
    done("proposals", t0)
    step += 1
    for name, config in configs.items():
        run = out / "runs" / name
        t0 = log_step(log, step, n, f"{DIPS_VARIANTS.get(name).description} -> {run}")
        if not finished_run(run, config):
            get_method("dips").train(data, run, config, runtime=runtime,
                                     proposals=out / "cache" / f"proposals_{_proposal_tag(config.heads)}")
        runs[name] = run
        done(name, t0)
        step += 1
    return step, quality


def run_recipe(data: str | os.PathLike, out: str | os.PathLike, recipe: Recipe,
               log: Callable[[str], None] = print, *, runtime: Runtime) -> dict:
    """Run (or resume) every step on ``runtime``; returns method -> test
    metrics (also in OUT/results.json)."""
    from tedloc.methods.run_maps import compute_run_map_cache

    data, out = Path(data), Path(out)
    if runtime.dist.enabled:
        raise TedlocError("the recipes run in one process (their steps write shared files); run the training "
                          "steps under torchrun one by one instead (docs/GPU.md)")
    for name in recipe.variants:
        VARIANTS.get(name)  # fail early on a typo
    if recipe.pseudo_labels not in PSEUDO_LABELS:
        raise TedlocError(f"pseudo_labels must be one of {', '.join(PSEUDO_LABELS)}, got {recipe.pseudo_labels!r}")
    if recipe.tedloc_rounds < 1:
        raise TedlocError(f"tedloc_rounds must be >= 1, got {recipe.tedloc_rounds}")
    dips_variants = recipe.dips_variants if recipe.dips is not None else ()
    for name in dips_variants:
        DIPS_VARIANTS.get(name)
    boxes = _has_boxes(data)  # val and test: the centered box and the overlays need them
    draw = bool(recipe.overlays) and boxes
    n = 5 + len(recipe.variants) * recipe.tedloc_rounds + (1 if draw else 0) + (2 + len(dips_variants) if dips_variants else 0)
    step = 1
    timings: dict[str, float] = {}

    def done(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)
        log(f"      {name}: {timings[name]:.0f} s")

    cam_run = out / "runs" / "cam"
    t0 = log_step(log, step, n, f"pretrain the classifier {recipe.pretrain.arch} -> {cam_run}")
    if not finished_run(cam_run, recipe.pretrain):
        get_method("cam").train(data, cam_run, recipe.pretrain, runtime=runtime)
    done("pretrain", t0)
    step += 1
    t0 = log_step(log, step, n, f"{recipe.pseudo_labels} pseudo-label maps of the train split")
    cams = out / "cache" / ("cams_train" if recipe.pseudo_labels in ("cam", "clip-es")
                            else f"{recipe.pseudo_labels}_train")
    if recipe.pseudo_labels == "clip-es":
        _clip_es_maps(data, cams, recipe, runtime)
    else:
        compute_run_map_cache(cam_run, data, "train", cams, method=recipe.pseudo_labels,
                              batch_size=recipe.eval_batch_size, runtime=runtime)
    done("cam_cache", t0)
    step += 1
    t0 = log_step(log, step, n, "text anchors of the class names")
    ortho, raw = _anchors(data, out, recipe.text_encoder, runtime)
    done("anchors", t0)
    step += 1
    base = dataclasses.replace(recipe.tedloc,
                               feature_cache=recipe.tedloc.feature_cache or str((out / "cache" / "features").resolve()))
    if recipe.encoder_from_cam:
        base = dataclasses.replace(base, encoder=recipe.pretrain.arch, encoder_run=str(cam_run.resolve()),
                                   input_size=recipe.pretrain.input_size)
    runs = {"cam": cam_run}
    rounds: dict[str, list[Path]] = {}
    for name in recipe.variants:
        variant = VARIANTS.get(name)
        cfg = dataclasses.replace(base, lambdas=variant.lambdas)
        maps, rounds[name], total = cams, [], recipe.tedloc_rounds
        for r in range(1, total + 1):
            what = f" (round {r} of {total})" if total > 1 else ""
            t0 = log_step(log, step, n, f"{variant.description}{what} -> {round_run(out, name, r, total)}")
            run, maps = tedloc_round(data, out, name, r, total, cfg, ortho if variant.orthogonal else raw, maps,
                                     runtime, recipe.eval_batch_size)
            rounds[name].append(run)
            done(run.name, t0)
            step += 1
        runs[name] = run
    proposal_quality: dict = {}
    if dips_variants:
        step, proposal_quality = _dips_steps(data, out, recipe, cam_run, runs, runtime, log, done, step, n)
    t0 = log_step(log, step, n, "evaluate every method on the test split")
    results: dict = {}
    if recipe.centered_box and boxes:
        results["centered_box"] = without_curves(centered_box_on_test(data, out, recipe.pretrain.input_size))
        results["centered_gaussian"] = without_curves(centered_gaussian_on_test(data, out, recipe.pretrain.input_size,
                                                                                recipe_protocol(recipe)))
    for name, run in runs.items():
        results[name] = without_curves(evaluate_on_test(run, data, out, recipe, runtime))
    done("evaluate", t0)
    step += 1
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    pictures: list[str] = []
    if draw:
        t0 = log_step(log, step, n, f"overlay pictures of {recipe.overlays} test images")
        drawn = ["cam", *recipe.variants[:1], *dips_variants[:1]]  # the baseline and each method's first variant
        pictures = overlay_pictures(data, out, {k: runs[k] for k in drawn}, recipe.overlays, runtime)
        done("overlays", t0)
        step += 1
    log_step(log, step, n, f"report -> {out / 'report.md'}")
    table = results_table(results)
    protocol = recipe_protocol(recipe)
    sizes = ", ".join(f"{name} {m['map_size']}" for name, m in results.items() if m.get("map_size")) or "-"
    thresholds = ("`Top1Loc`, `Top5Loc`, `mIoU`: at the oracle threshold of the test split (standard protocol, "
                  "test boxes used); `Top1Loc@val_thr`, `Top5Loc@val_thr`: at the run's threshold chosen on val, no "
                  "test box used (`-`: the run has none)")
    name = recipe.name or out.resolve().name
    notes = [_rounds_sentence(rounds)] if recipe.tedloc_rounds > 1 and rounds else []
    atomic_write_text(out / "recipe.json", json.dumps({"name": name, "scope": recipe.scope, "notes": notes},
                                                      indent=1) + "\n")
    text = [f"# {recipe_title(name)}", ""] + ([recipe.scope, ""] if recipe.scope else [])
    text += [f"Test split of `{data}`; {thresholds}; runs in `runs/`, full metrics in `results.json`.", "", table, ""]
    text += no_look_markdown(results)
    text += [line for note in notes for line in (note, "")]
    text += [f"Conventions: class-dependent maps (CAM, TeD-Loc's `class`) of the {protocol.map_class} class "
             f"({'GT-known; `@pred`: the predicted class' if protocol.map_class == 'true' else 'no label used'}); "
             f"thresholds every {protocol.interval}; maps scored at {sizes}.", "",
             "## What the columns mean (percent)", ""]
    text += [f"- {line}" for line in table_definitions(results, HEADLINE_METRICS)] + [""]
    if pictures:
        text += ["## Test images (GT boxes green, predicted boxes white)", ""]
        text += [f"![{p}]({p})" for p in pictures] + [""]
    if proposal_quality:
        text += ["## DiPS proposals of the train split vs GT boxes", "", proposals_table(proposal_quality), ""]
    text += ["## Step times (s)", "", json.dumps(timings), ""]
    atomic_write_text(out / "report.md", "\n".join(text))
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=1) + "\n")

    try:  # the results are written: a failed page is reported, not fatal
        log(f"      report.html: {write_report(out, gallery=recipe.gallery, runtime=runtime)}")
    except (TedlocError, OSError, ValueError) as e:
        log(f"      report.html not written: {e} (`tedloc report {out}` retries)")
    log(table)
    return results
