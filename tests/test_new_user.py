"""What a new user meets first: the demo's suggested commands, inputs that gave silent wrong results or hangs,
and messages that did not say enough."""
from __future__ import annotations

import glob
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from tedloc.cli import build_parser, main
from tedloc.errors import TedlocError
from runtimes import CPU


# 1. the demo's closing suggestions run as printed


def _shell_argv(line: str) -> tuple[str, list[str]]:
    """The program and the arguments a POSIX shell would run for ``line`` (quotes, globs, a trailing comment)."""
    program, *words = shlex.split(line, comments=True)
    argv = []
    for word in words:
        argv += sorted(glob.glob(word)) if "*" in word else [word]
    return program, argv


def test_tedloc_command_reaches_the_installed_script_without_path(tmp_path, monkeypatch):
    from tedloc.cli.demo import tedloc_command

    script = Path(sys.executable).parent / "tedloc"
    root = Path(sys.executable).parents[2]
    monkeypatch.chdir(root)
    expected = str(Path(sys.executable).parent.relative_to(root) / "tedloc") if script.is_file() else None
    if expected is not None:
        assert tedloc_command() == expected  # .venv/bin/tedloc from the repository root
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python3"
    python.touch()
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.chdir(tmp_path)
    assert tedloc_command() == "bin/python3 -m tedloc"  # no script beside the interpreter
    monkeypatch.chdir(tmp_path / "bin")
    assert tedloc_command() == "./python3 -m tedloc"  # a bare name would be looked up in PATH
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert tedloc_command() == f"{python} -m tedloc"  # not below the current folder: absolute


def test_demo_suggestions_run_as_printed(tmp_path, monkeypatch):
    from tedloc.cli.demo import next_steps
    from tedloc.data import SyntheticConfig, make_synthetic
    from tedloc.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video
    from tedloc.methods.cam import PretrainConfig
    from tedloc.methods.tedloc import TeDLocTrainConfig
    from tedloc.recipes import Recipe, run_recipe

    monkeypatch.chdir(tmp_path)
    out = Path("demo")  # relative, as `make demo` gives it
    assert next_steps(out) == []  # nothing trained: nothing suggested
    data = make_synthetic(out / "data", SyntheticConfig(classes=3, train=12, val=3, test=3, size=32, seed=1))
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(3, 16)))
    recipe = Recipe(pretrain=PretrainConfig(input_size=32, epochs=1, batch_size=8, workers=0),
                    tedloc=TeDLocTrainConfig(decoder_channels=(8,), epochs=1, batch_size=8, k=4, cache_views=1),
                    variants=("tedloc",), text_encoder=f"file:{tmp_path / 'emb.npy'}", overlays=0,
                    centered_box=False)
    run_recipe(data, out, recipe, log=lambda _: None, runtime=CPU)
    make_synthetic_video(out / "video" / "data", SyntheticVideoConfig(classes=2, train_videos=1, val_videos=1,
                                                                     test_videos=1, shots=1, min_frames=2,
                                                                     max_frames=2))
    (out / "video" / "runs" / "trcamv").mkdir(parents=True)
    (out / "video" / "runs" / "trcamv" / "model.json").write_text("{}")  # a finished run, as far as the demo sees
    steps = next_steps(out)
    assert len(steps) == 2
    for line in steps:
        program, argv = _shell_argv(line)
        assert os.access(program, os.X_OK) or program.endswith("python") and argv[:2] == ["-m", "tedloc"]
        argv = argv[2:] if argv[:2] == ["-m", "tedloc"] else argv
        args = build_parser(argv).parse_args(argv)
        assert args.command == "predict" and Path(args.run, "model.json").is_file()
        assert args.images and all(Path(p).exists() for p in args.images) and "*" not in " ".join(args.images)
    image_argv = _shell_argv(steps[0])[1]
    assert main(image_argv[2:] if image_argv[:2] == ["-m", "tedloc"] else image_argv) == 0
    assert list((out / "predictions").glob("*.json"))


# 2. the same conversion of a 16-bit image in memory and by path; a config file's value as the CLI reads it


