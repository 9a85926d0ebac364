"""What the commands print: the metrics table, a dataset's summary (shared by several commands; no command here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tedloc.data import load_dataset
from tedloc.utils.io import atomic_write_text

__all__ = ["format_metrics", "report", "summarize"]

_ORDER = ("map", "map_class", "map_size", "MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAcc@30", "MaxBoxAcc@50", "MaxBoxAcc@70",
          "PxAP", "mIoU", "GTKnownLoc", "Top1Loc", "Top5Loc", "GTKnownLoc@val_thr", "Top1Loc@val_thr",
          "Top5Loc@val_thr", "mIoU@val_thr", "CL@1", "CL@5", "threshold", "val_threshold")


def format_metrics(metrics: dict) -> str:
    """A two-column table of the headline metrics."""
    rows = [(k, metrics[k]) for k in _ORDER if k in metrics]
    source = metrics.get("val_threshold_source")
    if isinstance(source, dict):  # what the val threshold was chosen on: GT boxes, or a pseudo-box file
        rows.append(("val_threshold_from", f"split {source.get('split')}, boxes {source.get('boxes')}"))
    rows += [(k, v) for k, v in metrics.items() if k.startswith("error/")]
    corloc = metrics.get("corloc")
    if corloc:  # a video dataset: the papers' CorLoc (per-class test thresholds) and the realistic one
        rows.append(("CorLoc (oracle)", corloc["oracle"]["CorLoc"]))
        if "realistic" in corloc:
            rows.append(("CorLoc (realistic)", corloc["realistic"]["CorLoc"]))
        rows.append(("CL (frames)", corloc["CL"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in rows)


def report(metrics: dict, title: str, json_path: str | None) -> int:
    """Print the table under ``title`` (and one per extra map), say on stderr which metrics were not
    computed and why, and write the metrics as JSON if asked."""
    for note in metrics.get("not_computed", []):
        print(f"note: {note}", file=sys.stderr)
    print(title)
    print(format_metrics(metrics))
    for kind, other in metrics.get("maps", {}).items():
        print(f"\nmap {kind!r}:")
        print(format_metrics(other))
    if json_path:
        atomic_write_text(json_path, json.dumps(metrics, indent=1) + "\n")
        print(f"wrote {json_path}")
    return 0


def summarize(root: str | Path) -> str:
    """A few lines describing a dataset directory: classes and per-split counts."""
    ds = load_dataset(root)
    lines = [f"{ds.name}: {ds.num_classes} classes ({', '.join(ds.class_names[:4])}"
             f"{', ...' if ds.num_classes > 4 else ''})"]
    for name, split in ds.splits.items():
        extra = f", {split.num_masks:,} masks" if split.has_masks else ""
        what = "shots " if split.shots else "images"
        lines.append(f"  {name:<5} {len(split):>7,} {what}, {split.num_boxes:>7,} boxes{extra}")
    return "\n".join(lines)
