"""Reading and writing videos, one frame at a time, for ``tedloc predict some.mp4``.

A video is a file (:data:`VIDEO_SUFFIXES`, decoded with PyAV) or a *frames folder*: a directory whose
image files (:data:`FRAME_SUFFIXES`, directly inside it) are the frames, in natural name order.

- :class:`VideoReader` streams :class:`VideoFrame` s: memory holds one decoded frame at a time, whatever
  the video's length; ``max_side`` shrinks large frames as they come. Frame times come from each frame's
  presentation timestamp, so variable frame rate videos get their true times.
- Damaged input is read as far as it goes: a truncated or partly corrupt file yields the frames that
  decode and notes what went wrong in :attr:`VideoReader.problems`; a bad image in a frames folder is
  skipped and noted. Only a video of which no frame decodes is an error (:class:`DataError`).
- :class:`VideoWriter` writes H.264 (``libx264``, else MPEG-4 Part 2) in ``.mp4``/``.mov``/``.m4v``/``.mkv``,
  MPEG-4 Part 2 in ``.avi`` (AVI stores no presentation times, which H.264's reordered frames need), and
  VP9 (else VP8) in ``.webm``. The file appears only when complete (temporary file, then ``os.replace``).

PyAV is imported only when a video is opened: ``import tedloc.data.video_io`` works without it.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import numpy as np
from PIL import Image

from tedloc.data.images import load_image, read_image_size
from tedloc.data.video import FRAME_SUFFIXES, frame_names, is_frame_name
from tedloc.errors import DataError, OptionError, TedlocError

__all__ = ["FRAME_SUFFIXES", "VIDEO_SUFFIXES", "VideoFrame", "VideoInfo", "VideoReader", "VideoWriter",
           "is_video_input", "probe_video"]

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")

_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                      ".avi": "avi"}
_FASTSTART_FORMATS = ("mp4", "mov")  # index (moov atom) moved to the front: playable while downloading
_MAX_BAD_PACKETS_IN_A_ROW = 100  # consecutive undecodable packets after which reading stops
_BITS_PER_PIXEL = 0.2  # bit rate of the encoders without a constant-quality mode (MPEG-4, VP8)
_MIN_BIT_RATE = 1_000_000


def _import_av() -> Any:
    """The ``av`` module, or a :class:`TedlocError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise TedlocError("reading videos needs PyAV: pip install av") from None
    return av


def _reason(error: BaseException) -> str:
    """The words of an exception without PyAV's ``[Errno N]`` and file name."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _av_errors(av: Any) -> tuple[type[BaseException], ...]:
    """The exceptions that damaged or unreadable video data raises in PyAV."""
    return (av.FFmpegError, OSError, ValueError, EOFError, UnicodeDecodeError)


def _count(n: int, noun: str) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _positive_fps(fps: object) -> float:
    """``fps`` as a float, or an :class:`OptionError` unless it is a positive finite number."""
    try:
        value = float(fps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(fps, bool) or not math.isfinite(value) or value <= 0:
        raise OptionError(f"fps must be a positive number, got {fps!r}")
    return value


def _frame_files(folder: Path) -> list[Path]:
    """The frame images directly inside ``folder``, in natural name order (:func:`tedloc.data.video.frame_names`)."""
    return [folder / name for name in frame_names(folder)]


def is_video_input(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a video file (by suffix) or a frames folder (image files directly inside)."""
    path = Path(path)
    try:
        if path.is_file():
            return path.suffix.lower() in VIDEO_SUFFIXES
        return path.is_dir() and any(p.is_file() and is_frame_name(p.name) for p in path.iterdir())
    except OSError:
        return False


def _fit(image: Image.Image, max_side: int | None) -> Image.Image:
    """``image`` shrunk (aspect kept, bilinear) so that its longer side is at most ``max_side``."""
    width, height = image.size
    if max_side is None or max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.BILINEAR)


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: its 0-based position, its time in seconds, its RGB image."""

    index: int
    time: float
    image: Image.Image


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says (a frames folder: its files and the ``fps`` given).

    ``width`` and ``height`` are the stored size (frames may be smaller with ``max_side``); ``frames``
    is the container's count, ``None`` when it has none; ``variable_frame_rate`` is a guess from the
    header until :class:`VideoReader` has read the frames, then it says whether their times were regular.
    """

    path: str
    fps: float
    frames: int | None
    width: int
    height: int
    variable_frame_rate: bool


class _Clock:
    """Frame times from timestamps, choosing pts or dts as FFmpeg's ``best_effort_timestamp`` does.

    Times strictly increase: a frame without a timestamp, or whose timestamp does not come after the
    previous frame's (damaged files, H.264 with B-frames in AVI), follows the previous frame by
    ``1 / fps`` and is counted in :attr:`out_of_order` (the latter only). Also tracks whether the
    time steps were regular.
    """

    def __init__(self, time_base: Fraction, start: int, fps: float):
        self.time_base, self.start, self.fps = time_base, start, fps
        self.faulty_pts = self.faulty_dts = 0
        self.out_of_order = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None
        self.last_stamp: int | None = None
        self.last_time: float | None = None
        self.min_step: int | None = None
        self.max_step: int | None = None

    def time(self, pts: int | None, dts: int | None, index: int) -> float:
        """The time in seconds of the frame with these timestamps, from the stream's start."""
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        stamp = pts if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None) else dts
        time = None if stamp is None else float((stamp - self.start) * self.time_base)
        if time is not None and self.last_time is not None and time <= self.last_time + 1e-6:
            self.out_of_order += 1
            time = None
        if time is None:
            time = index / self.fps if self.last_time is None else self.last_time + 1 / self.fps
            self.last_stamp = None  # no step is measured across an estimated time
        else:
            if self.last_stamp is not None:
                step = stamp - self.last_stamp
                self.min_step = step if self.min_step is None else min(self.min_step, step)
                self.max_step = step if self.max_step is None else max(self.max_step, step)
            self.last_stamp = stamp
        self.last_time = time
        return time

    @property
    def variable(self) -> bool:
        """Whether the time steps differed by more than rounding (1 tick, or 1% of the step)."""
        if self.min_step is None or self.max_step is None:
            return False
        return self.max_step - self.min_step > max(1, 0.01 * abs(self.max_step))


class VideoReader:
    """Stream the frames of a video file or a frames folder (see the module docstring).

    Args:
        path: a video file or a frames folder.
        fps: the frame rate of a frames folder, and of a file whose header has none.
        max_side: shrink frames whose longer side exceeds it (aspect kept, bilinear); ``None`` keeps them.

    Opening reads only the header (:attr:`info`); a file that cannot be opened or has no video stream
    raises :class:`DataError`. Iterating decodes from the start each time. After an iteration,
    :attr:`problems` lists what could not be read (one line each, naming the file) and
    :attr:`variable_frame_rate` says whether the frame times were irregular.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, max_side: int | None = None):
        fps = _positive_fps(fps)
        if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
            raise OptionError(f"max_side must be a positive integer or None, got {max_side!r}")
        self.path = Path(path)
        self.fps = fps
        self.max_side = max_side
        self.problems: list[str] = []
        self.variable_frame_rate: bool | None = None
        self._container: Any = None
        self._frame_files: list[Path] | None = None
        self._used = False
        if self.path.is_dir():
            self.info = self._open_folder()
        else:
            self._container, self.info = self._open_file()

    def _open_folder(self) -> VideoInfo:
        """List the frame files and read the size of the first readable one."""
        self._frame_files = _frame_files(self.path)
        if not self._frame_files:
            kinds = ", ".join(s[1:] for s in FRAME_SUFFIXES)
            raise DataError(f"no frames ({kinds} files) in this folder", self.path)
        size = None
        for file in self._frame_files:
            try:
                size = read_image_size(file)
                break
            except DataError:
                continue
        if size is None:
            raise DataError("no frame could be decoded: none of the frame images is readable", self.path)
        return VideoInfo(str(self.path), self.fps, len(self._frame_files), size[0], size[1], False)

    def _open_file(self) -> tuple[Any, VideoInfo]:
        """Open the container and describe its first video stream from the header."""
        av = _import_av()
        if not self.path.exists():
            raise DataError("video file not found", self.path)
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except _av_errors(av) as e:
            raise DataError(f"cannot open video (not a video, or a damaged or truncated file): {_reason(e)}",
                            self.path) from None
        if not container.streams.video:
            container.close()
            raise DataError("no video stream in this file", self.path)
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else self.fps
        average, base = stream.average_rate, stream.base_rate
        variable = bool(average and base and abs(float(average) - float(base)) > 0.01 * float(base))
        info = VideoInfo(str(self.path), fps, stream.frames or None, stream.codec_context.width,
                         stream.codec_context.height, variable)
        return container, info

    def __iter__(self) -> Iterator[VideoFrame]:
        """The frames, decoded one at a time (a generator: nothing is kept once yielded)."""
        if self._frame_files is not None:
            return self._folder_frames()
        return self._file_frames()

    def _folder_frames(self) -> Iterator[VideoFrame]:
        """The images of a frames folder; a bad one is skipped and noted (its index stays unused)."""
        self.problems = []
        yielded = 0
        for index, file in enumerate(self._frame_files or []):
            try:
                image = load_image(file)
            except DataError as e:
                self.problems.append(str(e).splitlines()[0])
                continue
            yielded += 1
            yield VideoFrame(index, index / self.fps, _fit(image, self.max_side))
        self.variable_frame_rate = False
        self.info = replace(self.info, variable_frame_rate=False)
        if not yielded:
            raise DataError("no frame could be decoded: none of the frame images is readable", self.path)

    def _file_frames(self) -> Iterator[VideoFrame]:
        """Decode packet by packet; undecodable packets are skipped, a demuxing error ends the video."""
        av = _import_av()
        errors = _av_errors(av)
        if self._used or self._container is None:
            self.close()
            self._container, _ = self._open_file()
        self._used = True
        self.problems = []
        container = self._container
        stream = container.streams.video[0]
        clock = _Clock(stream.time_base or Fraction(1, 1), stream.start_time or 0, self.info.fps)
        packets = container.demux(stream)
        count = bad_packets = bad_in_a_row = corrupt = 0
        first_bad = stopped = None
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except errors as e:
                stopped = e
                break
            try:
                decoded = packet.decode()  # usually one frame; the last (flushing) packet gives the rest
            except errors as e:
                bad_packets += 1
                bad_in_a_row += 1
                first_bad = first_bad or f"at frame {count}: {_reason(e)}"
                if bad_in_a_row >= _MAX_BAD_PACKETS_IN_A_ROW:
                    stopped = e
                    break
                continue
            bad_in_a_row = 0
            while decoded:
                frame = decoded.pop(0)
                try:
                    image = frame.to_image()
                except errors as e:
                    bad_packets += 1
                    first_bad = first_bad or f"at frame {count}: {_reason(e)}"
                    continue
                corrupt += bool(frame.is_corrupt)
                time = clock.time(frame.pts, frame.dts, count)
                del frame
                yield VideoFrame(count, time, _fit(image, self.max_side))
                count += 1
        self._note_problems(stream, count, bad_packets, first_bad, corrupt, stopped, clock)
        self.variable_frame_rate = clock.variable
        self.info = replace(self.info, variable_frame_rate=clock.variable)
        if not count:
            reason = f": {_reason(stopped)}" if stopped else f" ({first_bad})" if first_bad else ""
            raise DataError(f"no frame could be decoded{reason}", self.path)

    def _note_problems(self, stream: Any, count: int, bad_packets: int, first_bad: str | None, corrupt: int,
                       stopped: BaseException | None, clock: _Clock) -> None:
        """Record in :attr:`problems` what a pass over a file could not read."""
        where = str(self.path)
        if bad_packets:
            bad = _count(bad_packets, "packet")
            self.problems.append(f"{where}: {bad} could not be decoded (first {first_bad})")
        if corrupt:
            self.problems.append(f"{where}: {_count(corrupt, 'frame')} decoded from damaged data")
        if clock.out_of_order:
            reordered = _count(clock.out_of_order, "frame")
            self.problems.append(f"{where}: {reordered} with timestamps out of order, timed by frame rate")
        decoded = _count(count, "frame")
        if stopped is not None:
            self.problems.append(f"{where}: decoding stopped after {decoded}: {_reason(stopped)}")
            return
        if self.info.frames is not None and count < self.info.frames:
            announced = self.info.frames
            self.problems.append(f"{where}: only {count} of the {announced} frames in the header could be "
                                 "decoded (damaged or truncated file)")
            return
        duration = self._duration(stream)
        if count and duration is not None and clock.last_time is not None:
            end = clock.last_time + 1 / self.info.fps
            if duration - end > max(2 / self.info.fps, 0.05 * duration):
                self.problems.append(f"{where}: decoding stopped after {decoded}, at {end:.2f} s of the "
                                     f"{duration:.2f} s in the header (damaged or truncated file)")

    def _duration(self, stream: Any) -> float | None:
        """The video stream's duration in seconds from the header (or the file's, if no other stream)."""
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if self._container.duration and len(self._container.streams) == 1:
            return self._container.duration / 1_000_000
        return None

    def close(self) -> None:
        """Close the file (a frames folder holds nothing open)."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def probe_video(path: str | os.PathLike, fps: float = 25.0) -> VideoInfo:
    """The :class:`VideoInfo` of a video file or frames folder, from its header only."""
    with VideoReader(path, fps=fps) as reader:
        return reader.info


def _default_codec(av: Any, suffix: str, path: Path) -> str:
    """The encoder for a container: VP9/VP8 for WebM, MPEG-4 for AVI, else H.264 when available."""
    available = av.codecs_available
    if suffix == ".webm":
        for name in ("libvpx-vp9", "libvpx"):
            if name in available:
                return name
        raise DataError("cannot write .webm: this PyAV has no VP9 or VP8 encoder (use .mp4)", path)
    if suffix != ".avi" and "libx264" in available:
        return "libx264"
    return "mpeg4"


class VideoWriter:
    """Write RGB frames to a video file, atomically; a context manager.

    Args:
        path: the output file; its suffix (``.mp4``, ``.mov``, ``.m4v``, ``.mkv``, ``.avi``, ``.webm``) picks
            the container.
        fps: frames per second, fractional allowed (stored as a fraction with denominator at most 1001).
        codec: a PyAV encoder name; default as in the module docstring, with pixel format yuv420p.

    The first frame fixes the size; later frames of another size are resized to it (bilinear). An odd
    width or height is padded to even (yuv420p needs it) by repeating the last column or row, so every
    written pixel keeps its coordinates. Frames go to a hidden temporary file beside ``path``
    (``.NAME.tmp-PID.SUFFIX``), moved onto ``path`` by :meth:`close`; on an exception inside ``with``,
    or :meth:`abort`, the temporary file is removed and ``path`` is left untouched.
    """

    def __init__(self, path: str | os.PathLike, fps: float, codec: str | None = None):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _CONTAINER_FORMATS:
            raise DataError(f"cannot write a video with suffix {suffix!r}: use one of "
                            f"{', '.join(_CONTAINER_FORMATS)}", self.path)
        self.fps = _positive_fps(fps)
        self._av = _import_av()
        self.codec = codec or _default_codec(self._av, suffix, self.path)
        try:
            is_video_encoder = self._av.Codec(self.codec, "w").type == "video"
        except ValueError:  # PyAV's UnknownCodecError
            is_video_encoder = False
        if not is_video_encoder:
            raise OptionError(f"{self.codec!r} is not a video encoder of this PyAV")
        exact = fps if isinstance(fps, Fraction) else Fraction(self.fps)
        self.rate = exact.limit_denominator(1001)
        self.format = _CONTAINER_FORMATS[suffix]
        self.frames_written = 0
        self.size: tuple[int, int] | None = None
        self._temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}{suffix}")
        self._container: Any = None
        self._stream: Any = None
        self._closed = False

    def _start(self, width: int, height: int) -> None:
        """Open the temporary file and the encoder for frames of this (even) size."""
        av = self._av
        options = {"movflags": "+faststart"} if self.format in _FASTSTART_FORMATS else {}
        codec_options = {}
        if self.codec == "libvpx-vp9":
            codec_options = {"crf": "32", "b": "0", "cpu-used": "4", "row-mt": "1"}
        try:
            self._container = av.open(str(self._temp), "w", format=self.format, container_options=options)
            stream = self._container.add_stream(self.codec, rate=self.rate, options=codec_options)
            stream.width, stream.height = width, height
            formats = [f.name for f in (av.Codec(self.codec, "w").video_formats or [])]
            stream.pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
            if self.codec in ("mpeg4", "libvpx"):
                bit_rate = int(width * height * float(self.rate) * _BITS_PER_PIXEL)
                stream.codec_context.bit_rate = max(_MIN_BIT_RATE, bit_rate)
            self._stream = stream
        except _av_errors(av) as e:
            self.abort()
            raise DataError(f"cannot write video: {_reason(e)}", self.path) from None

    def _as_array(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """``image`` as an H x W x 3 uint8 array of the video's size (the first frame's, even)."""
        if isinstance(image, Image.Image):
            if self.size is not None and image.size != self.size:
                image = image.resize(self.size, Image.BILINEAR)
            array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        elif isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an H x W x 3 uint8 array, got {image.shape} {image.dtype}")
            array = image
            if self.size is not None and (array.shape[1], array.shape[0]) != self.size:
                array = np.asarray(Image.fromarray(array).resize(self.size, Image.BILINEAR))
        else:
            raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
        if self.size is None:
            self.size = (array.shape[1], array.shape[0])
        height, width = array.shape[:2]
        if width % 2 or height % 2:
            array = np.pad(array, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        return np.ascontiguousarray(array)

    def write(self, image: Image.Image | np.ndarray) -> None:
        """Append one frame (a PIL image, or an H x W x 3 uint8 RGB array)."""
        if self._closed:
            raise ValueError(f"{self.path}: the video writer is closed")
        array = self._as_array(image)
        av = self._av
        if self._container is None:
            self._start(array.shape[1], array.shape[0])
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = 1 / self.rate
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except _av_errors(av) as e:
            self.abort()
            raise DataError(f"cannot write video: {_reason(e)}", self.path) from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it onto ``path``; a writer without frames writes nothing and raises."""
        if self._closed:
            return
        if self._container is None:
            self._closed = True
            raise DataError("no frame was written, so no video was created", self.path)
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._temp, self.path)
        except _av_errors(self._av) as e:
            self.abort()
            raise DataError(f"cannot write video: {_reason(e)}", self.path) from None
        self._closed = True

    def abort(self) -> None:
        """Give up: close the encoder and remove the temporary file (``path`` is left untouched)."""
        self._closed = True
        if self._container is not None:
            with suppress(*_av_errors(self._av)):  # the file is thrown away: its errors do not matter
                self._container.close()
            self._container = None
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
