"""The built-in synthetic video benchmark (``tedloc data synthetic-video``): license-free, deterministic, seconds.

The stand-in for YouTube-Objects (:mod:`tedloc.data.video` format). Every video has one class, the tag of all its
shots. A shot is a camera segment: the camera pans over a cluttered background in which coloured blobs drift,
while one to three objects of the video's class (the synthetic benchmark's textured bodies carrying the class
emblem, :mod:`tedloc.data.synthetic`) move, scale, turn and may leave the frame, past decoy bodies without an
emblem. Some frames hold no object at all, so a frame's label is noisy, as in real videos.

Annotation, in val and test only: ``sparse`` videos have one annotated frame per shot (the first with a visible
object; YouTube-Objects v1.0's regime), ``dense`` ones every third frame with a visible object, with a box per
visible instance (v2.2's regime); ``mixed`` (the default) alternates them by video. Frame sizes differ between
videos. Objects range from a twentieth to about half of the frame and are anywhere in it, so a no-look centered box
is not already good. Instance masks of annotated frames are written too (masks.txt), for PxAP and to see why a
localizer fails. Every pixel comes from ``numpy.random.default_rng`` keyed by (seed, split, video, shot).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tedloc.data.dataset import Split, WSOLDataset
from tedloc.data.synthetic import (_COLORS, MAX_CLASSES, _body_texture, _class_spec, _ellipse_mask, _emblem_mask,
                                   generation_folder, synthetic_class_names)
from tedloc.data.wsol_format import save_dataset
from tedloc.errors import DataError
from tedloc.utils.progress import progress

__all__ = ["SyntheticVideoConfig", "make_synthetic_video", "render_shot", "ANNOTATIONS"]

ANNOTATIONS = ("sparse", "dense", "mixed")
FRAME_SIZES = ((96, 72), (80, 64), (72, 72), (88, 56))  # (width, height): mixed sizes, as real videos have
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
MIN_VISIBLE = 30  # pixels of an instance inside the frame for it to get a box


@dataclass(frozen=True)
class SyntheticVideoConfig:
    """Parameters of the synthetic video benchmark (the defaults: 10 classes, 70 videos, about 3,000 frames)."""

    classes: int = 10
    train_videos: int = 6
    val_videos: int = 2
    test_videos: int = 2
    shots: int = 4
    min_frames: int = 10
    max_frames: int = 18
    annotation: str = "mixed"
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`DataError` (naming the field) when a parameter is out of range."""
        if not 2 <= self.classes <= MAX_CLASSES:
            raise DataError(f"--classes must be in [2, {MAX_CLASSES}], got {self.classes}", field="classes")
        for name in ("train_videos", "val_videos", "test_videos"):
            if getattr(self, name) < 0:
                raise DataError(f"--{name.replace('_', '-')} must be >= 0", field=name)
        if self.shots < 1:
            raise DataError(f"--shots must be >= 1, got {self.shots}", field="shots")
        if not 2 <= self.min_frames <= self.max_frames:
            raise DataError(f"need 2 <= --min-frames <= --max-frames, got {self.min_frames} and {self.max_frames}",
                            field="min_frames")
        if self.annotation not in ANNOTATIONS:
            raise DataError(f"--annotation must be one of {', '.join(ANNOTATIONS)}", field="annotation")


@dataclass
class _Mover:
    """Something that moves across a shot: start and end centre, size, angle, and its look."""

    start: np.ndarray
    end: np.ndarray
    axis: float
    ratio: float
    scale_end: float
    angle: float
    spin: float
    texture: np.ndarray
    emblem_side: float = 1.0
    emblem_radius: float = 0.5
    emblem_color: np.ndarray | None = None
    emblem_seed: int = 0

    def at(self, t: float) -> tuple[np.ndarray, float, float, float]:
        """Centre, axes and angle at the shot's fraction ``t`` in [0, 1]."""
        centre = self.start + (self.end - self.start) * t
        a = self.axis * (1 + (self.scale_end - 1) * t)
        return centre, a, a * self.ratio, self.angle + self.spin * t


