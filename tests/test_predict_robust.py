"""`tedloc predict` and the data loaders on hostile input: huge images, unreadable files, worker errors."""
from __future__ import annotations

import json
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tedloc.cli import main
from tedloc.data import images as image_io
from tedloc.data.images import load_image
from tedloc.errors import DataError, TedlocError
from tedloc.methods.cam import PretrainConfig, pretrain
from runtimes import CPU

MEMORY_LIMIT = 6 << 30  # address-space limit of the measured subprocesses


@pytest.fixture(scope="module")
def cam_run(synthetic_small, tmp_path_factory) -> Path:
    """The smallest trained run: the CAM baseline of a tiny CNN (input 48), one epoch."""
    out = tmp_path_factory.mktemp("runs") / "cam"
    pretrain(synthetic_small, out, PretrainConfig(arch="tedloc_resnet_tiny", input_size=48, epochs=1, batch_size=8,
                                                  workers=0), runtime=CPU)
    return out


def _test_image(data: Path, i: int = 0) -> Path:
    from tedloc.data import load_dataset

    return load_dataset(data)["test"].image_path(i)


def _enlarged(data: Path, size: tuple[int, int], path: Path, **save) -> Path:
    """A test image of the synthetic set, enlarged (bicubic) to ``size`` and saved to ``path``."""
    load_image(_test_image(data)).resize(size, Image.BICUBIC).save(path, **save)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png_header(path: Path, width: int, height: int) -> Path:
    """A tiny file whose PNG header claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b""))
    return path


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


_MEASURE = ("import resource, sys\nfrom tedloc.cli import main\nrc = main(sys.argv[1:])\n"
            "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc)")


def _predict_peak_kib(*args: str) -> int:
    """Peak RSS (KiB) of ``tedloc predict ARGS`` in a fresh process limited to 6 GiB of address space."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, "predict", *args], capture_output=True, text=True,
                          timeout=600, preexec_fn=_limit_memory)
    last = proc.stdout.strip().splitlines()[-1:] or [""]
    assert proc.returncode == 0 and last[0].startswith("maxrss"), proc.stderr[-2000:]
    _, peak, rc = last[0].split()
    assert rc == "0", proc.stderr[-2000:]
    return int(peak)


# 1. memory bounded on large images


def test_large_images_predict_in_bounded_memory(cam_run, synthetic_small, tmp_path):
    small = str(_test_image(synthetic_small))
    png = tmp_path / "big.png"
    Image.new("RGB", (6000, 6000), (90, 120, 200)).save(png)
    jpg = _enlarged(synthetic_small, (6000, 4000), tmp_path / "photo.jpg", quality=90)
    base = _predict_peak_kib("--run", str(cam_run), small, "--out", str(tmp_path / "small"))
    big = _predict_peak_kib("--run", str(cam_run), str(png), str(jpg), "--out", str(tmp_path / "big"))
    assert big - base < 300 * 1024, f"peak RSS {big // 1024} MiB, {base // 1024} MiB for a 48x48 image"
    record = json.loads((tmp_path / "big" / "photo.json").read_text())
    assert (record["width"], record["height"]) == (6000, 4000)
    x0, y0, x1, y1 = record["box"]
    assert 0 <= x0 <= x1 < 6000 and 0 <= y0 <= y1 < 4000
    assert np.load(tmp_path / "big" / record["map"]).shape == (683, 1024)
    assert Image.open(tmp_path / "big" / record["overlay"]).size == (1024, 683)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "1"])
