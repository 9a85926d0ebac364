"""Videos stream frame by frame with true times; damaged input is read as far as it goes; atomic writes."""
from __future__ import annotations

import inspect
import itertools
import os
import subprocess
import sys
import weakref
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from tedloc.data.video_io import (
    FRAME_SUFFIXES,
    VIDEO_SUFFIXES,
    VideoFrame,
    VideoReader,
    VideoWriter,
    is_video_input,
    probe_video,
)
from tedloc.errors import DataError, TedlocError

av = pytest.importorskip("av")

SIZE = (64, 48)  # width, height


def _colour(i: int) -> tuple[int, int, int]:
    """A distinct, mid-range solid colour for frame ``i``."""
    return (40 + 15 * i % 180, 200 - 9 * i % 160, 60 + 25 * i % 150)


def _solid(i: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.full((size[1], size[0], 3), _colour(i), np.uint8)


def _write(path, frames: int = 12, fps: float = 10.0, size: tuple[int, int] = SIZE, codec: str | None = None):
    with VideoWriter(path, fps, codec=codec) as writer:
        for i in range(frames):
            writer.write(_solid(i, size))
    return path


def _noisy_video(path, frames: int = 30):
    """Random frames (large packets), so that cutting the file cuts the frame data."""
    rng = np.random.default_rng(0)
    with VideoWriter(path, 30) as writer:
        for _ in range(frames):
            writer.write(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8))
    return path