def _moving_background(rng: np.random.Generator, side: int, frames: int):
    """A cluttered canvas larger than the frame, the camera's path over it, and drifting blobs."""
    big = int(side * 1.5)
    coarse = rng.uniform(40, 215, size=(5, 5, 3)).astype(np.float32)
    canvas = cv2.resize(coarse, (big, big), interpolation=cv2.INTER_CUBIC)
    canvas += rng.normal(0, 10, size=canvas.shape).astype(np.float32)
    for _ in range(int(rng.integers(8, 16))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        p = rng.integers(0, big, 2)
        q = p + rng.integers(-big // 4, big // 4 + 1, 2)
        cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, int(rng.integers(1, 4)))
    pan_start = rng.uniform(0, big - side, 2)
    pan_end = np.clip(pan_start + rng.normal(0, side * 0.15, 2), 0, big - side)
    blobs = [(rng.uniform(0, side, 2), rng.normal(0, side * 0.3, 2), rng.uniform(2, side / 14),
              tuple(float(c) for c in rng.uniform(0, 255, 3))) for _ in range(int(rng.integers(1, 4)))]
    return canvas, pan_start, pan_end, blobs


def _object(rng: np.random.Generator, side: int, label: int, frame_size: tuple[int, int]) -> _Mover:
    w, h = frame_size
    axis = rng.uniform(0.2, 0.42) * min(w, h)
    start = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
    leaves = rng.random() < 0.3  # some objects walk out of the frame
    travel = rng.uniform(0.8, 1.4) * max(w, h) if leaves else rng.uniform(0.0, 0.45) * min(w, h)
    heading = rng.uniform(0, 2 * math.pi)
    end = start + travel * np.array([math.cos(heading), math.sin(heading)])
    color_name, _ = _class_spec(label)
    color = np.array(_COLORS[color_name], np.float32) * rng.uniform(0.85, 1.0) + rng.normal(0, 8, 3)
    return _Mover(start, end, axis, rng.uniform(0.5, 0.85), rng.uniform(0.7, 1.4), rng.uniform(0, 180),
                  rng.uniform(-40, 40), _body_texture(rng, side), 1.0 if rng.random() < 0.5 else -1.0,
                  rng.uniform(0.42, 0.58), color, int(rng.integers(0, 2 ** 31)))


def _decoy(rng: np.random.Generator, side: int, frame_size: tuple[int, int]) -> _Mover:
    w, h = frame_size
    start = rng.uniform([0, 0], [w, h])
    end = start + rng.normal(0, min(w, h) * 0.3, 2)
    return _Mover(start, end, rng.uniform(0.08, 0.2) * min(w, h), rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.2),
                  rng.uniform(0, 180), rng.uniform(-30, 30), _body_texture(rng, side))


def render_shot(cfg: SyntheticVideoConfig, label: int, split: str, video: int, shot: int, frame_size: tuple[int, int]
                ) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """The frames (uint8 HxWx3) of one shot and, per frame, the visible mask (bool HxW) of each object instance."""
    w, h = frame_size
    side = max(w, h)
    rng = np.random.default_rng([cfg.seed, _SPLIT_CODES.get(split, 3), label, video, shot])
    frames = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
    canvas, pan_start, pan_end, blobs = _moving_background(rng, side, frames)
    count = 1 + int(rng.random() < 0.25) + int(rng.random() < 0.1)
    objects = [_object(rng, side, label, frame_size) for _ in range(count)]
    decoys = [_decoy(rng, side, frame_size) for _ in range(int(rng.integers(0, 2)))]
    _, shape = _class_spec(label)
    images, masks = [], []
    for f in range(frames):
        t = f / max(1, frames - 1)
        x0, y0 = (pan_start + (pan_end - pan_start) * t).astype(int)
        img = canvas[y0:y0 + side, x0:x0 + side].copy()
        for position, velocity, radius, color in blobs:
            p = position + velocity * t
            cv2.circle(img, (int(p[0]), int(p[1])), max(1, int(radius)), color, -1)
        for decoy in decoys:
            centre, a, b, angle = decoy.at(t)
            m = _ellipse_mask(side, centre, (a, b), angle)
            img[m] = decoy.texture[m]
        frame_masks = []
        for obj in objects:
            centre, a, b, angle = obj.at(t)
            body = _ellipse_mask(side, centre, (a, b), angle)
            img[body] = obj.texture[body]
            rad = math.radians(angle)
            d = obj.emblem_side * a * 0.55
            emblem, hole = _emblem_mask(shape, side, (centre[0] + d * math.cos(rad), centre[1] + d * math.sin(rad)),
                                        max(2.0, b * obj.emblem_radius), np.random.default_rng(obj.emblem_seed))
            img[emblem] = obj.emblem_color
            img[hole] = obj.texture[hole]
            frame_masks.append((body | emblem | hole)[:h, :w])
        img += rng.normal(0, 4, size=img.shape).astype(np.float32)
        images.append(np.clip(img[:h, :w], 0, 255).astype(np.uint8))
        masks.append(frame_masks)
    return images, masks


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _annotated(masks: list[list[np.ndarray]], dense: bool) -> list[int]:
    """The annotated frames of a shot: the first with a visible instance, or every third one that has one."""
    visible = [f for f, frame in enumerate(masks) if any(m.sum() >= MIN_VISIBLE for m in frame)]
    if not dense:
        return visible[:1]
    return [f for f in visible if f % 3 == 0] or visible[:1]