def test_localizer_converts_16_bit_images_in_memory_as_by_path(cam_run_32, tmp_path):
    from PIL import Image

    from tedloc.inference import Localizer

    values = (np.arange(48 * 48, dtype=np.int64).reshape(48, 48) * 65535 // (48 * 48 - 1))  # 0 .. 65535
    sixteen = Image.fromarray(values.astype(np.uint16))
    assert sixteen.mode == "I;16"
    sixteen.save(tmp_path / "x.png")
    localizer = Localizer.from_run(cam_run_32)
    by_path, in_memory, as_int32, white = localizer([tmp_path / "x.png", sixteen,
                                                     Image.fromarray(values.astype(np.int32)),
                                                     Image.new("RGB", (48, 48), (255, 255, 255))])
    assert np.array_equal(in_memory.scores, by_path.scores) and np.array_equal(in_memory.map, by_path.map)
    assert np.array_equal(as_int32.scores, by_path.scores)
    assert not np.array_equal(in_memory.scores, white.scores)  # not saturated to white
    with pytest.raises(TedlocError, match=r"^image 0: unsupported image mode 'F'"):  # float: no agreed scale
        localizer(Image.fromarray(values.astype(np.float32)))


@pytest.mark.parametrize("command", [["pretrain"], ["train", "--method", "cam"]])
def test_config_file_refuses_a_fraction_for_a_whole_number(command, synthetic_small, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1.5\n")
    code = main([*command, "--config", str(config), "--data", str(synthetic_small), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: {config}: epochs: 1.5 is not a whole number"]
    assert not (tmp_path / "run").exists()
    config.write_text("epochs: 2.0\nlr: 1\n")  # a whole number written as a float, an int for a float: as the presets
    argv = [*command, "--config", str(config), "--data", "d", "--out", "o"]
    args = build_parser(argv).parse_args(argv)
    assert (args.epochs, args.lr) == (2, 1.0) and isinstance(args.epochs, int) and isinstance(args.lr, float)


def test_proposals_config_values_are_read_as_the_cli_reads_them(tmp_path):
    config = tmp_path / "d.yaml"
    config.write_text("method: dips\ntop_k: 2.5\n")
    argv = ["proposals", "--config", str(config), "--data", "d", "--out", "o", "--classifier-run", "r"]
    assert build_parser(argv).parse_args(argv).config_error == f"{config}: top_k: 2.5 is not a whole number"
    config.write_text("method: dips\ntop_k: 3\ninput_size: 32.0\nmin_size: 1\n")
    args = build_parser(argv).parse_args(argv)
    assert (args.k, args.input_size, args.min_size) == (3, 32, 1.0) and isinstance(args.min_size, float)


# 3. a maps folder with directory symlink loops: refused at once, naming the link


def test_map_folder_refuses_a_symlink_loop(tmp_path):
    import signal

    from tedloc.data.dataset import Split
    from tedloc.eval import evaluate_map_folder
    from tedloc.eval.scoremaps import ScoreMapError

    split = Split("test", ["a/1.png", "b/2.png"], [0, 1], [(8, 8)] * 2, [[[1, 1, 5, 5]]] * 2)
    maps, elsewhere = tmp_path / "maps", tmp_path / "elsewhere"
    (maps / "a").mkdir(parents=True)
    elsewhere.mkdir()
    np.save(maps / "a/1.png.npy", np.zeros((8, 8)))
    np.save(elsewhere / "2.png.npy", np.zeros((8, 8)))
    (maps / "b").symlink_to(elsewhere)  # a linked folder is followed
    assert evaluate_map_folder(split, maps)["images"] == 2
    (maps / "a" / "up").symlink_to(maps)
    (elsewhere / "up").symlink_to(maps)  # two loops: 2^40 paths before ELOOP stops a plain walk
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the walk did not stop"))
    signal.alarm(30)
    try:
        with pytest.raises(ScoreMapError) as e:
            evaluate_map_folder(split, maps)
    finally:
        signal.alarm(0)
    assert str(e.value) == (f"{maps / 'a' / 'up'}: a symlink loop (it leads back to {maps}); remove it or give "
                            f"a folder without one")


# 4. an image in two splits: leakage into the test split is an error, between train and val a warning


def _copy_image(root: Path, source: str, target: str, i: int) -> str:
    """Append image ``i`` of split ``source`` (every metadata line of it) to split ``target``; its id."""
    image_id = (root / "metadata" / source / "image_ids.txt").read_text().splitlines()[i]
    for path in (root / "metadata" / source).glob("*.txt"):
        line = next(x for x in path.read_text().splitlines() if x.split(",")[0] == image_id)
        with open(root / "metadata" / target / path.name, "a") as f:
            f.write(line + "\n")
    return image_id


def test_data_check_reports_an_image_in_two_splits(tmp_path, capsys):
    from tedloc.data import SyntheticConfig, check_dataset, make_synthetic

    root = make_synthetic(tmp_path / "data", SyntheticConfig(classes=2, train=4, val=2, test=2, size=32, seed=1))
    assert check_dataset(root, images=False).ok
    leaked = _copy_image(root, "train", "test", 0)
    selected_on = _copy_image(root, "train", "val", 1)
    report = check_dataset(root, workers=1)
    image = root / "images" / leaked
    assert report.problems == [f"{image}: in both train and test: a test image must not be trained or selected on "
                               f"(leakage inflates every test metric); a WSOL benchmark's splits are disjoint"]
    assert report.warnings == [f"{root / 'images' / selected_on}: in both train and val: the val split then "
                               f"selects models and thresholds on training images"]
    assert main(["data", "check", str(root), "--metadata-only"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [f"problem: {report.problems[0]}", "1 problems"]
    both = _copy_image(root, "test", "val", 0)  # thresholds chosen on a test image: leakage too
    assert check_dataset(root, images=False).problems[1].startswith(f"{root / 'images' / both}: in both val and test:")


# 5. SIGTERM: one line and the status 143, as Ctrl-C gives "interrupted" and 130; nothing half-written


def test_sigterm_during_cams_says_so_and_leaves_a_resumable_cache(cam_run_32, tmp_path):
    import signal
    import subprocess
    import time

    import tedloc
    from tedloc.data import SyntheticConfig, make_synthetic

    data = make_synthetic(tmp_path / "data", SyntheticConfig(classes=4, train=200, val=4, test=4, size=48, seed=5))
    out = tmp_path / "cache"
    argv = ["cams", "--run", str(cam_run_32), "--data", str(data), "--split", "train", "--out", str(out),
            "--batch-size", "1"]  # a chunk, and the cache's done.npy written, per image
    env = {**os.environ, "TEDLOC_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(tedloc.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "tedloc", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # until some maps are written
        if (out / "done.npy").exists() and np.load(out / "done.npy").any():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it was sent SIGTERM"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err.strip().splitlines()[-1:] == ["terminated (SIGTERM)"], err[-2000:]
    assert "Traceback" not in err
    done = np.load(out / "done.npy")
    assert 0 < done.sum() < len(done)  # stopped part way
    assert not [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".partial"))]
    assert main([*argv[:-1], "64"]) == 0 and np.load(out / "done.npy").all()  # resumed where it stopped


# 6. a resume refused for another configuration names the fields and both values


def test_resume_refusal_names_the_differing_fields(tmp_path):
    from tedloc.engine import RunFolder

    run = RunFolder(tmp_path / "run")
    config = {"epochs": 2, "lr": 0.1, "decoder_channels": [8, 4], "loss": {"weight": 1.0, "kind": "ce"}}
    with run.claim({"config": config, "kind": "cam", "data": "/data/a"}):
        pass
    changed = {**config, "epochs": 3, "decoder_channels": (8, 8), "loss": {"weight": 0.5, "kind": "ce"},
               "optimizer": "sgd"}  # an option the run did not record: not compared
    with pytest.raises(TedlocError) as e:
        run.claim({"config": changed, "kind": "cam", "data": "/data/a"})
    assert str(e.value) == (f"{run.path} holds a run with another configuration (config.epochs: 2 in the run, 3 now; "
                            f"config.decoder_channels: [8, 4] in the run, [8, 8] now; config.loss.weight: 1.0 in the "
                            f"run, 0.5 now); choose another --out")
    many = {**changed, "lr": 0.2, "epochs": 4}
    with pytest.raises(TedlocError) as e:
        run.claim({"config": many, "kind": "has", "data": "/data/b"})
    assert str(e.value) == (f"{run.path} holds a run with another configuration (kind: \"cam\" in the run, \"has\" "
                            f"now; data: \"/data/a\" in the run, \"/data/b\" now; config.epochs: 2 in the run, 4 now; "
                            f"config.lr: 0.1 in the run, 0.2 now; and 2 more: config.decoder_channels, "
                            f"config.loss.weight); choose another --out")  # what it was trained on first
    with run.claim({"config": {**config, "loss": {"weight": 1.0, "kind": "ce", "p": 2}}, "kind": "cam",
                    "data": "/data/a"}):
        pass  # a key added since: not compared
    with pytest.raises(TedlocError, match=r"\(config.loss.p: 2 in the run, \(absent\) now\)"):
        run.claim({"config": config, "kind": "cam", "data": "/data/a"})


# 7. a file that is not UTF-8: reported at its line, not at a byte offset


def test_non_utf8_metadata_is_reported_by_line(tmp_path, capsys):
    import shutil

    from tedloc.data import SyntheticConfig, load_dataset, make_synthetic
    from tedloc.data.box_files import read_box_file
    from tedloc.errors import DataError

    root = make_synthetic(tmp_path / "data", SyntheticConfig(classes=2, train=4, val=2, test=2, size=32, seed=1))
    sizes = root / "metadata" / "train" / "image_sizes.txt"
    lines = sizes.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"train_", b"tr\xe9in_", 1)  # Latin-1 "é" in line 3
    sizes.write_bytes(b"\n".join(lines))
    column = lines[2].index(b"\xe9") + 1
    message = f"not UTF-8 text (invalid continuation byte: byte 0xe9 at column {column}); save it as UTF-8"
    _, problems = load_dataset(root, strict=False)
    assert [str(p) for p in problems] == [f"{sizes}:3: {message}"]
    assert main(["data", "check", str(root), "--metadata-only"]) == 1
    assert f"problem: {sizes}:3: {message}" in capsys.readouterr().out.splitlines()
    boxes = tmp_path / "boxes.txt"
    boxes.write_bytes(b"a.png,1,2,3,4\nb\xff.png,1,2,3,4\n")
    with pytest.raises(DataError) as e:
        read_box_file(boxes)
    assert str(e.value) == f"{boxes}:2: not UTF-8 text (invalid start byte: byte 0xff at column 2); save it as UTF-8"
    shutil.copy(boxes, root / "dataset.yaml")
    with pytest.raises(DataError, match=r"dataset.yaml:2: not UTF-8 text \(invalid start byte"):
        load_dataset(root)
