"""One self-contained HTML page of results (``tedloc report``): it opens from disk, every picture is embedded.

For a recipe folder (``tedloc demo``, ``tedloc bench``: ``results.json``, ``eval/``, ``runs/``):

- the results table (every method and map) and the conventions it was scored under;
- per method, the per-threshold curves (BoxAcc at IoU 30/50/70 against the threshold, the operating
  threshold marked; the PxAP precision-recall curve where masks exist);
- per run, the training curves of ``metrics.csv`` (losses, validation metrics; the selected epoch marked);
- the error analysis (LPE, LME, MIns, other) as bars per method;
- per method, a gallery of test images (the best, the worst and random ones by the IoU of the predicted
  box): the map over the image, the GT box (green) and the predicted box (white), the true and the predicted
  class.

For a run folder: its training curves and record. For an evaluation (``tedloc evaluate --json``): its
table, curves and error bars. For a protocol table (``tedloc protocol-table --json``): the table in both
layouts (``tedloc protocol-table --report`` adds the selection curves, which need the runs). Plots are
matplotlib PNGs embedded as ``data:`` URIs.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from pathlib import Path

import numpy as np

from tedloc.data.images import load_image
from tedloc.engine.run_folder import RunFolder
from tedloc.errors import TedlocError
from tedloc.report.glossary import no_look_sentences, recipe_title, table_definitions, verdicts
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text

__all__ = ["write_report", "gallery_indices", "gallery_pictures", "write_protocol_report", "HEADLINE_METRICS"]

# the columns of the results tables
# (Top1Loc, Top5Loc, mIoU: at the evaluation's operating threshold, the test split's oracle one in the standard
# protocol; Top1Loc@val_thr, Top5Loc@val_thr: at the run's threshold chosen on val, no test box used)
HEADLINE_METRICS = ("CL@1", "MaxBoxAcc", "MaxBoxAccV2", "Top1Loc", "Top5Loc", "Top1Loc@val_thr", "Top5Loc@val_thr",
                    "mIoU", "PxAP")

_ERROR_KINDS = ("LPE", "LME", "MIns", "other")
_IOU = (30, 50, 70)


def _png(fig) -> str:
    """A matplotlib figure as an embedded ``<img>`` (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return _img(buf.getvalue(), "plot")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figure(width: float = 5.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _table(results: dict, keys: tuple[str, ...]) -> str:
    rows = ["<tr><th>method</th><th>map</th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>"]
    for method, metrics in results.items():
        entries = [(metrics.get("map", "-"), metrics)] + list(metrics.get("maps", {}).items())
        for kind, m in entries:
            rows.append(f"<tr><td>{html.escape(method)}</td><td>{html.escape(str(kind))}</td>"
                        + "".join(f"<td>{_cell(m.get(k))}</td>" for k in keys) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _conventions(results: dict) -> str:
    seen = [m for m in results.values() if "map_class" in m]
    if not seen:
        return ""
    m = seen[0]
    cls = ("the true class's (GT-known; <code>@pred</code>: the predicted class's)" if m["map_class"] == "true"
           else "the predicted class's (no label used)")
    sizes = sorted({f"{m.get('map_size')}" for m in seen if m.get("map_size")})
    mode = {"oracle": "the oracle threshold of the evaluated split (the standard protocol)",
            "otsu": "Otsu's threshold per map", "fixed": f"the fixed threshold {m.get('threshold')}"}.get(
        m.get("mode", "oracle"), str(m.get("mode")))
    val = ("; <code>@val_thr</code>: at the run's threshold chosen on val (no test box used; - where the run has "
           "none)" if any("MaxBoxAcc" in m for m in seen) else "")
    return html.escape(f"Conventions: class-dependent maps are {cls}; thresholds every {m.get('interval')}; maps "
                       f"scored at {' / '.join(sizes) or 'the input size'} pixels; boxes at {mode}{val}.", quote=False
                       ).replace("&lt;code&gt;", "<code>").replace("&lt;/code&gt;", "</code>").join(
        ("<p class='note'>", "</p>"))


def _title(text: str) -> str:
    """Text for a matplotlib title (``$`` would start its math mode)."""
    return text.replace("$", r"\$")


def _threshold_curves(name: str, metrics: dict) -> str:
    """BoxAcc (the largest box, as MaxBoxAcc) at IoU 30/50/70 against the threshold, the operating threshold
    marked (the peak of the IoU 0.5 curve); PxAP's PR curve."""
    curves = metrics.get("curves") or {}
    parts = []
    thresholds = curves.get("thresholds")
    if thresholds and len(thresholds) > 2 and "BoxAccV1@50" in curves:  # not a binary map (the centered box)
        fig, ax = _figure()
        for d in _IOU:
            if f"BoxAccV1@{d}" in curves:
                ax.plot(thresholds, curves[f"BoxAccV1@{d}"], label=f"IoU {d / 100:.1f}")
        if isinstance(metrics.get("threshold"), float):
            ax.axvline(metrics["threshold"], color="k", linestyle="--",
                       label=f"{_operating_name(metrics)} {metrics['threshold']:.3f}")
        if isinstance(metrics.get("val_threshold"), float):
            ax.axvline(metrics["val_threshold"], color="k", linestyle=":",
                       label=f"val (run's, no test box) {metrics['val_threshold']:.3f}")
        ax.set(xlabel="threshold", ylabel="BoxAcc (%), largest box", ylim=(0, 100),
               title=_title(f"{name}: box accuracy per threshold"))
        ax.legend(fontsize=8)
        parts.append(_png(fig))
    if "pxap" in curves:
        fig, ax = _figure()
        ax.plot(curves["pxap"]["recall"], curves["pxap"]["precision"])
        ax.set(xlabel="recall", ylabel="precision", title=_title(f"{name}: PxAP {metrics.get('PxAP', 0):.2f}"),
               xlim=(0, 1), ylim=(0, 1))
        parts.append(_png(fig))
    return _row(parts)


def _operating_name(metrics: dict) -> str:
    """What the operating threshold of an evaluation is, for a legend."""
    mode = (metrics.get("protocol") or {}).get("mode", metrics.get("mode", "oracle"))
    return {"oracle": "oracle (best on the test boxes)", "fixed": "fixed"}.get(mode, str(mode))


def _curves_note(results: dict) -> str:
    """Which threshold each line of the per-threshold curves marks."""
    modes = {(m.get("protocol") or {}).get("mode", m.get("mode", "oracle")) for m in results.values()}
    dashed = ("the oracle threshold, the best on the test boxes (where Top1Loc, Top5Loc and mIoU are read)"
              if modes <= {"oracle"} else "the operating threshold (where Top1Loc, Top5Loc and mIoU are read)")
    return (f"<p class='note'>Dashed line: {dashed}; dotted line: the run's threshold chosen on the val split, no "
            "test box used (the @val_thr columns, and the gallery's boxes).</p>")


def _row(parts: list[str]) -> str:
    """Pictures side by side."""
    return f"<div class='row'>{''.join(parts)}</div>" if parts else ""


def _read_history(run: Path) -> list[dict]:
    path = RunFolder(run).metrics_path
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _training_curves(name: str, run: Path) -> str:
    """Losses and validation metrics per epoch from ``metrics.csv``; the selected epoch marked."""
    rows = _read_history(run)
    if not rows:
        return ""
    meta = RunFolder(run).metadata() if RunFolder(run).is_finished() else {}
    selected = meta.get("selected_epoch") or (meta["epoch"] + 1 if isinstance(meta.get("epoch"), int) else None)
    epochs = [int(r["epoch"]) for r in rows]

    def series(key: str) -> list[float] | None:
        values = [r.get(key) for r in rows]
        if not values or any(v in (None, "") for v in values):
            return None
        try:
            return [float(v) for v in values]
        except ValueError:
            return None

    columns = {k: v for k in rows[0] if (v := series(k))}  # the numeric columns filled in every epoch
    losses = [k for k in columns if k.startswith("loss") or k.endswith("_loss")]
    vals = [k for k in columns if k.startswith(("val_", "train_top")) and "loss" not in k and "threshold" not in k]
    parts = []
    for keys, ylabel in ((losses, "loss"), (vals, "%")):
        if not keys:
            continue
        fig, ax = _figure()
        for k in keys:
            ax.plot(epochs, columns[k], marker="o", label=k)
        if min(min(columns[k]) for k in keys) < 0:  # a loss of another sign and scale (DiPS's CRF term)
            ax.set_yscale("symlog")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if selected:
            ax.axvline(selected, color="k", linestyle="--", label=f"selected epoch {selected}")
        ax.set(xlabel="epoch", ylabel=ylabel, title=_title(f"{name}: {'losses' if ylabel == 'loss' else 'validation'}"))
        ax.legend(fontsize=7)
        parts.append(_png(fig))
    return _row(parts)


def _error_bars(results: dict) -> str:
    """The failure kinds at the operating threshold, as grouped bars per method."""
    named = {f"{m} ({v.get('map', '-')})": v for m, v in results.items() if f"error/{_ERROR_KINDS[0]}" in v}
    if not named:
        return ""
    fig, ax = _figure(max(5.0, 1.2 * len(named)), 3.2)
    x = np.arange(len(named))
    width = 0.8 / len(_ERROR_KINDS)
    for i, kind in enumerate(_ERROR_KINDS):
        ax.bar(x + i * width, [v.get(f"error/{kind}", 0.0) for v in named.values()], width, label=kind)
    ax.set_xticks(x + 0.4 - width / 2, list(named), rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="% of test images", title="failures at the operating threshold (IoU < 0.5)")
    ax.legend(fontsize=8)
    return _png(fig)


def gallery_indices(ious: np.ndarray, count: int, seed: int = 0) -> dict[str, list[int]]:
    """``best``, ``worst`` and ``random`` image positions (``count`` each, at most) by per-image IoU: the
    highest first, the lowest first, and a seeded draw among the others."""
    order = np.argsort(-ious, kind="stable")
    best = order[:count].tolist()
    worst = [int(i) for i in order[::-1] if i not in best][:count]
    rest = np.array([i for i in range(len(ious)) if i not in best and i not in worst], dtype=np.int64)
    pick = np.random.default_rng(seed).choice(rest, size=min(count, len(rest)), replace=False) if len(rest) else []
    return {"best": best, "worst": worst, "random": sorted(int(i) for i in pick)}


def gallery_pictures(model, split, class_names: list[str], threshold: float | str, count: int, pool: int = 300
                     ) -> dict[str, list[tuple[str, object, str, float]]]:
    """``group -> [(image id, overlay picture, caption, IoU)]`` for the groups of :func:`gallery_indices` over
    ``pool`` test images evenly spaced over ``split``, ranked by the IoU (in image pixels) of the box that
    ``tedloc predict`` draws (the predicted class's map at ``threshold``) with the GT boxes. Overlays: the map
    over the image, the GT box green, the predicted box white, the predicted class (and the true one when
    they differ)."""
    from tedloc.eval.boxes import box_iou
    from tedloc.inference import Localizer
    from tedloc.viz import render_overlay

    if count < 0 or pool < 1:
        raise TedlocError(f"the gallery needs count >= 0 and pool >= 1, got {count} and {pool}")
    if not split.has_boxes or len(split) == 0 or count == 0:
        return {}
    candidates = sorted(set(np.linspace(0, len(split) - 1, min(pool, len(split))).round().astype(int).tolist()))
    localizer = Localizer(model, threshold)
    predictions = localizer([split.image_path(i) for i in candidates])
    ious = [float(box_iou(np.array([p.box]), split.boxes[i]).max()) for p, i in zip(predictions, candidates)]
    out: dict[str, list] = {}
    for group, positions in gallery_indices(np.array(ious), count).items():
        out[group] = []
        for p in positions:
            i = candidates[p]
            image = load_image(split.image_path(i))
            pred = predictions[p]
            truth = class_names[int(split.labels[i])]
            caption = pred.label if pred.label == truth else f"{pred.label} (true: {truth})"
            picture = render_overlay(image, pred.map, pred.box, split.boxes[i], caption=caption, min_side=160)
            out[group].append((split.image_ids[i], picture, caption, ious[p]))
    return out


def _gallery(run: Path, dataset, count: int, pool: int, runtime) -> str:
    """The gallery of one run on the test split of ``dataset``, at the run's stored threshold (Otsu when it
    has none)."""
    from tedloc.methods import load_model

    record = RunFolder(run).record()
    stored = record.threshold
    threshold = stored if stored is not None else "otsu"
    pictures = gallery_pictures(load_model(run, runtime=runtime), dataset["test"], dataset.class_names, threshold,
                                count, pool)
    if not pictures:
        return ""
    parts = []
    for group, items in pictures.items():
        tiles = []
        for image_id, picture, caption, iou in items:
            buf = io.BytesIO()
            picture.save(buf, format="PNG")
            tiles.append(f"<figure>{_img(buf.getvalue(), image_id)}<figcaption>IoU {iou:.2f}: "
                         f"{html.escape(caption)}</figcaption></figure>")
        parts.append(f"<h4>{group}</h4><div class='gallery'>{''.join(tiles)}</div>")
    n = min(pool, len(dataset["test"]))
    return (f"<p class='note'>About {n} test images ranked by the IoU of the predicted box (the predicted class's "
            f"map at {_stored_threshold_text(stored, record.threshold_source)}, as <code>tedloc predict</code> "
            "draws it; not the oracle threshold of the curves' dashed line); GT boxes green, predicted boxes white."
            "</p>" + "".join(parts))


def _stored_threshold_text(threshold: float | None, source) -> str:
    """Where the gallery's threshold comes from, in words."""
    if threshold is None:
        return "each map's own Otsu threshold (the run stores none)"
    split = source.get("split") if isinstance(source, dict) else None
    if split == "val":
        return (f"the run's stored threshold {threshold:.3f}, chosen on the val split with no test box (the curves' "
                "dotted line)")
    return f"the run's stored threshold {threshold:.3f}, chosen on {f'the {split} split' if split else 'an unrecorded split'}"


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}td:first-child,td:nth-child(2)
{text-align:left}.note{color:#444;font-size:13px}img{margin:4px;vertical-align:top}.gallery{display:flex;
flex-wrap:wrap}.row{display:flex;flex-wrap:wrap}figure{margin:4px;font-size:11px;max-width:180px}
figure img{max-width:170px}figcaption{overflow-wrap:anywhere}"""


def _page(title: str, body: list[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>\n")


def _recipe_sections(folder: Path, gallery: int, pool: int, runtime) -> list[str]:
    results = json.loads((folder / "results.json").read_text())
    scope = _recipe_record(folder).get("scope")
    body = [f"<p class='note'>{html.escape(scope)}</p>" if scope else "",
            "<h2>Results (test split)</h2>", _table(results, HEADLINE_METRICS)]
    body += [f"<p class='note'>{html.escape(sentence)}</p>" for sentence in no_look_sentences(results)]
    body += [f"<p class='note'>{html.escape(str(note))}</p>" for note in _recipe_record(folder).get("notes", [])]
    lines = verdicts(results)
    if lines:
        body += ["<h3>What the table shows</h3><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
                 + "</ul>"]
    body += [_conventions(results), "<h3>What the columns mean (percent)</h3><ul class='note'>"
             + "".join(f"<li>{html.escape(line)}</li>" for line in table_definitions(results, HEADLINE_METRICS))
             + "</ul>"]
    body += ["<h2>Per-threshold curves</h2>", _curves_note(results)]
    for name in results:
        path = folder / "eval" / f"{name}.json"
        if path.exists():
            body.append(f"<h3>{html.escape(name)}</h3>" + _threshold_curves(name, json.loads(path.read_text())))
    runs = ({p.name: p for p in sorted((folder / "runs").iterdir()) if (p / "model.json").exists()}
            if (folder / "runs").is_dir() else {})
    body += ["<h2>Training curves</h2>"]
    curves = {n: _training_curves(n, r) for n, r in runs.items()}
    body += [f"<h3>{html.escape(n)}</h3>{c}" for n, c in curves.items() if c]
    body += ["<h2>Error analysis</h2>", _error_bars(results)]
    data = _recipe_data(folder, runs)
    if gallery and data is None:
        body += ["<h2>Gallery</h2><p class='note'>No gallery: the dataset of the runs was not found (neither "
                 f"{html.escape(str(folder / 'data'))} nor the folder their config.json names).</p>"]
    elif gallery:
        from tedloc.data import load_dataset

        dataset = load_dataset(data, splits=["test"])
        body += ["<h2>Gallery</h2>"]
        for name in results:
            if name in runs:
                body.append(f"<h3>{html.escape(name)}</h3>" + _gallery(runs[name], dataset, gallery, pool, runtime))
    return body


def _recipe_record(folder: Path) -> dict:
    """The recipe's name, scope and notes that ``run_recipe`` recorded in ``recipe.json`` (empty if none)."""
    try:
        record = json.loads((folder / "recipe.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _recipe_data(folder: Path, runs: dict[str, Path]) -> Path | None:
    """The dataset of a recipe folder: ``OUT/data`` (bench) or the one its runs were trained on."""
    candidates = [folder / "data"]
    for run in runs.values():
        config = RunFolder(run).config_path
        if config.exists():
            candidates.append(Path(json.loads(config.read_text()).get("data", "")))
    return next((c for c in candidates if (c / "dataset.yaml").exists()), None)


def _selection_curves(results: dict, supervisions: list[str]) -> str:
    """Per run: the val score of every epoch against each supervision (and val CL@1) beside the test
    MaxBoxAcc (GT) of that epoch: what each column of the table selects from."""
    runs: dict = {}
    for ckpt, r in results.items():
        runs.setdefault(str(ckpt.run), []).append((ckpt.epoch, r))
    parts = []
    for name, rows in runs.items():
        rows.sort(key=lambda x: x[0])
        epochs = [e for e, _ in rows]
        fig, ax = _figure()
        ax.plot(epochs, [max(r["test"]["acc50"]) for _, r in rows], "k-o", label="test MaxBoxAcc (GT)")
        for s in supervisions:
            ax.plot(epochs, [max(r["val"][s]["acc50"]) for _, r in rows], marker="o", linestyle="--",
                    label=f"val MaxBoxAcc vs {s}")
        first = next(iter(rows[0][1]["val"].values()), {})
        if "CL@1" in first:
            ax.plot(epochs, [next(iter(r["val"].values())).get("CL@1") for _, r in rows], marker="s", linestyle=":",
                    label="val CL@1")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="%", title=_title(f"{Path(name).name}: what each column selects from"))
        ax.legend(fontsize=7)
        parts.append(_png(fig))
    return _row(parts)


def _is_protocol_table(data) -> bool:
    return isinstance(data, dict) and bool(data) and all(isinstance(v, dict) and "BT-TT" in v for v in data.values())


def _protocol_tables(table: dict) -> list[str]:
    """The table in both layouts (MaxBoxAcc / mIoU; BoxAcc at IoU 30/50/70 / MaxBoxAccV2), the cells explained."""
    from tedloc.protocol.selection import format_table

    def as_html(text: str) -> str:
        lines = [ln for ln in text.splitlines() if ln.startswith("|") and not ln.startswith("|---")]
        note = " ".join(ln for ln in text.splitlines() if ln and not ln.startswith("|"))
        cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells[1:])
        return f"<table><tr>{head}</tr>{body}</table><p class='note'>{html.escape(note)}</p>"

    return ["<h2>Selection and thresholds (test MaxBoxAcc / mIoU)</h2>", as_html(format_table(table)),
            "<h2>BoxAcc at IoU 30 / 50 / 70 / MaxBoxAccV2</h2>", as_html(format_table(table, detail=True))]


def write_protocol_report(results: dict, table: dict, out: str | os.PathLike) -> Path:
    """The protocol table (both layouts, the cells explained) and the selection curves of every run, as one
    HTML page (``tedloc protocol-table --report``)."""
    supervisions = [s for s in table if s != "cls"]
    body = _protocol_tables(table) + ["<h2>Selection curves</h2>", _selection_curves(results, supervisions)]
    target = Path(out)
    atomic_write_text(target, _page("tedloc protocol table", body))
    return target


def write_report(path: str | os.PathLike, out: str | os.PathLike | None = None, gallery: int = 4, pool: int = 300,
                 *, runtime: Runtime) -> Path:
    """Write the HTML page of ``path``: a recipe folder (``results.json``), a run folder (``model.json``), an
    evaluation JSON (``tedloc evaluate --json``) or a protocol table (``--json``); default ``out``:
    ``report.html`` inside the folder (beside the JSON file). ``gallery`` images per group (best, worst,
    random) among ``pool`` test images."""
    path = Path(path)
    if gallery < 0 or pool < 1:
        raise TedlocError(f"--gallery must be >= 0 and --pool >= 1, got {gallery} and {pool}")
    if path.is_dir() and (path / "results.json").exists():
        title = recipe_title(_recipe_record(path).get("name") or path.resolve().name)
        body = _recipe_sections(path, gallery, pool, runtime)
    elif path.is_dir() and (path / "model.json").exists():
        meta = RunFolder(path).metadata()
        record = {k: meta.get(k) for k in ("kind", "selection", "selected_epoch", "threshold") if k in meta}
        title = f"tedloc run: {path.name}"
        body = ["<h2>Run</h2><pre>" + html.escape(json.dumps(record, indent=1)) + "</pre>",
                "<h2>Training curves</h2>", _training_curves(path.name, path)]
    elif path.is_file() and path.suffix == ".json" and _is_protocol_table(json.loads(path.read_text())):
        title = f"tedloc protocol table: {path.stem}"
        body = _protocol_tables(json.loads(path.read_text()))
        body.append("<p class='note'>The selection curves need the runs: <code>tedloc protocol-table ... --report "
                    "FILE.html</code> draws them.</p>")
    elif path.is_file() and path.suffix == ".json":
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict) or "images" not in metrics:
            raise TedlocError(f"{path}: not an evaluation of `tedloc evaluate --json` nor a table of "
                              f"`tedloc protocol-table --json`")
        title = f"tedloc evaluation: {path.stem}"
        body = ["<h2>Results</h2>", _table({path.stem: metrics}, HEADLINE_METRICS), _conventions({path.stem: metrics}),
                "<h2>Per-threshold curves</h2>", _threshold_curves(path.stem, metrics),
                "<h2>Error analysis</h2>", _error_bars({path.stem: metrics})]
    else:
        raise TedlocError(f"{path}: not a recipe folder (results.json), a run folder (model.json), an "
                          f"evaluation JSON or a protocol table JSON")
    target = Path(out) if out else (path if path.is_dir() else path.parent) / "report.html"
    atomic_write_text(target, _page(title, body))
    return target
