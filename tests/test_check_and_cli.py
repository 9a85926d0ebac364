"""`tedloc data check` and the CLI: all problems at once, clear errors, no tracebacks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from tedloc.cli import build_parser, main
from tedloc.data import check_dataset


@pytest.fixture()
def broken(synthetic_small, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(synthetic_small, root)
    ids = (root / "metadata" / "train" / "image_ids.txt").read_text().splitlines()
    (root / "images" / ids[0]).unlink()  # missing
    (root / "images" / ids[1]).write_bytes(b"garbage")  # unreadable
    Image.new("RGB", (30, 30)).save(root / "images" / ids[2])  # wrong size
    loc = root / "metadata" / "val" / "localization.txt"
    lines = loc.read_text().splitlines()
    first = lines[0].split(",")
    lines[0] = ",".join(first[:1] + ["40", "1", "2", "3"])  # x1 < x0
    loc.write_text("\n".join(lines) + "\n")
    return root, ids


def test_check_reports_everything_at_once(broken):
    root, ids = broken
    report = check_dataset(root, workers=1)
    text = "\n".join(report.problems)
    assert not report.ok and len(report.problems) == 4
    assert f"{ids[0]}: image file not found" in text
    assert f"{ids[1]}: cannot read image" in text
    assert "image is 30x30 but image_sizes.txt says 48x48" in text
    assert "val/localization.txt:1: box (40, 1, 2, 3) has x1 < x0" in text


def test_check_json_cli(broken, capsys):
    root, _ = broken
    assert main(["data", "check", str(root), "--json", "--workers", "2"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == 4 and len(report["problems"]) == 4
    assert report["splits"]["train"] == {"images": 24, "boxes": 24, "masks": 24}
    assert report["splits"]["val"]["boxes"] == 7


def test_check_clean_dataset(synthetic_small, capsys):
    assert main(["data", "check", str(synthetic_small)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")


def test_every_subcommand_has_help():
    parser = build_parser()
    for argv in (["--help"], ["data", "--help"], ["data", "tinyimagenet", "--help"], ["data", "synthetic", "--help"],
                 ["data", "import-wsol", "--help"], ["data", "check", "--help"],
                 ["data", "download", "tinyimagenet", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        assert e.value.code == 0


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tedloc", "data", "check", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert str(tmp_path / "missing") in proc.stderr


def test_synthetic_cli(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["data", "synthetic", "--out", str(out), "--classes", "3", "--train", "6", "--val", "3",
                 "--test", "3", "--size", "32"]) == 0
    assert "3 classes" in capsys.readouterr().out


def test_import_wsol_cli_with_masks(wsol_metadata, tmp_path, capsys):
    masks = wsol_metadata.parent / "test_data" / "test_masks"
    out = tmp_path / "oi"
    assert main(["data", "import-wsol", "--metadata-root", str(wsol_metadata), "--dataset", "OpenImages",
                 "--masks", str(masks), "--out", str(out)]) == 0
    text = capsys.readouterr()
    assert "skipped split train" in text.err and "3,854 masks" in text.out


def test_training_commands_expose_every_config_field():
    import dataclasses

    from tedloc.cli.config_args import config_from_args
    from tedloc.methods.cam import PretrainConfig
    from tedloc.methods.tedloc import TeDLocTrainConfig

    for name, cls, required in (("train", TeDLocTrainConfig, ["--data", "d", "--anchors", "a", "--cams", "c", "--out", "o"]),
                                ("pretrain", PretrainConfig, ["--data", "d", "--out", "o"])):
        parser = build_parser([name])
        args = parser.parse_args([name, *required])
        assert config_from_args(cls, args) == cls()  # the defaults round-trip, tuples included
        assert {f.name for f in dataclasses.fields(cls)} <= set(vars(args))
    args = build_parser(["train"]).parse_args(
        ["train", "--data", "d", "--anchors", "a", "--cams", "c", "--out", "o", "--lr-gamma", "0.5",
         "--decoder-channels", "16", "8", "--lambdas", "1", "0", "2", "--pretrained", "--resize-size", "80"])
    cfg = config_from_args(TeDLocTrainConfig, args)
    assert (cfg.lr_gamma, cfg.decoder_channels, cfg.lambdas, cfg.pretrained, cfg.resize_size) == \
        (0.5, (16, 8), (1.0, 0.0, 2.0), True, 80)
    args = build_parser(["pretrain"]).parse_args(["pretrain", "--data", "d", "--out", "o", "--no-nesterov"])
    assert config_from_args(PretrainConfig, args).nesterov is False


def test_training_order_does_not_depend_on_progress_bars(monkeypatch):
    # progress() wraps DataLoaders in every training loop; whether a bar is shown (a terminal) must
    # not change the batches (tqdm.auto's bar calls iter() once when made, drawing from the loader's
    # generator: see progress()'s docstring)
    import torch
    from torch.utils.data import DataLoader

    from tedloc.utils.progress import progress

    def batches(flag: str) -> list[list[int]]:
        monkeypatch.setenv("TEDLOC_PROGRESS", flag)
        loader = DataLoader(list(range(40)), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3))
        return [b.tolist() for b in progress(loader, desc="test")]

    shown, hidden = batches("1"), batches("0")
    assert shown == hidden and sorted(sum(shown, [])) == list(range(40))


def test_every_option_has_help_that_shows_its_default():
    import argparse

    from tedloc.cli import build_parser, show_defaults
    from tedloc.cli.commands import COMMANDS
    from tedloc.methods import list_methods

    build_parser(None)  # registers the commands
    problems = []
    for name, (_, configure, wants_argv) in COMMANDS.items():
        for argv in ([["--method", m] for m in list_methods("trained")] if name in ("train", "sweep") else [None]):
            parser = argparse.ArgumentParser()
            configure(parser, argv) if wants_argv else configure(parser)
            show_defaults(parser)
            stack = [(name, parser)]
            while stack:
                where, p = stack.pop()
                for action in p._actions:
                    if isinstance(action, argparse._SubParsersAction):
                        stack += [(f"{where} {n}", sp) for n, sp in action.choices.items()]
                    elif action.dest != "help" and not action.help:
                        problems.append(f"{where} {action.option_strings or action.dest}: no help")
                    elif (action.option_strings and action.default not in (None, argparse.SUPPRESS)
                          and (action.nargs != 0 or isinstance(action, argparse.BooleanOptionalAction))
                          and "default" not in action.help.lower()):
                        problems.append(f"{where} {action.option_strings[0]}: the help hides the default")
    assert not problems, problems


def test_pretrain_takes_a_config_that_names_its_method(tmp_path, capsys):
    """`tedloc pretrain --config yto_classifier` (a config saying `method: cam`) is the CAM's config; a config of
    another method is refused in one line naming it."""
    from tedloc.cli import build_parser, main
    from tedloc.cli.method_args import method_from_args

    argv = ["pretrain", "--config", "yto_classifier", "--data", "d", "--out", "o"]
    args = build_parser(argv).parse_args(argv)
    assert method_from_args(args).name == "cam" and args.arch == "resnet50" and args.epochs == 100
    code = main(["pretrain", "--config", "yto_trcamv", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "method: trcamv" in err[0] and "tedloc train --config" in err[0]


def test_help_says_what_leaving_out_an_option_does():
    """`tedloc predict --out`: left out, the results are only printed; `tedloc pseudo-boxes --method`: no default,
    required to make boxes."""
    import argparse

    from tedloc.cli import build_parser
    from tedloc.cli.commands import COMMANDS

    build_parser(None)

    def option(command: str, flag: str) -> argparse.Action:
        parser = argparse.ArgumentParser()
        COMMANDS[command][1](parser)
        return next(a for a in parser._actions if flag in a.option_strings)

    out = option("predict", "--out")
    assert out.default is None and "default: print only" in out.help
    method = option("pseudo-boxes", "--method")
    assert method.default is None and "required" in method.help and "no default" in method.help