def test_reduced_png_decoding_is_the_reduced_full_decoding(mode, synthetic_small, tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "_STRIP_BYTES", 3000)  # many strips, each joined to the row above it
    rng = np.random.default_rng(1)
    rgb = np.asarray(load_image(_test_image(synthetic_small)).resize((403, 301), Image.BICUBIC)).astype(int)
    rgb = np.clip(rgb + rng.integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    if mode == "P":
        image = image.quantize(64)
    elif mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(tmp_path / "x.png")
    reduced, size = image_io.load_image_reduced(tmp_path / "x.png", (60, 50))
    assert size == (403, 301) and reduced.mode == "RGB"
    assert np.array_equal(np.asarray(reduced), np.asarray(load_image(tmp_path / "x.png").reduce(6)))
    small, _ = image_io.load_image_reduced(tmp_path / "x.png", (300, 300))  # no reduction: load_image's pixels
    assert np.array_equal(np.asarray(small), np.asarray(load_image(tmp_path / "x.png")))


def test_truncated_large_png_is_a_data_error(tmp_path):
    path = tmp_path / "cut.png"
    Image.new("RGB", (900, 900), (1, 2, 3)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match="cut.png: cannot read image"):
        image_io.load_image_reduced(path, (100, 100))


def test_large_jpeg_prediction_is_close_to_the_full_decoding(cam_run, synthetic_small, tmp_path):
    from tedloc.inference import Localizer

    path = _enlarged(synthetic_small, (3000, 2000), tmp_path / "photo.jpg", quality=95)
    localizer = Localizer.from_run(cam_run)
    model = localizer.model
    tensors = []
    for image in (load_image(path), image_io.load_image_reduced(path, (4 * 48, 4 * 48))[0]):
        tensors.append(model.preprocessing.eval_input(image))
    std = torch.tensor(model.preprocessing.std).view(3, 1, 1)
    assert ((tensors[0] - tensors[1]) * std).abs().mean() * 255 < 1.0  # mean input difference under 1 grey level
    scores, maps = model.predict(torch.stack(tensors))
    p = localizer(path)[0]
    assert p.size == (3000, 2000) and np.allclose(p.scores, scores[1].double().numpy())
    assert (scores[0] - scores[1]).abs().max() < 0.01
    assert (maps[0] - maps[1]).abs().max() < 0.05 * (maps[0].max() - maps[0].min())


def test_map_is_bounded_and_the_box_stays_in_image_pixels(cam_run, synthetic_small, tmp_path):
    from tedloc.inference import Localizer

    path = _enlarged(synthetic_small, (2400, 1600), tmp_path / "big.png")
    p = Localizer.from_run(cam_run)(path)[0]
    full = Localizer.from_run(cam_run, map_max_side=None)(path)[0]
    assert p.size == (2400, 1600) and p.map.shape == (683, 1024) and full.map.shape == (1600, 2400)
    assert np.array_equal(p.scores, full.scores)
    assert np.abs(np.array(p.box) - np.array(full.box)).max() <= 6, (p.box, full.box)
    x0, y0, x1, y1 = p.box
    assert 0 <= x0 <= x1 < 2400 and 0 <= y0 <= y1 < 1600


def test_normal_images_give_the_same_results_as_before(cam_run, synthetic_small):
    """Below the map bound and the reduction margin: the map at the image's size and its box, exactly."""
    from tedloc.eval import box_from_map
    from tedloc.eval.scoremaps import normalize_scoremap
    from tedloc.inference import Localizer

    localizer = Localizer.from_run(cam_run)
    path = _test_image(synthetic_small, 1)
    image = load_image(path)
    x = localizer.model.preprocessing.eval_input(image)
    scores, maps = localizer.model.predict(x[None])
    expected = normalize_scoremap(maps[0].double().numpy(), image.size)
    p = localizer(path)[0]
    assert np.array_equal(p.map, expected.astype(np.float32))
    assert p.box == box_from_map(expected, localizer.threshold)
    assert np.array_equal(p.scores, scores[0].double().numpy())


def test_pixel_bound_is_one_clear_line(cam_run, synthetic_small, tmp_path, capsys):
    from tedloc.inference import Localizer

    small = _test_image(synthetic_small)
    with pytest.raises(TedlocError, match=rf"{small.name}: .*48x48 = 2,304 pixels.*limit of 1,000"):
        Localizer.from_run(cam_run, max_pixels=1000)(small)
    localizer = Localizer.from_run(cam_run)
    with pytest.raises(TedlocError, match="big.png: .*25000x20000 = 500,000,000 pixels.*limit of 400,000,000"):
        localizer(_huge_png_header(tmp_path / "big.png", 25000, 20000))
    bomb = _huge_png_header(tmp_path / "bomb.png", 30000, 30000)  # beyond PIL's own bound (twice 20000 x 20000)
    with pytest.raises(TedlocError, match="bomb.png: .*more than 800,000,000 pixels.*limit of 400,000,000"):
        localizer(bomb)
    capsys.readouterr()
    assert main(["predict", "--run", str(cam_run), str(bomb), "--max-pixels", "1000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bomb) in err[0] and "--max-pixels" in err[0]


# 2. one unreadable image in a batch


def test_predict_writes_the_good_images_and_reports_the_bad_ones(cam_run, synthetic_small, tmp_path, capsys):
    from tedloc.inference import Localizer

    good = [str(_test_image(synthetic_small, i)) for i in (0, 1)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "pred"
    capsys.readouterr()
    images = [good[0], str(broken), str(missing), good[1]]
    assert main(["predict", "--run", str(cam_run), *images, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and str(broken) in err[0] and str(missing) in err[1], err
    for path in good:
        stem = Path(path).stem
        assert json.loads((out / f"{stem}.json").read_text())["image"] == path
        assert (out / f"{stem}.map.npy").exists() and (out / f"{stem}.overlay.png").exists()
    assert not list(out.glob("broken*")) and not list(out.glob("missing*"))
    assert "wrote 2 image records" in captured.out
    localizer = Localizer.from_run(cam_run)
    results = list(localizer.iter_predictions([good[0], broken, good[1]]))
    assert [type(r).__name__ for r in results] == ["Prediction", "DataError", "Prediction"]
    assert str(results[1]).startswith(f"{broken}: cannot read image") and "\n" not in str(results[1])
    with pytest.raises(TedlocError, match="broken.png: cannot read image"):
        localizer([good[0], broken])


# 3. a bad image in a DataLoader worker


def _with_broken_train_image(data: Path, tmp_path: Path) -> tuple[Path, Path]:
    from tedloc.data import load_dataset

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    broken = load_dataset(copy)["train"].image_path(3)
    broken.write_bytes(b"garbage")
    return copy, broken


def test_worker_data_error_keeps_its_one_line_message(synthetic_small, tmp_path):
    from torch.utils.data import DataLoader

    from tedloc.data import Preprocessing, WSOLImageDataset, load_dataset

    data, broken = _with_broken_train_image(synthetic_small, tmp_path)
    dataset = WSOLImageDataset(load_dataset(data)["train"], Preprocessing(48))
    with pytest.raises(DataError) as caught:
        list(DataLoader(dataset, batch_size=4, num_workers=1))
    assert str(caught.value) == f"{broken}: cannot read image: cannot identify image file '{broken}'"


def test_pretrain_with_workers_prints_one_line_naming_the_file(synthetic_small, tmp_path):
    data, broken = _with_broken_train_image(synthetic_small, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "tedloc", "pretrain", "--data", str(data), "--out",
                           str(tmp_path / "run"), "--input-size", "48", "--epochs", "1", "--batch-size", "8",
                           "--workers", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(broken) in lines[0], proc.stderr
