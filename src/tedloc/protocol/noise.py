"""Noisy GT boxes for the study of selection with imperfect boxes (thesis §4.6.2).

The thesis gives ten noise levels L in {5, 10, ..., 50} %, each the maximum deformation, and
three perturbations; it gives no code. Our reading, applied to each box in this order:

1. scale: s ~ U(-L, L); width and height are multiplied by (1 + s) about the centre;
2. shift: the centre moves by dx ~ U(-L, L) * w', dy ~ U(-L, L) * h' (w', h' after step 1);
3. aspect: with probability L, w' *= (1 + a) and h' /= (1 + a), a ~ U(-L, L).

The box is then rounded to whole pixels, clipped to the image and kept at least 1 px wide and
high. Level 0 returns the boxes unchanged. Draws come from ``numpy.random.default_rng(seed)``.
"""
from __future__ import annotations

import numpy as np

from tedloc.data.dataset import Split
from tedloc.errors import OptionError

__all__ = ["NOISE_LEVELS", "perturb_boxes", "noisy_split", "noise_supervision", "noise_study_rows",
           "format_noise_study"]

NOISE_LEVELS = tuple(range(5, 55, 5))  # percent


def perturb_boxes(boxes: np.ndarray, image_sizes: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Perturb inclusive boxes (n, 4) of images of ``image_sizes`` (n, 2) = (width, height) at ``level`` in [0, 1]."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if not 0 <= level <= 1:
        raise OptionError(f"noise level must be in [0, 1], got {level}")
    if level == 0 or len(boxes) == 0:
        return boxes.copy()
    n = len(boxes)
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    cx = (boxes[:, 0] + boxes[:, 2] + 1) / 2.0  # pixel extents [x0, x1 + 1)
    cy = (boxes[:, 1] + boxes[:, 3] + 1) / 2.0
    w = (boxes[:, 2] - boxes[:, 0] + 1).astype(np.float64)
    h = (boxes[:, 3] - boxes[:, 1] + 1).astype(np.float64)
    scale = 1.0 + rng.uniform(-level, level, n)
    w, h = w * scale, h * scale
    cx = cx + rng.uniform(-level, level, n) * w
    cy = cy + rng.uniform(-level, level, n) * h
    change = rng.random(n) < level
    a = 1.0 + rng.uniform(-level, level, n)
    w = np.where(change, w * a, w)
    h = np.where(change, h / a, h)
    x0 = np.clip(np.round(cx - w / 2), 0, sizes[:, 0] - 1)
    y0 = np.clip(np.round(cy - h / 2), 0, sizes[:, 1] - 1)
    x1 = np.clip(np.round(cx + w / 2) - 1, x0, sizes[:, 0] - 1)
    y1 = np.clip(np.round(cy + h / 2) - 1, y0, sizes[:, 1] - 1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def noisy_split(split: Split, level_percent: float, seed: int = 0) -> Split:
    """A copy of ``split`` whose GT boxes are perturbed at ``level_percent`` (one draw per image)."""
    rng = np.random.default_rng([seed, int(round(level_percent * 1000))])
    boxes = [perturb_boxes(b, np.repeat(split.sizes[i][None], len(b), 0), level_percent / 100.0, rng)
             for i, b in enumerate(split.boxes)]
    return split.with_boxes(boxes)


def noise_supervision(val: Split, seed: int = 0) -> dict[str, Split]:
    """The val split with its GT boxes (``GT``) and perturbed at each level (``noise5`` ... ``noise50``)."""
    return {"GT": val, **{f"noise{level}": noisy_split(val, level, seed) for level in NOISE_LEVELS}}


def noise_study_rows(results: dict, names: list[str]) -> list[dict]:
    """For each supervision of ``names`` (the keys of :func:`noise_supervision`): the BV-TT and BV-VT cells of
    selection with it (``results``: :func:`~tedloc.protocol.selection.evaluate_runs` over those sets)."""
    from tedloc.protocol.selection import select

    rows = []
    for name in names:
        cells = select(results, name)
        rows.append({"boxes": name, **{c: cells[c] for c in ("BV-TT", "BV-VT")}})
    return rows


def format_noise_study(rows: list[dict]) -> str:
    """A Markdown table: the selected checkpoint, BV-TT, BV-VT and BV-VT's difference to clean GT (row ``GT``)."""
    clean = next(r for r in rows if r["boxes"] == "GT")["BV-VT"]["MaxBoxAcc"]
    lines = ["| val boxes | selected | BV-TT MaxBoxAcc | BV-VT MaxBoxAcc | BV-VT - clean BV-VT |",
             "|---|---|---|---|---|"]
    for r in rows:
        tt, vt = r["BV-TT"], r["BV-VT"]
        lines.append(f"| {r['boxes']} | {vt['checkpoint']} | {tt['MaxBoxAcc']:.2f} | {vt['MaxBoxAcc']:.2f} | "
                     f"{vt['MaxBoxAcc'] - clean:+.2f} |")
    return "\n".join(lines)
