"""Writes that fail well and runs that never mix: a full or read-only disk is one line naming the path,
a second writer of a run or cache is refused, a resume refuses other data or settings, written files
honour the umask, and broken metadata does not flood the terminal."""
from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tedloc.cli import main
from tedloc.errors import TedlocError
from runtimes import CPU

TRAIN = ["--epochs", "1", "--batch-size", "8", "--input-size", "48", "--workers", "0"]
NO_SPACE = os.strerror(errno.ENOSPC)


def _tedloc(*args, **kwargs) -> subprocess.CompletedProcess:
    """The CLI in a process of its own (for locks, and for full disks, where a bug means SIGBUS)."""
    env = {**os.environ, "TEDLOC_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "tedloc", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, **kwargs)


def _one_error_line(done: subprocess.CompletedProcess, path: Path, reason: str) -> str:
    """Exit status 2, no traceback, and the error as one last stderr line ``error: <path under path>...: <reason>``
    (progress lines of the epochs done before it may precede it)."""
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr and [x for x in lines if x.startswith("error:")] == lines[-1:], done.stderr
    assert lines[-1].startswith(f"error: {path}") and lines[-1].endswith(reason), lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def cnn_run(synthetic_small, tmp_path_factory) -> Path:
    from tedloc.methods.cam import PretrainConfig, pretrain

    run = tmp_path_factory.mktemp("runs") / "cnn"
    pretrain(synthetic_small, run, PretrainConfig(input_size=48, epochs=1, batch_size=8, workers=0), runtime=CPU)
    return run


def _tmpfs(folder: Path, options: str):
    """Mount a tmpfs on ``folder`` for the test; skipped where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB file system: smaller than a checkpoint of the tiny CNN (2.4 MB)."""
    yield from _tmpfs(tmp_path / "disk", "size=1m")


@pytest.fixture
def readonly_disk(tmp_path):
    yield from _tmpfs(tmp_path / "ro", "ro,size=1m")


def _fill(disk: Path) -> None:
    """Leave no free byte on ``disk``."""
    with open(disk / "filler", "wb", buffering=0) as f:
        with pytest.raises(OSError) as e:
            while True:
                f.write(b"\0" * 65536)
    assert e.value.errno == errno.ENOSPC


# ---------------------------------------------------------------- full and read-only disks

def test_cache_files_are_allocated_not_sparse(tmp_path):
    from tedloc.utils.row_files import create_npy

    create_npy(tmp_path / "a.npy", np.float16, (64, 32, 32))
    array = np.load(tmp_path / "a.npy")
    assert array.shape == (64, 32, 32) and not array.any()
    assert os.stat(tmp_path / "a.npy").st_blocks * 512 >= array.nbytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_cache_files_without_fallocate_are_written_with_zeros(tmp_path, monkeypatch):
    from tedloc.utils.row_files import create_npy

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    create_npy(tmp_path / "a.npy", np.int64, (100, 4, 9))
    array = np.load(tmp_path / "a.npy")
    assert array.shape == (100, 4, 9) and not array.any()
    assert os.stat(tmp_path / "a.npy").st_blocks * 512 >= array.nbytes


def test_full_disk_fails_at_cache_creation_naming_the_file(tmp_path, monkeypatch):
    from tedloc.pseudolabels import MapCache

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError) as e:
        MapCache(tmp_path / "cache", [f"i{k}" for k in range(8)], (4, 4))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "cache" / "maps.npy")
    assert not list((tmp_path / "cache").glob("*.npy*")) and not (tmp_path / "cache" / "index.json").exists()


def test_cli_prints_os_errors_as_one_line(synthetic_small, tmp_path, monkeypatch, capsys):
    from PIL import Image

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, NO_SPACE)  # as a write deep inside PIL: no file name

    monkeypatch.setattr(Image.Image, "save", full)
    assert main(["data", "synthetic", "--out", str(tmp_path / "d"), "--train", "4"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'd'}: {NO_SPACE}\n"
    monkeypatch.undo()

    def quota(fd):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", quota)  # an atomic write names the file it was writing
    args = ["pretrain", "--data", str(synthetic_small), "--out", str(tmp_path / "run"), *TRAIN]
    assert main(args) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'run' / 'config.json'}: {os.strerror(errno.EDQUOT)}\n"