def _pyav_video(path, codec: str, frames: int = 30) -> None:
    """``frames`` solid frames at 30 fps written by PyAV itself (its own container defaults, not VideoWriter's)."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=30)
    stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
    for i in range(frames):
        for packet in stream.encode(av.VideoFrame.from_ndarray(_solid(i), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()


def _has_encoder(*names: str) -> bool:
    return any(name in av.codecs_available for name in names)


def _raises_naming(path, call):
    with pytest.raises(DataError) as info:
        call()
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    return str(info.value)


# --- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, frames_in_header",
                         [(".mp4", 12), (".avi", 12), (".mkv", None), (".webm", None), (".mov", 12),
                          (".m4v", 12)])
def test_round_trip_keeps_count_size_times_and_colours(tmp_path, suffix, frames_in_header):
    if suffix == ".webm" and not _has_encoder("libvpx-vp9", "libvpx"):
        pytest.skip("this PyAV has no VP9/VP8 encoder")
    path = _write(tmp_path / f"v{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"v{suffix}"]  # no temporary file left
    with VideoReader(path) as reader:
        assert reader.info.path == str(path)
        assert (reader.info.fps, reader.info.frames) == (10.0, frames_in_header)
        assert (reader.info.width, reader.info.height) == SIZE
        frames = list(reader)
    assert [f.index for f in frames] == list(range(12))
    assert all(isinstance(f, VideoFrame) and f.image.mode == "RGB" and f.image.size == SIZE for f in frames)
    times = [f.time for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times == pytest.approx([i / 10 for i in range(12)], abs=1e-3)
    for i, frame in enumerate(frames):
        mean = np.asarray(frame.image, np.float64).mean(axis=(0, 1))
        assert np.abs(mean - _colour(i)).max() <= 8, (i, mean, _colour(i))
    assert reader.problems == [] and reader.variable_frame_rate is False
    assert reader.info.variable_frame_rate is False


def test_default_codecs_per_container(tmp_path):
    expected = {".mp4": "libx264" if _has_encoder("libx264") else "mpeg4", ".avi": "mpeg4"}
    for suffix, codec in expected.items():
        assert VideoWriter(tmp_path / f"v{suffix}", 10).codec == codec
    assert list(tmp_path.iterdir()) == []  # a writer without frames creates nothing until closed


def test_fractional_fps_is_kept(tmp_path):
    writer = VideoWriter(tmp_path / "v.mp4", 29.97)
    assert writer.rate == Fraction(2997, 100)
    with writer:
        for i in range(6):
            writer.write(Image.fromarray(_solid(i)))
    with VideoReader(tmp_path / "v.mp4") as reader:
        assert reader.info.fps == pytest.approx(29.97, abs=1e-6)
        assert [f.time for f in reader] == pytest.approx([i * 100 / 2997 for i in range(6)], abs=1e-3)


def test_odd_sizes_are_padded_by_repeating_the_edge_and_later_sizes_resized(tmp_path):
    first = np.zeros((47, 63, 3), np.uint8)
    first[:, -1] = (250, 250, 250)  # last column white: the padding column repeats it
    first[-1, :] = (0, 0, 250)
    with VideoWriter(tmp_path / "v.mp4", 5) as writer:
        writer.write(first)
        writer.write(np.full((20, 30, 3), 200, np.uint8))  # another size: resized to 63 x 47
        assert writer.size == (63, 47)
    frames = list(VideoReader(tmp_path / "v.mp4"))
    assert [f.image.size for f in frames] == [(64, 48), (64, 48)]
    arr = np.asarray(frames[0].image, np.float64)
    assert arr[:40, -1].mean() > 200 and arr[:40, -2].mean() > 200  # the padded column repeats the last one
    assert arr[-1, :50, 2].mean() > 180 and arr[-2, :50, 2].mean() > 180  # and the padded row the last row
    assert np.abs(np.asarray(frames[1].image, np.float64).mean(axis=(0, 1)) - 200).max() <= 8


def test_max_side_shrinks_frames_but_not_the_info(tmp_path):
    path = _write(tmp_path / "big.mp4", frames=3, size=(640, 360))
    with VideoReader(path, max_side=160) as reader:
        assert (reader.info.width, reader.info.height) == (640, 360)
        assert [f.image.size for f in reader] == [(160, 90)] * 3
    assert [f.image.size for f in VideoReader(path, max_side=1000)] == [(640, 360)] * 3


def test_reading_twice_decodes_again_and_probe_reads_the_header(tmp_path):
    path = _write(tmp_path / "v.mp4", frames=5)
    reader = VideoReader(path)
    assert [f.index for f in reader] == [f.index for f in reader] == [0, 1, 2, 3, 4]
    reader.close()
    assert len(list(reader)) == 5  # a closed reader opens the file again
    reader.close()
    assert probe_video(path) == reader.info


# --- streaming ----------------------------------------------------------------------------------------------


def test_frames_stream_one_at_a_time(tmp_path):
    path = _write(tmp_path / "long.mp4", frames=100, fps=25)
    reader = VideoReader(path)
    frames = iter(reader)
    assert inspect.isgenerator(frames)
    previous = None
    count = 0
    for frame in frames:
        if previous is not None:
            assert previous() is None  # the reader kept no reference to the frame before
        previous = weakref.ref(frame.image)
        count += 1
        del frame
    assert count == 100


# --- frames folders -----------------------------------------------------------------------------------------


def test_frames_folder_in_natural_order_skipping_a_bad_image(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for number in (1, 2, 10):
        Image.fromarray(_solid(number)).save(folder / f"frame{number}.png")
    (folder / "frame3.png").write_bytes(b"not a png")  # between frame2 and frame10
    (folder / "._frame4.png").write_bytes(b"macOS metadata")  # hidden: not a frame
    (folder / "notes.txt").write_text("not a frame")
    assert is_video_input(folder)
    with VideoReader(folder, fps=5) as reader:
        assert reader.info == probe_video(folder, fps=5)
        assert (reader.info.fps, reader.info.frames, reader.info.width, reader.info.height) == (5.0, 4, *SIZE)
        frames = list(reader)
    assert [(f.index, f.time) for f in frames] == [(0, 0.0), (1, 0.2), (3, 0.6)]  # frame3 (index 2) skipped
    assert [tuple(np.asarray(f.image)[0, 0]) for f in frames] == [_colour(1), _colour(2), _colour(10)]
    assert len(reader.problems) == 1 and reader.problems[0].startswith(f"{folder / 'frame3.png'}: ")
    assert reader.variable_frame_rate is False


def test_frames_folder_max_side(tmp_path):
    Image.new("RGB", (100, 40), "red").save(tmp_path / "0001.jpg")
    assert [f.image.size for f in VideoReader(tmp_path, max_side=50)] == [(50, 20)]


def test_folder_without_frames_is_an_error_naming_it(tmp_path):
    message = _raises_naming(tmp_path, lambda: VideoReader(tmp_path))
    assert "no frames (jpg, jpeg, png, bmp, webp files)" in message
    (tmp_path / "notes.txt").write_text("x")
    _raises_naming(tmp_path, lambda: probe_video(tmp_path))


def test_folder_of_unreadable_frames_is_an_error_naming_it(tmp_path):
    (tmp_path / "0.jpg").write_bytes(b"junk")
    assert "no frame could be decoded" in _raises_naming(tmp_path, lambda: VideoReader(tmp_path))


def test_is_video_input(tmp_path):
    video = _write(tmp_path / "v.MP4", frames=1)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert VIDEO_SUFFIXES == (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")
    assert FRAME_SUFFIXES == (".jpg", ".jpeg", ".png", ".bmp", ".webp")
    assert is_video_input(video) and is_video_input(str(video))
    assert not is_video_input(tmp_path / "notes.txt")
    assert not is_video_input(tmp_path / "empty")
    assert not is_video_input(tmp_path / "missing.mp4")
    Image.new("RGB", (4, 4)).save(tmp_path / "empty" / "f.webp")
    assert is_video_input(tmp_path / "empty")


# --- damaged and unusual files ------------------------------------------------------------------------------


def test_random_bytes_are_an_error_at_opening(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    assert "cannot open video" in _raises_naming(path, lambda: VideoReader(path))
    _raises_naming(path, lambda: probe_video(path))
    missing = tmp_path / "missing.mp4"
    assert "not found" in _raises_naming(missing, lambda: VideoReader(missing))
    (tmp_path / "empty.mp4").write_bytes(b"")
    _raises_naming(tmp_path / "empty.mp4", lambda: VideoReader(tmp_path / "empty.mp4"))


def test_truncated_mp4_with_its_index_at_the_end_cannot_be_opened(tmp_path):
    """PyAV's default MP4 puts the index (moov atom) last: cut it off and nothing can be decoded."""
    full = tmp_path / "full.mp4"
    _pyav_video(full, "mpeg4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    assert "cannot open video" in _raises_naming(cut, lambda: VideoReader(cut))


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_truncated_file_yields_the_frames_before_the_cut(tmp_path, suffix):
    """VideoWriter's MP4 has its index first, so a cut MP4 reads like a cut AVI or MKV."""
    full = _noisy_video(tmp_path / f"full{suffix}")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    with VideoReader(cut) as reader:
        frames = list(reader)
    assert 0 < len(frames) < 30
    assert [f.index for f in frames] == list(range(len(frames)))
    assert reader.problems and all(p.startswith(f"{cut}: ") for p in reader.problems)
    assert any("damaged or truncated file" in p for p in reader.problems)


def test_corrupt_middle_yields_the_decodable_frames(tmp_path):
    full = _noisy_video(tmp_path / "full.avi")
    data = bytearray(full.read_bytes())
    middle = len(data) // 2
    data[middle:middle + len(data) // 10] = np.random.default_rng(2).bytes(len(data) // 10)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    with VideoReader(bad) as reader:
        frames = list(reader)
    assert 15 <= len(frames) < 30
    assert reader.problems and all(p.startswith(f"{bad}: ") for p in reader.problems)


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs libx264")
def test_times_strictly_increase_even_when_the_file_reorders_them(tmp_path):
    """H.264 with B-frames in AVI: the container has no presentation times and FFmpeg's guesses go back."""
    path = tmp_path / "bframes.avi"
    _pyav_video(path, "libx264")
    with VideoReader(path) as reader:
        times = [f.time for f in reader]
    assert len(times) == 30 and all(b > a for a, b in itertools.pairwise(times))
    assert all(p.startswith(f"{path}: ") and "timestamps out of order" in p for p in reader.problems)


def test_video_without_frames_is_an_error(tmp_path):
    for suffix, codec in ((".avi", "mpeg4"), (".mp4", "libx264" if _has_encoder("libx264") else "mpeg4")):
        path = tmp_path / f"empty{suffix}"
        container = av.open(str(path), "w")
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        container.start_encoding()
        container.close()
        if suffix == ".avi":  # AVI keeps the stream: the error comes after trying to decode
            reader = VideoReader(path)
            assert reader.info.frames is None
            assert _raises_naming(path, lambda r=reader: list(r)).endswith("no frame could be decoded")
        else:  # an MP4 without samples has no video stream at all
            assert "no video stream" in _raises_naming(path, lambda p=path: VideoReader(p))


def test_variable_frame_rate_times_follow_the_timestamps(tmp_path):
    milliseconds = [0, 40, 80, 200, 240, 500, 540, 1000]
    path = tmp_path / "vfr.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    for i, ms in enumerate(milliseconds):
        frame = av.VideoFrame.from_ndarray(_solid(i), format="rgb24")
        frame.pts, frame.time_base = ms, Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    with VideoReader(path) as reader:
        times = [f.time for f in reader]
    assert times == pytest.approx([ms / 1000 for ms in milliseconds], abs=1e-3)
    assert reader.variable_frame_rate is True and reader.info.variable_frame_rate is True
    assert reader.problems == []


# --- writer -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_writer_exception_leaves_no_file(tmp_path, suffix):
    target = tmp_path / f"out{suffix}"
    with pytest.raises(RuntimeError, match="stop"), VideoWriter(target, 10) as writer:
        for i in range(3):
            writer.write(_solid(i))
        assert not target.exists()  # frames go to a hidden temporary file until close
        if suffix == ".avi":  # MPEG-4 has no encoder delay: the temporary file exists already
            assert [p.name for p in tmp_path.iterdir()] == [f".out.avi.tmp-{os.getpid()}.avi"]
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_writer_exception_keeps_the_previous_file(tmp_path):
    target = _write(tmp_path / "out.avi", frames=2)
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt), VideoWriter(target, 10) as writer:
        writer.write(_solid(5))
        raise KeyboardInterrupt
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.avi"]


def test_writer_errors(tmp_path):
    nothing = VideoWriter(tmp_path / "none.mp4", 10)
    assert "no frame was written" in _raises_naming(tmp_path / "none.mp4", nothing.close)
    _raises_naming(tmp_path / "v.gif", lambda: VideoWriter(tmp_path / "v.gif", 10))
    for codec in ("no-such-codec", "h264_cuvid", "aac"):  # unknown, a decoder, an audio encoder
        with pytest.raises(ValueError, match="is not a video encoder"):
            VideoWriter(tmp_path / "v.mp4", 10, codec=codec)
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "v.mp4", 0)
    for bad in (0, -1, float("nan"), "fast", True):
        with pytest.raises(ValueError, match="fps must be a positive number"):
            VideoReader(tmp_path, fps=bad)
    with pytest.raises(ValueError, match="max_side"):
        VideoReader(tmp_path, max_side=0)
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "v.mp4", 10).write(np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


# --- without PyAV -------------------------------------------------------------------------------------------


def test_missing_pyav_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    for call in (lambda: VideoReader(path), lambda: VideoWriter(path, 10)):
        with pytest.raises(TedlocError, match=r"reading videos needs PyAV: pip install av"):
            call()
    Image.new("RGB", (4, 4)).save(tmp_path / "0.png")
    assert len(list(VideoReader(tmp_path))) == 1  # frames folders need no PyAV


def test_module_imports_without_pyav():
    code = "import sys; sys.modules['av'] = None; import tedloc.data.video_io"
    subprocess.run([sys.executable, "-c", code], check=True)
