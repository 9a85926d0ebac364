"""`tedloc predict` on videos and frames folders: one record per frame, the maps, the annotated video, the summary;
box smoothing, mixed and bad inputs, large frames, and the ``predict_video`` API."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtimes import CPU

from tedloc.cli import main
from tedloc.errors import TedlocError

av = pytest.importorskip("av")

from tedloc.data.video_io import VideoReader, VideoWriter
from tedloc.inference import Localizer
from tedloc.inference.video import predict_video

SIZE = (64, 48)  # width, height
FRAMES, FPS = 12, 10.0
SUFFIXES = (".frames.jsonl", ".maps.npy", ".annotated.mp4", ".video.json")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(cam_run_32) -> Path:
    """A CAM run on the synthetic image set: 32x32 inputs, one epoch (a second on 2 cores)."""
    return cam_run_32


def _frame(i: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Frame ``i``: a grey noisy background and a coloured square moving right and down."""
    w, h = size
    rng = np.random.default_rng(i)
    frame = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
    side = max(8, h // 3)
    x, y = (3 * i * w // 64) % (w - side), (2 * i * h // 48) % (h - side)
    frame[y:y + side, x:x + side] = (220, 40 + 10 * i % 200, 30)
    return frame


def _video(path: Path, frames: int = FRAMES, fps: float = FPS, size: tuple[int, int] = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps) as writer:
        for i in range(frames):
            writer.write(_frame(i, size))
    return path


def _frames_folder(folder: Path, frames: int = FRAMES) -> Path:
    """PNG frames ``frame1.png`` ... ``frame12.png`` (natural order differs from the name order)."""
    folder.mkdir(parents=True)
    for i in range(frames):
        Image.fromarray(_frame(i)).save(folder / f"frame{i + 1}.png")
    return folder


def _records(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{name}.frames.jsonl").read_text().splitlines()]


def _decoded(source: Path, fps: float = 25.0, max_side: int | None = 1024) -> list[Image.Image]:
    with VideoReader(source, fps=fps, max_side=max_side) as reader:
        return [f.image for f in reader]


def _inside(box: list[int], size: tuple[int, int]) -> bool:
    x0, y0, x1, y1 = box
    return 0 <= x0 <= x1 < size[0] and 0 <= y0 <= y1 < size[1]


def _check_outputs(run: Path, out: Path, name: str, source: Path, frames: int, fps: float,
                   size: tuple[int, int] = SIZE, map_max_side: int = 1024) -> list[dict]:
    """The four files of one video, checked against a prediction recomputed on the decoded frames."""
    records = _records(out, name)
    assert [r["frame"] for r in records] == list(range(frames))
    assert [r["time"] for r in records] == pytest.approx([i / fps for i in range(frames)], abs=1e-3)
    localizer = Localizer.from_run(run, runtime=CPU, batch_size=32, map_max_side=map_max_side)
    names = localizer.class_names
    images = _decoded(source, fps, map_max_side)
    expected = localizer(images)
    assert len(expected) == frames
    mean = np.mean([p.scores for p in expected], axis=0)
    k = int(np.argmax(mean))
    for r, p in zip(records, expected):
        assert _inside(r["box"], size), r["box"]
        if p.size == size:  # frames at full size: the box is the frame's
            assert r["box"] == list(p.box)
        assert [c["name"] for c in r["top_classes"]] == [names[c["index"]] for c in r["top_classes"]]
        assert [c["index"] for c in r["top_classes"]] == [i for i, _, _ in p.top_classes]
        assert [c["score"] for c in r["top_classes"]] == pytest.approx([s for _, _, s in p.top_classes], abs=1e-6)
        assert r["video_class"]["index"] == k and r["video_class"]["name"] == names[k]
        assert r["video_class"]["score"] == pytest.approx(mean[k], abs=1e-6)
    assert len({json.dumps(r["video_class"]) for r in records}) == 1  # the same on every line

    maps = np.load(out / f"{name}.maps.npy")
    h, w = expected[0].map.shape
    assert maps.dtype == np.float16 and maps.shape == (frames, h, w)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    np.testing.assert_allclose(maps.astype(np.float32), np.stack([p.map for p in expected]), atol=1e-3)

    with VideoReader(out / f"{name}.annotated.mp4") as reader:
        assert reader.info.fps == pytest.approx(fps, rel=1e-3)
        decoded = list(reader)
    scale = -(-256 // min(h, w))  # render_overlay enlarges small frames (nearest) to 256 pixels on their short side
    assert len(decoded) == frames and decoded[0].image.size == (w * scale, h * scale)

    summary = json.loads((out / f"{name}.video.json").read_text())
    assert summary["video"] == str(source) and summary["frames"] == frames
    assert summary["fps"] == pytest.approx(fps, rel=1e-3)
    assert (summary["width"], summary["height"]) == size
    assert summary["video_class"] == records[0]["video_class"] and summary["problems"] == []
    assert summary["files"] == {"records": str(out / f"{name}.frames.jsonl"), "maps": str(out / f"{name}.maps.npy"),
                                "annotated": str(out / f"{name}.annotated.mp4"),
                                "summary": str(out / f"{name}.video.json")}
    return records


def _only_outputs(out: Path, names: list[str], extra: tuple[str, ...] = ()) -> None:
    """OUT holds exactly the outputs: no partial or temporary file (hidden ones included)."""
    expected = {f"{n}{s}" for n in names for s in SUFFIXES} | set(extra)
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)


# --- a video file and a frames folder ------------------------------------------------------------------------


def test_video_file_gives_one_record_per_frame_maps_annotated_video_and_summary(run, tmp_path, capsys):
    video = _video(tmp_path / "in" / "clip.mp4")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", "--run", str(run), str(video), "--out", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert f"{video}: {FRAMES} frames at 10 fps, video class" in captured.out and captured.err == ""
    records = _check_outputs(run, out, "clip", video, FRAMES, FPS)
    assert all("box_raw" not in r for r in records)  # no smoothing: no raw box
    _only_outputs(out, ["clip"])


def test_frames_folder_in_natural_order_with_its_fps(run, tmp_path):
    folder = _frames_folder(tmp_path / "shot")
    out = tmp_path / "out"
    assert main(["predict", "--run", str(run), str(folder), "--out", str(out), "--fps", "5", "--device", "cpu"]) == 0
    records = _check_outputs(run, out, "shot", folder, FRAMES, 5.0)
    assert [r["time"] for r in records] == pytest.approx([i / 5 for i in range(FRAMES)], abs=1e-9)
    # natural order: frame1, frame2, ..., frame10 (name order would put frame10 second)
    localizer = Localizer.from_run(run, runtime=CPU)
    expected = localizer([Image.fromarray(_frame(i)) for i in range(FRAMES)])
    assert [r["box"] for r in records] == [list(p.box) for p in expected]
    _only_outputs(out, ["shot"])


# --- smoothing --------------------------------------------------------------------------------------------------


def test_box_smoothing_is_a_causal_moving_average_of_the_raw_boxes(run, tmp_path):
    video = _video(tmp_path / "clip.mp4")
    plain, smooth = tmp_path / "plain", tmp_path / "smooth"
    assert main(["predict", "--run", str(run), str(video), "--out", str(plain), "--device", "cpu"]) == 0
    assert main(["predict", "--run", str(run), str(video), "--out", str(smooth), "--box-smoothing", "0.5",
                 "--device", "cpu"]) == 0
    raw_records, records = _records(plain, "clip"), _records(smooth, "clip")
    raw = np.array([r["box_raw"] for r in records], dtype=np.float64)
    assert raw.tolist() == [r["box"] for r in raw_records]  # box_raw: the unsmoothed box of the plain run
    state = raw[0]
    assert records[0]["box"] == records[0]["box_raw"]
    for t in range(1, len(records)):
        state = 0.5 * raw[t] + 0.5 * state  # the unrounded average; each record rounds it (numpy: half to even)
        assert records[t]["box"] == np.round(state).astype(int).tolist(), t
    assert len({tuple(r["box_raw"]) for r in records}) > 1  # the square moves: the recurrence was exercised
    assert any(r["box"] != r["box_raw"] for r in records)
    # the rest of the record is the plain run's
    strip = [{k: v for k, v in r.items() if k not in ("box", "box_raw")} for r in records]
    assert strip == [{k: v for k, v in r.items() if k != "box"} for r in raw_records]


def test_box_smoothing_out_of_range_is_one_line(run, tmp_path, capsys):
    video = _video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # checked when the options are parsed, before any work
        main(["predict", "--run", str(run), str(video), "--out", str(out), "--box-smoothing", "1.5",
              "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert "--box-smoothing must be in [0, 1)" in err[-1] and "1.5" in err[-1], err
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(TedlocError, match="box smoothing"):
        predict_video(Localizer.from_run(run, runtime=CPU), video, None, box_smoothing=-0.1)


# --- mixed and bad inputs -----------------------------------------------------------------------------------


def test_an_image_and_a_video_in_one_command(run, synthetic_small, tmp_path):
    from tedloc.data import load_dataset

    image = load_dataset(synthetic_small)["test"].image_path(0)
    video = _video(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "out"
    assert main(["predict", "--run", str(run), str(image), str(video), "--out", str(out), "--device", "cpu"]) == 0
    assert len(_records(out, "clip")) == 4
    record = json.loads((out / f"{image.stem}.json").read_text())
    assert record["image"] == str(image)
    _only_outputs(out, ["clip"], (f"{image.stem}.json", f"{image.stem}.map.npy", f"{image.stem}.overlay.png"))


def test_bad_inputs_are_one_line_each_and_the_good_ones_are_written(run, tmp_path, capsys):
    good = _video(tmp_path / "good.mp4", frames=3)
    folder = _frames_folder(tmp_path / "good_frames", frames=2)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(["predict", "--run", str(run), str(broken), str(good), str(empty), str(folder), "--out", str(out),
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 2
    err = captured.err.strip().splitlines()
    assert len(err) == 2, err
    assert any(line.startswith(f"error: {broken}: ") for line in err), err
    assert any(line.startswith(f"error: {empty}: no frames (") for line in err), err
    assert "Traceback" not in captured.err
    assert "2 of 4 inputs could not be read" in captured.out
    assert len(_records(out, "good")) == 3 and len(_records(out, "good_frames")) == 2
    _only_outputs(out, ["good", "good_frames"])


# --- large frames ---------------------------------------------------------------------------------------------


def test_large_frames_give_bounded_maps_and_boxes_in_video_pixels(run, tmp_path):
    size = (640, 360)
    video = _video(tmp_path / "large.mp4", frames=4, size=size)
    out = tmp_path / "out"
    assert main(["predict", "--run", str(run), str(video), "--out", str(out), "--map-max-side", "128",
                 "--device", "cpu"]) == 0
    records = _check_outputs(run, out, "large", video, 4, FPS, size=size, map_max_side=128)
    maps = np.load(out / "large.maps.npy")
    assert maps.shape == (4, 72, 128)
    # the boxes: found on the 128x72 frames, each map pixel covering 5x5 video pixels
    localizer = Localizer.from_run(run, runtime=CPU, map_max_side=128)
    for r, p in zip(records, localizer(_decoded(video, FPS, 128))):
        assert p.size == (128, 72)
        x0, y0, x1, y1 = p.box
        assert r["box"] == [5 * x0, 5 * y0, min(5 * x1 + 4, 639), min(5 * y1 + 4, 359)]


# --- the API --------------------------------------------------------------------------------------------------


def test_predict_video_without_out_returns_a_summary_and_writes_nothing(run, tmp_path):
    video = _video(tmp_path / "clip.mp4", frames=5)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    localizer = Localizer.from_run(run, runtime=CPU)
    summary = predict_video(localizer, video, None)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert summary.frames == 5 and summary.fps == pytest.approx(FPS) and summary.size == SIZE
    assert summary.files == {} and summary.problems == [] and summary.source == str(video)
    mean = np.mean([p.scores for p in localizer(_decoded(video))], axis=0)
    k = int(np.argmax(mean))
    assert summary.video_class[:2] == (k, localizer.class_names[k])
    assert summary.video_class[2] == pytest.approx(mean[k], abs=1e-6)
    assert summary.to_dict()["video_class"] == {"index": k, "name": localizer.class_names[k],
                                                "score": summary.video_class[2]}