def test_full_disk_pretrain_data_and_predict(synthetic_small, cnn_run, small_disk):
    done = _tedloc("pretrain", "--data", synthetic_small, "--out", small_disk / "run", *TRAIN)
    line = _one_error_line(done, small_disk / "run", NO_SPACE)
    assert line == f"error: {small_disk / 'run' / 'checkpoints' / 'epoch_001.safetensors'}: {NO_SPACE}"
    shutil.rmtree(small_disk / "run")
    done = _tedloc("data", "synthetic", "--out", small_disk / "d", "--train", "400")
    _one_error_line(done, small_disk / "d", NO_SPACE)
    shutil.rmtree(small_disk / "d.partial", ignore_errors=True)
    _fill(small_disk)
    image = next((synthetic_small / "images" / "test").rglob("*.png"))
    done = _tedloc("predict", "--run", cnn_run, image, "--out", small_disk / "pred")
    _one_error_line(done, small_disk / "pred", NO_SPACE)


def test_full_disk_map_cache_fails_at_creation(synthetic_small, cnn_run, small_disk):
    # 24 maps of 160x160 float16 (1.2 MB) do not fit: before, a sparse file was mapped and the process died of SIGBUS
    done = _tedloc("cams", "--run", cnn_run, "--data", synthetic_small, "--out", small_disk / "cam", "--size", "160")
    assert _one_error_line(done, small_disk / "cam", NO_SPACE) == f"error: {small_disk / 'cam' / 'maps.npy'}: {NO_SPACE}"


def test_read_only_out_is_one_line(synthetic_small, readonly_disk):
    done = _tedloc("pretrain", "--data", synthetic_small, "--out", readonly_disk / "run", *TRAIN)
    _one_error_line(done, readonly_disk / "run", os.strerror(errno.EROFS))


def _no_evaluation(*args, **kwargs):
    raise AssertionError("evaluated before checking that the results can be written")


