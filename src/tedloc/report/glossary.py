"""What a results table shows, one line per metric, the same lines in ``report.md`` and ``report.html``.

Each line says where its threshold comes from: ``[oracle: ...]`` where the boxes of the evaluated (test) split
choose it, ``[val: ...]`` where the run's threshold chosen on the val split is used (no test box), and nothing
to choose where the metric takes no threshold (CL@1, PxAP).
"""
from __future__ import annotations

from collections.abc import Iterable

from tedloc.errors import TedlocError

__all__ = ["metric_definitions", "table_definitions", "centered_box_sentence", "no_look_sentences", "verdicts",
           "no_look_markdown",
           "recipe_title", "DEFINED_METRICS", "NO_LOOK_ROWS"]

NO_LOOK_ROWS = ("centered_box", "centered_gaussian")  # the results' rows that never look at the image

_ORACLE = "[oracle: chosen with the test boxes]"
_VAL = "[val: the run's threshold chosen on the val split, no test box used; - where the run has none]"
_BOX = "box (the largest region of the map cut at the threshold)"

# metric -> its line, ``{at}`` standing for the operating threshold of the evaluation's mode
_DEFINITIONS = {
    "CL@1": "classification accuracy: the share of test images whose top-scoring class is the true one "
            "(no box, no threshold).",
    "CL@5": "the share of test images whose true class is among the 5 top-scoring ones (no box, no threshold).",
    "MaxBoxAcc": f"the share of test images whose {_BOX} has IoU >= 0.5 with a GT box, at the best of all "
                 f"thresholds {_ORACLE}.",
    "MaxBoxAccV2": "the mean over IoU 0.3, 0.5 and 0.7 of the share of test images with a region of the map (any "
                   f"of them) reaching that IoU with a GT box, each IoU at its best threshold {_ORACLE}.",
    "GTKnownLoc": f"the share of test images whose {_BOX} has IoU >= 0.5 with a GT box, the class ignored, {{at}}.",
    "Top1Loc": f"the share of test images whose {_BOX} has IoU >= 0.5 with a GT box and whose top-1 class is the "
               "true one, {at}.",
    "Top5Loc": f"the share of test images whose {_BOX} has IoU >= 0.5 with a GT box and whose true class is "
               "among the top 5, {at}.",
    "mIoU": f"the mean over test images of the best IoU of the {_BOX} with a GT box, {{at}}.",
    "PxAP": "pixel average precision: the area under the precision-recall curve of the map's pixels against the "
            "GT masks, over all thresholds (none chosen).",
    "GTKnownLoc@val_thr": f"GTKnownLoc at the run's val threshold {_VAL}.",
    "Top1Loc@val_thr": f"Top1Loc at the run's val threshold {_VAL}.",
    "Top5Loc@val_thr": f"Top5Loc at the run's val threshold {_VAL}.",
    "mIoU@val_thr": f"mIoU at the run's val threshold {_VAL}.",
    # the video tables (tedloc bench synthetic-video, ytov1, ytov2; the demo's video part)
    "CorLoc": "per class, the share of test frames whose box has IoU >= 0.5 with a GT box, averaged over the "
              f"classes; each class at its best threshold on the test frames (the papers' CorLoc) {_ORACLE}.",
    "CorLoc (realistic)": "CorLoc at one threshold chosen on the val frames [val: no test box used].",
    "CL": "the share of test frames whose top-scoring class is the video's class (no box, no threshold).",
    "peak on object": "the share of test frames whose map peaks inside the object's mask (no threshold).",
}
DEFINED_METRICS = tuple(_DEFINITIONS)

_AT = {"oracle": f"at the operating threshold, the one of the best MaxBoxAcc {_ORACLE}",
       "otsu": "at each map's own Otsu threshold [no test box used]",
       "fixed": "at the fixed threshold {tau} [no test box used]"}


def metric_definitions(keys: Iterable[str], mode: str = "oracle", tau: float | None = None) -> list[str]:
    """One line ``KEY: definition`` per metric of ``keys`` that has one (in the order of ``keys``), the
    operating threshold of Top1Loc, Top5Loc, GTKnownLoc and mIoU described for the evaluation's ``mode``
    (``oracle``, ``otsu`` or ``fixed`` at ``tau``)."""
    if mode not in _AT:
        raise TedlocError(f"unknown threshold mode {mode!r}; choose from {', '.join(_AT)}")
    at = _AT[mode].format(tau=tau)
    return [f"{k}: {_DEFINITIONS[k].format(at=at)}" for k in dict.fromkeys(keys) if k in _DEFINITIONS]


