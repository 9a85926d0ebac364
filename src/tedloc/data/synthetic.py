"""The built-in synthetic WSOL benchmark: license-free, deterministic, made in seconds.

Each image holds one object on a cluttered background. The object is a textured body (an
ellipse whose colours are shared by all classes) that carries a small class *emblem* (a
coloured shape) near one end. The class evidence is therefore only in a part of the object,
while the GT box and mask cover the whole object: a classifier's CAM lights up the emblem and
its box is too small, which is the classic WSOL difficulty. Distractors: clutter strokes of
any colour and smaller decoy bodies without an emblem.

Where the object is and how large (``placement``): ``cub`` (the default) and ``ilsvrc`` draw its box's area
fraction and centre offset from the quantiles of CUB's and ILSVRC's test boxes (:data:`PLACEMENTS`, measured by
``tedloc data box-stats`` on wsolevaluation's metadata), so that the no-look baselines are as strong here as on
the real benchmarks; ``uniform`` is the original generator (sizes of a fixed range, anywhere in the image).

Classes are ``(colour, shape)`` pairs (``"red circle"``, ``"green square"``, ...), so that text
encoders see meaningful class names. Everything is drawn from ``numpy.random.default_rng``
seeded with ``(seed, split, index)``: the same arguments give the same bytes.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tedloc.data.box_statistics import QUANTILES
from tedloc.data.dataset import Split, WSOLDataset
from tedloc.data.wsol_format import save_dataset
from tedloc.errors import DataError
from tedloc.utils.progress import progress

__all__ = ["SyntheticConfig", "make_synthetic", "render_sample", "synthetic_class_names", "MAX_CLASSES",
           "generation_folder", "PLACEMENTS"]

_COLORS = {
    "red": (225, 30, 30),
    "green": (30, 175, 50),
    "blue": (35, 70, 230),
    "yellow": (240, 215, 20),
    "magenta": (215, 40, 215),
    "cyan": (30, 200, 215),
    "orange": (250, 125, 10),
    "white": (250, 250, 250),
}
_SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star", "ring", "bar")
MAX_CLASSES = len(_COLORS) * len(_SHAPES)
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# Quantiles 1, 5, 10, 15, ..., 95, 99 % of the largest box of each test image: its area / the image's, its centre's
# offset from the image centre in image widths (dx) and heights (dy). Measured on wsolevaluation's test metadata:
# `tedloc data import-wsol --metadata-root wsolevaluation/metadata --dataset CUB --out M && tedloc data box-stats M`
# (CUB: 5,794 images; ILSVRC: 50,000). tests/test_synthetic_placement.py recomputes them when the metadata is there.
PLACEMENTS = {
    "cub": {
        "area": (0.0812, 0.1129, 0.1399, 0.1633, 0.1845, 0.2063, 0.2295, 0.2531, 0.2731, 0.2929, 0.3157, 0.3409,
                 0.3634, 0.389, 0.4199, 0.4547, 0.489, 0.533, 0.5916, 0.6847, 0.8169),
        "dx": (-0.2141, -0.155, -0.124, -0.103, -0.082, -0.0653, -0.0506, -0.0372, -0.0241, -0.013, -0.001, 0.009,
               0.021, 0.034, 0.047, 0.061, 0.077, 0.096, 0.12, 0.1531, 0.213),
        "dy": (-0.1667, -0.0993, -0.0622, -0.043, -0.027, -0.017, -0.0075, 0.001, 0.0075, 0.0137, 0.021, 0.0275,
               0.0345, 0.042, 0.0491, 0.0584, 0.0691, 0.0811, 0.0975, 0.1233, 0.1802),
    },
    "ilsvrc": {
        "area": (0.0078, 0.0362, 0.0734, 0.1133, 0.1556, 0.1958, 0.2378, 0.2809, 0.3249, 0.3688, 0.414, 0.4597,
                 0.507, 0.558, 0.6103, 0.6662, 0.7297, 0.7975, 0.8756, 0.9687, 0.998),
        "dx": (-0.328, -0.214, -0.147, -0.1027, -0.071, -0.048, -0.032, -0.0187, -0.0084, -0.0015, 0.0, 0.0017,
               0.008, 0.017, 0.0293, 0.046, 0.068, 0.099, 0.143, 0.211, 0.321),
        "dy": (-0.2947, -0.1642, -0.1013, -0.064, -0.04, -0.0225, -0.0093, -0.0012, 0.0, 0.0039, 0.0107, 0.02,
               0.0307, 0.0434, 0.0585, 0.076, 0.0987, 0.1284, 0.171, 0.236, 0.348),
    },
}
PLACEMENT_LEVELS = QUANTILES  # the levels of the quantiles above
PLACEMENT_CHOICES = (*PLACEMENTS, "uniform")


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic benchmark (the defaults make 3,000 64x64 images)."""

    classes: int = 10
    train: int = 2000
    val: int = 400
    test: int = 600
    size: int = 64
    seed: int = 0
    placement: str = "cub"

    def validate(self) -> None:
        """Raise :class:`DataError` (naming the field) when a parameter is out of range."""
        if not 2 <= self.classes <= MAX_CLASSES:
            raise DataError(f"--classes must be in [2, {MAX_CLASSES}], got {self.classes}", field="classes")
        if self.size < 32:
            raise DataError(f"--size must be at least 32 pixels, got {self.size}", field="size")
        if self.placement not in PLACEMENT_CHOICES:
            raise DataError(f"--placement must be one of {', '.join(PLACEMENT_CHOICES)}, got {self.placement!r}",
                            field="placement")
        for name in ("train", "val", "test"):
            if getattr(self, name) < 0:
                raise DataError(f"--{name} must be >= 0", field=name)


