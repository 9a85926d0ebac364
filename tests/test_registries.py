"""One source of truth each: the preprocessing record, the registries the command line reads."""
from __future__ import annotations

import json

import pytest

from tedloc.cli import build_parser, main
from tedloc.data import Preprocessing
from tedloc.errors import OptionError, TedlocError
from runtimes import CPU


def test_preprocessing_record_round_trips_and_fills_old_records():
    pre = Preprocessing(48, 56, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), "bicubic")
    assert Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    old = {"input_size": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # before the record
    assert Preprocessing.from_dict(old) == Preprocessing(64)


@pytest.mark.parametrize("record, message", [
    ({"mean": [0, 0, 0], "std": [1, 1, 1]}, "run/model.json: no 'input_size'"),
    ({"input_size": 0, "mean": [0, 0, 0], "std": [1, 1, 1]}, "input_size must be positive"),
    ({"input_size": 8, "mean": [0, 0], "std": [1, 1, 1]}, "3 values each"),
    ({"input_size": 8, "mean": [0, 0, 0], "std": [1, 1, 1], "interpolation": "lanczos"}, "interpolation must be"),
])
def test_bad_preprocessing_records_are_one_line_errors(record, message):
    with pytest.raises(TedlocError, match=message):
        Preprocessing.from_dict(record, where="run/model.json")


def test_normalisation_mismatch_is_refused():
    imagenet = Preprocessing(64)
    imagenet.check_normalization(Preprocessing(224, mean=[0.485, 0.456, 0.406]), "x")  # sizes may differ
    clip = Preprocessing(64, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
    with pytest.raises(TedlocError,
                       match="x: preprocessing mean .* differs from .*, the normalisation its weights expect"):
        imagenet.check_normalization(clip, "x")


def test_models_carry_their_weights_preprocessing(tmp_path):
    from safetensors.torch import save_file

    from tedloc.models import create_encoder
    from tedloc.models.classifier import build_classifier

    assert build_classifier("tedloc_resnet_tiny", 3, input_size=48).preprocessing == Preprocessing(48)
    vit = create_encoder("vit_tiny_patch16_224.augreg_in21k", img_size=32)  # timm's config for these weights: 0.5
    assert vit.preprocessing.mean == (0.5, 0.5, 0.5) and vit.preprocessing.input_size == 32
    scratch = build_classifier("vit_tiny_patch16_224", 3, input_size=32)  # trained here: ImageNet's statistics
    assert scratch.preprocessing == Preprocessing(32)
    save_file({k: v.contiguous() for k, v in scratch.state_dict().items()}, tmp_path / "w.safetensors")
    from_file = build_classifier("vit_tiny_patch16_224", 3, weights=str(tmp_path / "w.safetensors"), input_size=32)
    assert from_file.preprocessing.mean == (0.5, 0.5, 0.5)  # a weight file: the name's normalisation


def test_encoder_run_keeps_the_normalisation_it_was_trained_under(tmp_path):
    from tedloc.engine import RunFolder, save_checkpoint
    from tedloc.methods.base import load_encoder
    from tedloc.models.classifier import build_classifier

    model = build_classifier("vit_tiny_patch16_224", 3, input_size=32)
    save_checkpoint(RunFolder(tmp_path).model_stem, model, {"arch": "vit_tiny_patch16_224", "kind": "classifier",
                                                            "preprocessing": model.preprocessing.to_dict()})
    encoder = load_encoder("vit_tiny_patch16_224", 32, run=tmp_path)
    assert encoder.preprocessing == Preprocessing(32)  # not timm's 0.5 of the name: E was trained under ImageNet's


def test_a_resume_under_another_preprocessing_is_refused(tmp_path):
    from tedloc.engine import RunFolder

    run = RunFolder(tmp_path / "run")
    run.claim({"config": {"a": 1}})
    run.confirm("preprocessing", Preprocessing(48).to_dict())
    run.confirm("preprocessing", Preprocessing(48).to_dict())
    run.claim({"config": {"a": 1}})  # a resume claims the folder again: the record must survive it
    with pytest.raises(TedlocError, match="another preprocessing \\(mean differs"):
        run.confirm("preprocessing", Preprocessing(48, mean=(0.5, 0.5, 0.5)).to_dict())
    config = json.loads(run.config_path.read_text())
    config["preprocessing"] = {"input_size": 48, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    run.config_path.write_text(json.dumps(config))  # a record written before resize/interpolation were recorded
    run.confirm("preprocessing", Preprocessing(48).to_dict())


def test_pseudo_box_settings_compare_as_before():
    from tedloc.protocol.make_boxes import _same_settings

    assert _same_settings({"method": "ss", "clip_model": None, "fraction": 0.2}, {"method": "ss", "fraction": 0.2})
    assert not _same_settings({"method": "rpn", "weights": None}, {"method": "rpn"})  # random != default weights
    assert not _same_settings(None, {"method": "ss"})


def test_methods_annotators_and_map_sources_come_from_their_registries():
    from tedloc.pseudolabels.sources import MAP_SOURCES
    from tedloc.methods import get_method, list_methods
    from tedloc.protocol.annotators import ANNOTATORS


    assert {"cam", "tedloc"} <= set(list_methods())
    trained = lambda: list_methods("trained")  # noqa: E731
    for command, option, registry in (("train", "--method", trained), ("sweep", "--method", trained),
                                      ("pseudo-boxes", "--method", ANNOTATORS.names),
                                      ("cams", "--source", MAP_SOURCES.names),
                                      ("evaluate", "--method", lambda: list_methods("training-free"))):
        parser = build_parser([command])
        action = next(a for a in parser._subparsers._group_actions[0].choices[command]._actions
                      if option in a.option_strings)
        assert list(action.choices) == list(registry()), command  # the names once the parser is built
    assert {"cam", "gradcam", "clip-es", "clip", "sclip", "naclip"} <= set(MAP_SOURCES.names())
    with pytest.raises(TedlocError, match=r"unknown method 'nope'; available: (.*, )?cam, "):
        get_method("nope")


def test_train_options_follow_the_method(capsys):
    args = build_parser(["train", "--method", "cam"]).parse_args(
        ["train", "--method", "cam", "--data", "d", "--out", "o", "--arch", "resnet18"])
    assert args.arch == "resnet18" and not hasattr(args, "anchors")
    with pytest.raises(SystemExit):  # TeD-Loc needs its inputs
        build_parser(["train"]).parse_args(["train", "--data", "d", "--out", "o"])
    assert "--anchors" in capsys.readouterr().err


def test_unknown_run_kind_names_the_file(tmp_path):
    from tedloc.methods import load_model

    (tmp_path / "model.json").write_text(json.dumps({"kind": "mystery"}))
    with pytest.raises(TedlocError, match=r"model.json: unknown run kind 'mystery'; known: (.*, )?classifier, "):
        load_model(tmp_path, runtime=CPU)


def test_library_value_errors_are_one_line(monkeypatch, capsys):
    import tedloc.cli.evaluate as evaluate_cli

    def fail(*args, **kwargs):
        raise ValueError("bad value of something\nsecond line")

    monkeypatch.setattr(evaluate_cli, "load_dataset", fail)
    assert main(["evaluate-maps", "--data", "d", "--maps", "m"]) == 2
    assert capsys.readouterr().err == "error: ValueError: bad value of something (--verbose shows where)\n"


def test_option_error_is_also_a_value_error():
    assert issubclass(OptionError, ValueError) and issubclass(OptionError, TedlocError)


def test_evaluating_a_mistyped_run_makes_no_folder(synthetic_small, tmp_path, capsys):
    typo = tmp_path / "runz"
    assert main(["evaluate", "--run", str(typo), "--data", str(synthetic_small), "--save-threshold",
                 "--device", "cpu"]) == 2
    assert "no model.json" in capsys.readouterr().err and not typo.exists()


def test_a_model_json_that_is_no_object_or_has_no_config(tmp_path):
    from tedloc.engine import RunRecord
    from tedloc.methods import load_model

    (tmp_path / "model.json").write_text("[1, 2]")
    with pytest.raises(TedlocError, match="model.json: expected a JSON object"):
        load_model(tmp_path, runtime=CPU)
    assert RunRecord.from_dict({"kind": "classifier", "class_names": ["a"], "config": None}).config == {}