def make_synthetic_video(out: str | os.PathLike, cfg: SyntheticVideoConfig = SyntheticVideoConfig(),
                         force: bool = False) -> Path:
    """Generate the benchmark into the dataset directory ``out``: frames (JPEG), masks of annotated frames, metadata.

    An existing directory made with the same configuration is reused; a different one is an error unless
    ``force``. Generation goes to ``<out>.partial``, renamed at the end.
    """
    cfg.validate()
    out = Path(out)
    stamp = {"generator": "tedloc.synthetic_video", **asdict(cfg)}
    tmp = generation_folder(out, "synthetic_video", stamp, force)
    if tmp is None:
        return out
    names = synthetic_class_names(cfg.classes)
    slugs = [n.replace(" ", "_") for n in names]
    splits, stats = {}, {}
    for split_name, videos in (("train", cfg.train_videos), ("val", cfg.val_videos), ("test", cfg.test_videos)):
        if videos == 0:
            continue
        ids, labels, sizes, boxes, masks = [], [], [], [], []
        frames_total = 0
        jobs = [(label, v) for v in range(videos) for label in range(cfg.classes)]
        for label, v in progress(jobs, desc=f"synthetic video {split_name}", unit="video"):
            frame_size = FRAME_SIZES[(label + v) % len(FRAME_SIZES)]
            dense = cfg.annotation == "dense" or (cfg.annotation == "mixed" and v % 2 == 1)
            for s in range(cfg.shots):
                shot_id = f"{split_name}/{slugs[label]}/video-{v:03d}/shot-{s:03d}"
                folder = tmp / "images" / shot_id
                folder.mkdir(parents=True, exist_ok=True)
                images, instance_masks = render_shot(cfg, label, split_name, v, s, frame_size)
                frames_total += len(images)
                for f, img in enumerate(images):
                    Image.fromarray(img).save(folder / f"frame{f + 1:04d}.jpg", quality=92)
                if split_name == "train":
                    ids.append(shot_id)
                    labels.append(label)
                    sizes.append((-1, -1))
                    boxes.append(np.zeros((0, 4), np.int64))
                    masks.append(())
                    continue
                for f in _annotated(instance_masks, dense):
                    frame_id = f"{shot_id}/frame{f + 1:04d}.jpg"
                    visible = [m for m in instance_masks[f] if m.sum() >= MIN_VISIBLE]
                    (tmp / "masks" / shot_id).mkdir(parents=True, exist_ok=True)
                    mask_ids = []
                    for k, m in enumerate(visible):
                        mask_id = f"{shot_id}/frame{f + 1:04d}_{k}.png"
                        Image.fromarray(m.astype(np.uint8) * 255).save(tmp / "masks" / mask_id, compress_level=1)
                        mask_ids.append(mask_id)
                    ids.append(frame_id)
                    labels.append(label)
                    sizes.append(frame_size)
                    boxes.append(np.array([_box(m) for m in visible], np.int64))
                    masks.append(tuple(mask_ids))
        split = Split(split_name, ids, labels, sizes, boxes, mask_paths=masks,
                      ignore_paths=[None] * len(ids), shots=split_name == "train")
        splits[split_name] = split
        stats[split_name] = {"videos": videos * cfg.classes, "shots": videos * cfg.classes * cfg.shots,
                             "frames": frames_total, "ids": len(ids), "boxes": split.num_boxes}
    dataset = WSOLDataset("synthetic-video", names, splits, kind="video")
    save_dataset(dataset, tmp, image_root="images", mask_root="masks", extra={"synthetic_video": stamp})
    (tmp / "statistics.json").write_text(json.dumps(stats, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
