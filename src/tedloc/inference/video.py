"""Label-free inference on a video (a file PyAV decodes, or a folder of frames), streamed in bounded memory.

    from tedloc import Localizer
    from tedloc.inference.video import predict_video
    summary = predict_video(Localizer.from_run("runs/trcamv"), "clip.mp4", "out/")

Frames are decoded one at a time (frames larger than ``max_side`` on their long side are reduced while decoding)
and predicted a batch at a time, as :class:`~tedloc.inference.Localizer` predicts images. ``out`` receives:

- ``<name>.frames.jsonl``: one record per decoded frame: ``frame`` (index), ``time`` (seconds, from the stream's
  timestamps: right for variable frame rates), ``top_classes``, ``box`` (x0, y0, x1, y1 in the video's pixels,
  inclusive), and ``video_class``, the class of the whole video: the top class of the frames' mean probabilities;
- ``<name>.maps.npy``: the maps, float16 (frames, h, w), at the frames' size up to ``map_max_side``;
- ``<name>.annotated.mp4``: the frames with their map overlaid and their box, at the input's frame rate;
- ``<name>.video.json``: the summary (frames, fps, size, video class, problems met while decoding).

**Temporal smoothing** (``box_smoothing`` in (0, 1), off by default): each frame's box becomes the exponential
moving average ``a * box + (1 - a) * previous`` (causal: a frame's box depends only on the frames before it);
the unsmoothed box is kept as ``box_raw``. It steadies boxes on a static object and lags behind a moving one.

A video that cannot be opened or decoded raises a :class:`~tedloc.errors.DataError` naming the file; a truncated
or partly corrupt one gives the frames that decode and lists the problem in the summary.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tedloc.data.video_io import VideoReader, VideoWriter
from tedloc.errors import TedlocError
from tedloc.inference import Localizer, Prediction
from tedloc.utils.io import atomic_write, atomic_write_text

__all__ = ["VideoSummary", "predict_video"]


@dataclass
class VideoSummary:
    """What :func:`predict_video` found: frame count, the video's class, the files written, decoding problems."""

    source: str
    frames: int
    fps: float
    size: tuple[int, int]
    video_class: tuple[int, str, float]
    files: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-friendly record."""
        index, name, score = self.video_class
        return {"video": self.source, "frames": self.frames, "fps": self.fps, "width": self.size[0],
                "height": self.size[1], "video_class": {"index": index, "name": name, "score": score},
                "files": self.files, "problems": self.problems}


def _scaled_box(box, frame_size: tuple[int, int], video_size: tuple[int, int]) -> list[int]:
    """A box of a (reduced) frame in the video's pixels."""
    if tuple(frame_size) == tuple(video_size):
        return [int(v) for v in box]
    sx, sy = video_size[0] / frame_size[0], video_size[1] / frame_size[1]
    x0, y0, x1, y1 = box
    return [int(x0 * sx), int(y0 * sy), min(int((x1 + 1) * sx) - 1, video_size[0] - 1),
            min(int((y1 + 1) * sy) - 1, video_size[1] - 1)]