def test_evaluate_checks_its_json_output_first(synthetic_small, cnn_run, tmp_path, monkeypatch, capsys):
    import tedloc.eval.localizer_eval

    monkeypatch.setattr(tedloc.eval.localizer_eval, "evaluate_localizer", _no_evaluation)
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "metrics.json"  # its folder is a file: unwritable even for root
    assert main(["evaluate", "--run", str(cnn_run), "--data", str(synthetic_small), "--json", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {tmp_path / 'file'}")


def test_evaluate_refuses_a_read_only_json_before_computing(synthetic_small, cnn_run, readonly_disk, monkeypatch,
                                                           capsys):
    import tedloc.eval.localizer_eval

    monkeypatch.setattr(tedloc.eval.localizer_eval, "evaluate_localizer", _no_evaluation)
    target = readonly_disk / "metrics.json"
    assert main(["evaluate", "--run", str(cnn_run), "--data", str(synthetic_small), "--json", str(target)]) == 2
    assert capsys.readouterr().err == f"error: {target}: {os.strerror(errno.EROFS)}\n"


# ---------------------------------------------------------------- one writer per run or cache

def test_folder_lock_is_exclusive_and_dies_with_its_process(tmp_path):
    from tedloc.utils.locks import folder_lock

    contender = ("import sys; from tedloc.utils.locks import folder_lock; from tedloc.errors import TedlocError\n"
                 "try:\n    folder_lock(sys.argv[1]).acquire()\n"
                 "except TedlocError as e:\n    sys.exit(str(e))\n")
    with folder_lock(tmp_path / "run"):
        done = subprocess.run([sys.executable, "-c", contender, str(tmp_path / "run")], capture_output=True, text=True)
        assert done.returncode == 1
        assert done.stderr == f"{tmp_path / 'run'} is in use by another tedloc process (pid {os.getpid()})\n"
    assert subprocess.run([sys.executable, "-c", contender, str(tmp_path / "run")]).returncode == 0
    killed = ("import os, signal, sys; from tedloc.utils.locks import folder_lock\n"
              "folder_lock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", killed, str(tmp_path / "run")]).returncode == -9
    with folder_lock(tmp_path / "run"):  # the dead holder left no lock
        pass


_HOLDER = """
import sys, time
from pathlib import Path
import timm

create_model = timm.create_model

def create_when_told(*args, **kwargs):  # the run folder is claimed: hold it until the test says go
    while not Path(sys.argv[1]).exists():
        time.sleep(0.05)
    return create_model(*args, **kwargs)

timm.create_model = create_when_told
from tedloc.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _wait_for_lock(folder: Path, holder: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``holder`` has locked ``folder`` (its pid is in the lock file)."""
    deadline = time.monotonic() + timeout
    while not (folder / ".lock").exists() or (folder / ".lock").read_text().strip() != str(holder.pid):
        if holder.poll() is not None:
            pytest.fail(f"the first run ended before the second started: {holder.stderr.read()}")
        if time.monotonic() > deadline:
            holder.kill()
            pytest.fail(f"the first run did not lock {folder} in {timeout} s")
        time.sleep(0.05)


def test_two_pretrain_runs_into_one_out(synthetic_small, tmp_path):
    out, go = tmp_path / "run", tmp_path / "go"
    args = ["pretrain", "--data", str(synthetic_small), "--out", str(out), *TRAIN]
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, str(go), *args, "--lr", "0.01"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TEDLOC_PROGRESS": "0"})
    try:
        _wait_for_lock(out, first)
        second = _tedloc(*args, "--lr", "0.02")
        assert second.returncode == 2
        assert second.stderr == f"error: {out} is in use by another tedloc process (pid {first.pid})\n"
    finally:
        go.touch()
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert json.loads((out / "config.json").read_text())["config"]["lr"] == 0.01
    assert json.loads((out / "model.json").read_text())["config"]["lr"] == 0.01


def test_a_cache_has_one_writer_until_complete(tmp_path):
    from tedloc.pseudolabels import MapCache

    ids = [f"i{k}" for k in range(6)]
    writer = MapCache(tmp_path / "cache", ids, (4, 4))
    with pytest.raises(TedlocError, match=f"{tmp_path / 'cache'} is in use by another tedloc process"):
        MapCache(tmp_path / "cache", ids, (4, 4))
    writer.write(np.arange(6), np.random.default_rng(0).random((6, 4, 4)))
    reader = MapCache(tmp_path / "cache", ids)  # complete: readers need no lock
    assert reader.complete and MapCache(tmp_path / "cache", ids, (4, 4)).complete


def test_a_feature_cache_has_one_writer(tmp_path):
    from tedloc.engine.feature_cache import FeatureCache

    index = {"image_ids": ["a", "b"], "num_views": 1, "feature_shape": [2, 2, 2]}
    writer = FeatureCache(tmp_path / "f", index)
    with pytest.raises(TedlocError, match="in use by another tedloc process"):
        FeatureCache(tmp_path / "f", index)
    writer.write(np.arange(2), np.ones((2, 1, 2, 2, 2)), np.zeros((2, 1, 9), np.int64))
    assert FeatureCache(tmp_path / "f").complete


def _relabel(data: Path) -> None:
    """Swap the labels of the first two train images."""
    path = data / "metadata" / "train" / "class_labels.txt"
    lines = path.read_text().splitlines()
    (a, la), (b, lb) = (line.split(",") for line in lines[:2])
    path.write_text("\n".join([f"{a},{lb}", f"{b},{la}", *lines[2:]]) + "\n")


def test_resume_refuses_other_data(synthetic_small, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_small, data)
    args = ["pretrain", "--out", str(tmp_path / "run"), *TRAIN]
    assert main([*args, "--data", str(data)]) == 0
    config = (tmp_path / "run" / "config.json").read_text()
    capsys.readouterr()
    assert main([*args, "--data", str(synthetic_small)]) == 2  # same content, another dataset
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "another configuration" in err and "data" in err
    _relabel(data)
    assert main([*args, "--data", str(data)]) == 2  # same folder, other labels
    assert "data_sha1" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.json").read_text() == config


def test_pseudo_boxes_resume_refuses_other_settings(synthetic_small, cnn_run, tmp_path, monkeypatch, capsys):
    import tedloc.protocol.make_boxes as make_boxes

    out, whole = tmp_path / "boxes.txt", tmp_path / "whole.txt"
    make_boxes.make_pseudo_boxes(synthetic_small, "val", "cam", cnn_run, whole, runtime=CPU)
    load = make_boxes.load_image
    calls = []

    def interrupted(path):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return load(path)

    monkeypatch.setattr(make_boxes, "load_image", interrupted)
    args = ["pseudo-boxes", "--data", str(synthetic_small), "--run", str(cnn_run), "--out", str(out)]
    assert main([*args, "--method", "cam"]) == 130
    monkeypatch.undo()
    assert len((tmp_path / "boxes.txt.partial").read_text().splitlines()) == 3
    capsys.readouterr()
    assert main([*args, "--method", "ss"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "other settings" in err and str(out) in err
    assert main([*args, "--method", "cam"]) == 0  # the same settings resume
    assert out.read_text() == whole.read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("boxes")) == ["boxes.txt", "boxes.txt.json"]


def test_pseudo_boxes_file_has_one_writer(synthetic_small, cnn_run, tmp_path):
    from tedloc.protocol.make_boxes import make_pseudo_boxes
    from tedloc.utils.locks import file_lock

    with file_lock(tmp_path / "boxes.txt"):
        with pytest.raises(TedlocError, match=f"{tmp_path / 'boxes.txt'} is in use by another tedloc process"):
            make_pseudo_boxes(synthetic_small, "val", "cam", cnn_run, tmp_path / "boxes.txt", runtime=CPU)


# ---------------------------------------------------------------- file modes

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path, umask):
    import torch

    from tedloc.engine.checkpoint import save_checkpoint
    from tedloc.utils.io import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_checkpoint(tmp_path / "ckpt", torch.nn.Linear(2, 2), {"epoch": 0})
    finally:
        os.umask(old)
    for name in ("a.txt", "ckpt.json", "ckpt.safetensors"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "ckpt.json", "ckpt.safetensors"]


# ---------------------------------------------------------------- error floods

@pytest.fixture
def data_copy(synthetic_small, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synthetic_small, root)
    return root


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_a_utf16_labels_file_is_one_problem(data_copy, capsys, encoding):
    labels = data_copy / "metadata" / "train" / "class_labels.txt"
    labels.write_bytes(labels.read_text().encode(encoding))
    assert main(["data", "check", str(data_copy), "--metadata-only"]) == 1
    out = capsys.readouterr().out.splitlines()
    problems = [line for line in out if line.startswith("problem:")]
    assert len(problems) == 1 and problems[0].startswith(f"problem: {labels}: not UTF-8 text")
    assert len(out) == 6 and out[-1] == "1 problems"
    assert main(["pretrain", "--data", str(data_copy), "--out", str(data_copy / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {labels}: not UTF-8 text") and len(err.splitlines()) == 1


def test_an_empty_class_names_file_is_one_line(data_copy, capsys):
    (data_copy / "class_names.txt").write_text("")
    run = str(data_copy / "run")
    for args in (["data", "check", str(data_copy)], ["pretrain", "--data", str(data_copy), "--out", run]):
        assert main(args) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(f"error: {data_copy / 'class_names.txt'}: ") and captured.err.count("\n") == 1


def test_repeated_problems_of_a_file_are_counted_not_listed(data_copy, capsys):
    labels = data_copy / "metadata" / "train" / "class_labels.txt"
    labels.write_text("".join(f"{line.split(',')[0]},99\n" for line in labels.read_text().splitlines()))
    assert main(["data", "check", str(data_copy), "--metadata-only"]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 6 and all(str(labels) in p for p in problems)
    assert problems[-1] == f"problem: ... and 43 more problems in {labels}"  # 24 unknown classes, 24 unlabelled
    assert main(["pretrain", "--data", str(data_copy), "--out", str(data_copy / "run")]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 6


def test_a_run_made_before_an_option_existed_resumes(tmp_path):
    """Options added to tedloc since (keys the recorded configuration lacks) are not compared; changed ones are."""
    from tedloc.engine import RunFolder
    from tedloc.errors import TedlocError

    run = RunFolder(tmp_path / "run")
    with run.claim({"config": {"lr": 0.1}, "kind": "cam"}):
        pass
    with run.claim({"config": {"lr": 0.1, "optimizer": "sgd"}, "kind": "cam"}):
        pass
    with pytest.raises(TedlocError, match="another configuration"):
        run.claim({"config": {"lr": 0.2, "optimizer": "sgd"}, "kind": "cam"})