def table_definitions(results: dict, columns: Iterable[str]) -> list[str]:
    """:func:`metric_definitions` of a results table's ``columns`` (method -> metrics, as ``results.json``), under
    the threshold mode its evaluations recorded (``protocol``; oracle if none did)."""
    protocol = next((m["protocol"] for m in results.values() if isinstance(m.get("protocol"), dict)), {})
    return metric_definitions(columns, protocol.get("mode", "oracle"), protocol.get("tau"))


def centered_box_sentence(box_fraction: float | None = None) -> str:
    """The sentence that says what the ``centered_box`` row is (its side, a fraction of the image's, if known)."""
    size = f" (its side {box_fraction:.0%} of the image's, the best on val)" if box_fraction is not None else ""
    return (f"centered_box: the no-look baseline, one centered box{size} for every image, which never looks at the "
            "image; a method that localizes must beat it.")


def no_look_sentences(results: dict) -> list[str]:
    """One sentence per no-look row of ``results`` (method -> metrics) saying what it is."""
    out = []
    if "centered_box" in results:
        out.append(centered_box_sentence(results["centered_box"].get("box_fraction")))
    if "centered_gaussian" in results:
        sigma = results["centered_gaussian"].get("sigma")
        out.append("centered_gaussian: the other no-look baseline (Choe et al. 2020), one centered Gaussian map"
                   f"{f' (sigma {sigma} of the half side)' if sigma else ''} for every image, scored at every "
                   "threshold like a method's map.")
    return out


# the error analysis' failure kinds (tedloc.eval.box_metrics), as the cause of a method's low MaxBoxAcc
_FAILURES = {
    "LPE": "its box covers only a part of the object (LPE: the box mostly inside the GT box)",
    "LME": "its box is too large (LME: the GT box mostly inside it)",
    "MIns": "its box spans several objects (MIns)",
    "other": "its box misses the object (neither inside nor around the GT box)",
}


def _why(metrics: dict) -> str:
    """The failure kind that costs a row the most images, with its share (empty without the error analysis)."""
    shares = {kind: metrics[f"error/{kind}"] for kind in _FAILURES if f"error/{kind}" in metrics}
    if not shares:
        return ""
    kind = max(shares, key=shares.get)
    return f": {_FAILURES[kind]} for {shares[kind]:.1f}% of the test images"


def verdicts(results: dict, metric: str = "MaxBoxAcc") -> list[str]:
    """One sentence per method row of ``results`` (method -> metrics): its margin over the best no-look baseline
    on ``metric``, or, where it loses (to that baseline, or to the ``cam`` row, which every method here is
    published to beat), why: its most frequent failure kind and its share."""
    looks = {name: m for name, m in results.items() if name not in NO_LOOK_ROWS and metric in m}
    blind = {name: results[name][metric] for name in NO_LOOK_ROWS if metric in results.get(name, {})}
    best = max(blind, key=blind.get) if blind else None
    out = []
    for name, m in looks.items():
        below_cam = name != "cam" and metric in results.get("cam", {}) and m[metric] < results["cam"][metric]
        if best is not None and m[metric] <= blind[best]:
            cam = f", nor cam ({results['cam'][metric]:.2f})" if below_cam else ""
            out.append(f"{name} ({metric} {m[metric]:.2f}) does not beat the no-look {best} ({blind[best]:.2f})"
                       f"{cam}{_why(m)}.")
        elif below_cam:
            out.append(f"{name} ({metric} {m[metric]:.2f}) is below cam ({results['cam'][metric]:.2f})"
                       f"{_why(m)}.")
        elif best is not None:
            out.append(f"{name} ({metric} {m[metric]:.2f}) beats the no-look {best} by {m[metric] - blind[best]:.2f}"
                       " points.")
    return out


def no_look_markdown(results: dict) -> list[str]:
    """``report.md``'s lines under a results table: :func:`no_look_sentences`, then ``## What the table shows``
    with :func:`verdicts` as a list (when there are any)."""
    text = [line for sentence in no_look_sentences(results) for line in (sentence, "")]
    lines = verdicts(results)
    return text + (["## What the table shows", ""] + [f"- {line}" for line in lines] + [""] if lines else [])


def recipe_title(name: str) -> str:
    """The title of a recipe's report (``report.md`` and ``report.html`` alike)."""
    return f"tedloc results: {name}"