def predict_video(localizer: Localizer, source: str | os.PathLike, out: str | os.PathLike | None = None, *,
                  name: str | None = None, box_smoothing: float = 0.0, annotated: bool = True, fps: float = 25.0,
                  max_side: int | None = 1024) -> VideoSummary:
    """Predict every frame of the video ``source`` and write the files of the module docstring into ``out``
    (nothing written when None). ``fps``: the rate of a frames folder; ``max_side``: frames are decoded reduced
    to this long side (None: full size)."""
    if not 0 <= box_smoothing < 1:
        raise TedlocError(f"box smoothing must be in [0, 1) (0: off), got {box_smoothing}")
    source = Path(source)
    name = name or source.stem
    out = None if out is None else Path(out)
    with VideoReader(source, fps=fps, max_side=max_side) as reader:
        info = reader.info
        video_size = (info.width, info.height)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        paths = {} if out is None else {"records": out / f"{name}.frames.jsonl", "maps": out / f"{name}.maps.npy",
                                        "annotated": out / f"{name}.annotated.mp4", "summary": out / f"{name}.video.json"}
        partial_records = None if out is None else out / f".{name}.frames.jsonl.partial"
        partial_maps = None if out is None else out / f".{name}.maps.raw.partial"
        records = None if out is None else open(partial_records, "w", encoding="utf-8")
        maps = None if out is None else open(partial_maps, "wb")
        writer = VideoWriter(paths["annotated"], fps=info.fps) if out is not None and annotated else None
        total = np.zeros(len(localizer.class_names))
        count, previous, map_shape = 0, None, None
        try:
            batch: list = []
            frames = iter(reader)
            while True:
                frame = next(frames, None)
                if frame is not None:
                    batch.append(frame)
                if batch and (frame is None or len(batch) == localizer.batch_size):
                    predictions = localizer([f.image for f in batch])
                    for f, p in zip(batch, predictions):
                        previous = _emit(f, p, previous, box_smoothing, video_size, records, maps, writer)
                        map_shape = p.map.shape
                        total += p.scores
                        count += 1
                    batch = []
                if frame is None:
                    break
        except BaseException:
            for handle in (records, maps):
                if handle is not None:
                    handle.close()
            for partial in (partial_records, partial_maps):
                if partial is not None:
                    partial.unlink(missing_ok=True)
            if writer is not None:
                writer.abort()
            raise
        problems = list(reader.problems)
    k = int(np.argmax(total))
    summary = VideoSummary(str(source), count, float(info.fps), video_size,
                           (k, localizer.class_names[k], float(total[k] / max(count, 1))), problems=problems)
    if out is not None:
        if writer is not None:
            writer.close()
        records.close()
        maps.close()
        _finish_records(partial_records, paths["records"], summary)
        _finish_maps(partial_maps, paths["maps"], (count, *map_shape))
        summary.files = {key: str(path) for key, path in paths.items() if key != "annotated" or annotated}
        atomic_write_text(paths["summary"], json.dumps(summary.to_dict(), indent=1) + "\n")
    return summary


def _emit(frame, p: Prediction, previous, smoothing: float, video_size, records, maps, writer):
    """Write one frame's record, map and annotated frame; returns its (smoothed) box for the next frame."""
    box = np.asarray(p.box, dtype=np.float64)
    smoothed = box if previous is None or not smoothing else smoothing * box + (1 - smoothing) * previous
    if records is not None:
        record = {"frame": frame.index, "time": round(frame.time, 6),
                  "top_classes": [{"index": i, "name": n, "score": s} for i, n, s in p.top_classes],
                  "box": _scaled_box(np.round(smoothed).astype(int), p.size, video_size)}
        if smoothing:
            record["box_raw"] = _scaled_box(p.box, p.size, video_size)
        records.write(json.dumps(record) + "\n")
        maps.write(p.map.astype(np.float16).tobytes())
    if writer is not None:
        from PIL import Image

        from tedloc.viz import render_overlay

        map_size = (p.map.shape[1], p.map.shape[0])
        image = frame.image if frame.image.size == map_size else frame.image.resize(map_size, Image.BILINEAR)
        writer.write(render_overlay(image, p.map, tuple(int(v) for v in np.round(smoothed)),
                                    caption=f"{p.label} {p.top_classes[0][2]:.2f}", boxes_in=p.size))
    return smoothed


def _finish_records(partial: Path, final: Path, summary: VideoSummary) -> None:
    """Add the video's class to every record, then put the file in place."""
    index, name, score = summary.video_class
    video_class = {"index": index, "name": name, "score": score}
    with open(partial, encoding="utf-8") as src, atomic_write(final, "w") as dst:
        for line in src:
            dst.write(json.dumps({**json.loads(line), "video_class": video_class}) + "\n")
    partial.unlink()


def _finish_maps(partial: Path, final: Path, shape: tuple[int, ...]) -> None:
    """The raw float16 maps as one ``.npy`` of ``shape``, written a frame at a time."""
    frame_bytes = int(np.prod(shape[1:])) * 2
    with open(partial, "rb") as src, atomic_write(final, "wb") as dst:
        np.lib.format.write_array_header_1_0(dst, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                                                   "fortran_order": False, "shape": tuple(shape)})
        while chunk := src.read(frame_bytes * 64):
            dst.write(chunk)
    partial.unlink()