def _class_spec(k: int) -> tuple[str, str]:
    colors = list(_COLORS)
    color = colors[k % len(colors)]
    shape = _SHAPES[(k + k // len(colors)) % len(_SHAPES)]
    return color, shape


def synthetic_class_names(classes: int) -> list[str]:
    """``"<colour> <shape>"`` for each class index."""
    return [" ".join(_class_spec(k)) for k in range(classes)]


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (s, s), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, size=(s, s, 3)).astype(np.float32)
    # clutter: strokes and small blobs of arbitrary colours
    for _ in range(int(rng.integers(4, 10))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(0, 3)
        p = rng.integers(0, s, 2)
        if kind == 0:
            q = p + rng.integers(-s // 3, s // 3 + 1, 2)
            cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, int(rng.integers(1, 3)))
        elif kind == 1:
            cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(1, max(2, s // 16))), color, -1)
        else:
            q = p + rng.integers(2, max(3, s // 8), 2)
            cv2.rectangle(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, -1)
    return img


def _body_texture(rng: np.random.Generator, s: int) -> np.ndarray:
    base = rng.uniform(95, 150) + rng.uniform(-15, 15, 3)  # neutral, shared by all classes
    stripes = np.sin(np.arange(s, dtype=np.float32)[None, :] * rng.uniform(0.4, 1.2) + rng.uniform(0, 6.3)) * 14
    tex = np.broadcast_to(base[None, None, :], (s, s, 3)).astype(np.float32) + stripes[..., None]
    return tex + rng.normal(0, 6, size=(s, s, 3)).astype(np.float32)


def _ellipse_mask(s: int, center, axes, angle: float) -> np.ndarray:
    m = np.zeros((s, s), np.uint8)
    cv2.ellipse(m, (int(round(center[0])), int(round(center[1]))),
                (max(1, int(round(axes[0]))), max(1, int(round(axes[1])))), angle, 0, 360, 1, -1)
    return m.astype(bool)


def _emblem_mask(shape: str, s: int, center, r: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the emblem and, for the ring, of its hole (drawn in body colour)."""
    m = np.zeros((s, s), np.uint8)
    hole = np.zeros((s, s), np.uint8)
    cx, cy = center
    rot = rng.uniform(0, 2 * math.pi) if shape in ("triangle", "star", "cross", "bar") else 0.0

    def poly(points):
        pts = np.array([[cx + x * math.cos(rot) - y * math.sin(rot), cy + x * math.sin(rot) + y * math.cos(rot)]
                        for x, y in points])
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)

    if shape == "circle":
        cv2.circle(m, (int(round(cx)), int(round(cy))), max(1, int(round(r))), 1, -1)
    elif shape == "ring":
        cv2.circle(m, (int(round(cx)), int(round(cy))), max(2, int(round(r))), 1, -1)
        cv2.circle(hole, (int(round(cx)), int(round(cy))), max(1, int(round(r * 0.45))), 1, -1)
    elif shape == "square":
        poly([(-r * 0.85, -r * 0.85), (r * 0.85, -r * 0.85), (r * 0.85, r * 0.85), (-r * 0.85, r * 0.85)])
    elif shape == "diamond":
        poly([(0, -r * 1.1), (r * 0.8, 0), (0, r * 1.1), (-r * 0.8, 0)])
    elif shape == "triangle":
        poly([(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)])
    elif shape == "star":
        pts = []
        for i in range(10):
            rad = r * (1.0 if i % 2 == 0 else 0.45)
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
        poly(pts)
    elif shape == "cross":
        w = r * 0.35
        poly([(-r, -w), (r, -w), (r, w), (-r, w)])
        poly([(-w, -r), (w, -r), (w, r), (-w, r)])
    elif shape == "bar":
        poly([(-r * 1.1, -r * 0.4), (r * 1.1, -r * 0.4), (r * 1.1, r * 0.4), (-r * 1.1, r * 0.4)])
    else:  # pragma: no cover - _SHAPES is closed
        raise ValueError(shape)
    hole_b = hole.astype(bool)
    return m.astype(bool) & ~hole_b, hole_b


def _quantile_draw(rng: np.random.Generator, quantiles: tuple[float, ...]) -> float:
    """A draw from the distribution whose quantiles at :data:`PLACEMENT_LEVELS` are ``quantiles`` (linear between)."""
    return float(np.interp(rng.uniform(PLACEMENT_LEVELS[0], PLACEMENT_LEVELS[-1]), PLACEMENT_LEVELS, quantiles))


def _placed_ellipse(rng: np.random.Generator, s: int, placement: dict) -> tuple[float, float, float, tuple]:
    """(semi-axes a >= b, angle in degrees, centre) of an ellipse whose bounding box has the drawn area fraction
    and centre offset of ``placement``, its aspect ratio in [0.64, 1.57], inside the ``s`` x ``s`` image."""
    area = _quantile_draw(rng, placement["area"])
    dx, dy = _quantile_draw(rng, placement["dx"]), _quantile_draw(rng, placement["dy"])
    aspect = math.exp(rng.uniform(-0.45, 0.45))  # box width / height
    ex = (min(math.sqrt(area * aspect) * s, s - 3) - 1) / 2  # half sides of the box (its pixels: 2 ex + 1)
    ey = (min(math.sqrt(area / aspect) * s, s - 3) - 1) / 2
    # a rotated ellipse's box: ex^2 = a^2 cos^2 + b^2 sin^2, ey^2 = a^2 sin^2 + b^2 cos^2; try angles until the
    # axes it gives are an ellipse of the usual elongation (b / a in [0.45, 0.9]), else lay it along the box
    for angle in rng.uniform(0, 180, size=8):
        c2, s2 = math.cos(math.radians(angle)) ** 2, math.sin(math.radians(angle)) ** 2
        if abs(c2 - s2) < 1e-3:
            continue
        a2, b2 = np.linalg.solve([[c2, s2], [s2, c2]], [ex * ex, ey * ey])
        if b2 > 0 and a2 > 0 and 0.45 <= math.sqrt(b2 / a2) <= 0.9:
            a, b = math.sqrt(a2), math.sqrt(b2)
            break
    else:
        a, b = max(ex, ey), min(ex, ey)
        angle = 0.0 if ex >= ey else 90.0
    cx = float(np.clip(s / 2 + dx * s, ex + 1, s - 2 - ex))
    cy = float(np.clip(s / 2 + dy * s, ey + 1, s - 2 - ey))
    return a, b, float(angle), (cx, cy)


def render_sample(cfg: SyntheticConfig, label: int, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one image (uint8 HxWx3) and its object mask (bool HxW) for class ``label``."""
    s = cfg.size
    rng = np.random.default_rng([cfg.seed, _SPLIT_CODES.get(split, 3), index, label])
    img = _background(rng, s)

    # decoy bodies (no emblem), drawn before the object so that it occludes them
    for _ in range(int(rng.integers(0, 3))):
        a = rng.uniform(0.08, 0.18) * s
        m = _ellipse_mask(s, rng.uniform(0, s, 2), (a, a * rng.uniform(0.5, 0.9)), rng.uniform(0, 180))
        img[m] = _body_texture(rng, s)[m]

    # the object: a body ellipse inside the image ...
    if cfg.placement == "uniform":
        a = rng.uniform(0.22, 0.42) * s
        b = a * rng.uniform(0.5, 0.85)
        angle = rng.uniform(0, 180)
        t = math.radians(angle)
        ex = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
        ey = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
        cx = rng.uniform(ex + 1, s - 2 - ex)
        cy = rng.uniform(ey + 1, s - 2 - ey)
    else:
        a, b, angle, (cx, cy) = _placed_ellipse(rng, s, PLACEMENTS[cfg.placement])
        t = math.radians(angle)
    body = _ellipse_mask(s, (cx, cy), (a, b), angle)
    texture = _body_texture(rng, s)
    img[body] = texture[body]

    # ... carrying the class emblem near one end of its major axis
    color_name, shape = _class_spec(label)
    side = 1.0 if rng.random() < 0.5 else -1.0
    d = side * a * rng.uniform(0.45, 0.62)
    ecx, ecy = cx + d * math.cos(t), cy + d * math.sin(t)
    r = max(2.5, b * rng.uniform(0.42, 0.58))
    emblem, hole = _emblem_mask(shape, s, (ecx, ecy), r, rng)
    color = np.array(_COLORS[color_name], np.float32) * rng.uniform(0.85, 1.0) + rng.normal(0, 8, 3)
    img[emblem] = color
    img[hole] = texture[hole]

    img += rng.normal(0, 4, size=img.shape).astype(np.float32)
    mask = body | emblem | hole
    return np.clip(img, 0, 255).astype(np.uint8), mask


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def generation_folder(out: Path, key: str, stamp: dict, force: bool) -> Path | None:
    """Where a generator writes ``out``: None when ``out`` was made with the same ``stamp`` (``dataset.yaml``'s
    ``key``), reused as it is; else a fresh ``<out>.partial`` to rename at the end. A directory made otherwise, or
    any other non-empty one, is an error unless ``force``."""
    if (out / "dataset.yaml").exists():
        import yaml

        info = yaml.safe_load((out / "dataset.yaml").read_text()) or {}
        if info.get(key) == stamp and not force:
            return None
        if not force:
            raise DataError("exists with a different configuration; pass --force to replace it", out)
    elif out.exists() and any(out.iterdir()) and not force:
        raise DataError("exists and is not empty; choose another --out or pass --force", out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def make_synthetic(out: str | os.PathLike, cfg: SyntheticConfig = SyntheticConfig(), force: bool = False) -> Path:
    """Generate the benchmark into the dataset directory ``out`` (images, masks, metadata).

    An existing directory made with the same configuration is reused as it is; a different one
    is an error unless ``force``. Generation goes to ``<out>.partial`` and is renamed at the end,
    so an interrupted run never leaves a half-made dataset behind.
    """
    cfg.validate()
    out = Path(out)
    stamp = {"generator": "tedloc.synthetic", **asdict(cfg)}
    tmp = generation_folder(out, "synthetic", stamp, force)
    if tmp is None:
        return out
    names = synthetic_class_names(cfg.classes)
    slugs = [n.replace(" ", "_") for n in names]
    splits = {}
    for split_name, count in (("train", cfg.train), ("val", cfg.val), ("test", cfg.test)):
        if count == 0:
            continue
        labels = np.arange(count) % cfg.classes  # balanced classes
        ids, boxes, masks, ignores = [], [], [], []
        for i in progress(range(count), desc=f"synthetic {split_name}", unit="img"):
            label = int(labels[i])
            img, mask = render_sample(cfg, label, split_name, i)
            rel = f"{split_name}/{slugs[label]}/{split_name}_{i:05d}"
            (tmp / "images" / split_name / slugs[label]).mkdir(parents=True, exist_ok=True)
            (tmp / "masks" / split_name / slugs[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp / "images" / f"{rel}.png", compress_level=1)
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / "masks" / f"{rel}_mask.png", compress_level=1)
            Image.fromarray(np.zeros_like(mask, np.uint8)).save(tmp / "masks" / f"{rel}_ignore.png",
                                                                compress_level=1)
            ids.append(f"{rel}.png")
            boxes.append([_mask_box(mask)])
            masks.append((f"{rel}_mask.png",))
            ignores.append(f"{rel}_ignore.png")
        splits[split_name] = Split(split_name, ids, labels, np.full((count, 2), cfg.size), boxes, masks, ignores)
    dataset = WSOLDataset("synthetic", names, splits)
    save_dataset(dataset, tmp, image_root="images", mask_root="masks", extra={"synthetic": stamp})
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
