"""The contract every registered method keeps (one tester, run over the registry, as SMP tests its models).

Each method trains a tiny run on the small synthetic set; then: the run folder's layout, a
:class:`LocalizationModel` with the recorded preprocessing, scores and maps of the right shapes and
ranges, every map kind it offers, a save/load round trip (twice the same outputs; the epoch checkpoint
of the selected epoch gives the selected model), label-free prediction, evaluation, and a tampered
preprocessing record: used where the run trained its weights, refused where they come from timm.
A method without a case below fails ``test_every_method_has_a_case``.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import toy_method  # noqa: F401  (registers "toy", a method from outside the package)
from tedloc.cli import main
from tedloc.data import load_dataset
from tedloc.data.images import load_image
from tedloc.engine import RunFolder
from tedloc.errors import TedlocError
from tedloc.eval.localizer_eval import evaluate_localizer
from tedloc.inference import Localizer
from tedloc.methods import LocalizationModel, MultiMapModel, get_method, list_methods, load_model
from tedloc.models.localizer import map_kinds_of
from runtimes import CPU


def _cam_inputs(data, root):
    return {}, {"input_size": 48, "epochs": 2, "batch_size": 8, "workers": 0, "lr_step": 1}


def _tedloc_inputs(data, root):
    from tedloc.methods.run_maps import compute_run_map_cache
    from tedloc.text import build_anchors

    get_method("cam").train(data, root / "cnn", get_method("cam").config(input_size=48, epochs=1, batch_size=8,
                                                                        workers=0), runtime=CPU)
    compute_run_map_cache(root / "cnn", data, "train", root / "cache", runtime=CPU)
    np.save(root / "emb.npy", np.random.default_rng(0).normal(size=(4, 16)))
    build_anchors(load_dataset(data).class_names, f"file:{root / 'emb.npy'}").save(root / "anchors.safetensors")
    return ({"anchors": root / "anchors.safetensors", "cams": root / "cache"},
            {"encoder": "tedloc_resnet_tiny", "input_size": 48, "decoder_channels": (16, 8), "epochs": 2,
             "batch_size": 8, "lr_step": 1, "k": 4, "selection": "last"})


def _dips_inputs(data, root):
    from tedloc.methods.dips import make_proposals

    cam = get_method("cam")
    cam.train(data, root / "vit", cam.config(arch="tedloc_vit_tiny", input_size=32, epochs=1, batch_size=8, lr=0.01),
              runtime=CPU)
    cam.train(data, root / "cnn", cam.config(input_size=48, epochs=1, batch_size=8), runtime=CPU)
    make_proposals(data, "train", root / "proposals", root / "cnn", "tedloc_vit_tiny", 32, encoder_run=root / "vit",
                   runtime=CPU)
    return ({"proposals": root / "proposals"},
            {"encoder_run": str(root / "vit"), "input_size": 32, "epochs": 2, "classifier_epochs": 1,
             "batch_size": 8, "lr_step": 1, "fg_count": 10, "bg_count": 10})


def _trcamv_inputs(data, root):
    """TrCAM-V trains on a tiny video dataset of the same classes (the synthetic benchmarks share their names); the
    contract's other checks run on the image set."""
    from tedloc.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video
    from tedloc.methods.run_maps import compute_run_map_cache

    video = make_synthetic_video(root / "video", SyntheticVideoConfig(
        classes=len(load_dataset(data).class_names), train_videos=1, val_videos=1, test_videos=1, shots=2,
        min_frames=3, max_frames=4, seed=3))
    cam = get_method("cam")
    cam.train(video, root / "vit", cam.config(arch="tedloc_vit_tiny", input_size=32, epochs=1, batch_size=8),
              runtime=CPU)
    cam.train(video, root / "cnn", cam.config(input_size=48, epochs=1, batch_size=8), runtime=CPU)
    compute_run_map_cache(root / "cnn", video, "train", root / "cache", runtime=CPU)
    return ({"cams": root / "cache", "data": video},
            {"encoder_run": str(root / "vit"), "input_size": 32, "epochs": 2, "classifier_epochs": 1,
             "batch_size": 8, "lr_step": 1, "fg_count": 10, "bg_count": 10, "crf_scale": 0.5})


def _wsolevaluation_inputs(**overrides):
    """has, cutmix, adl, acol, spg: the CAM's tiny run with the method's own options."""
    return lambda data, root: ({}, {"input_size": 48, "epochs": 2, "batch_size": 8, "workers": 0, "lr_step": 1,
                                    **overrides})


def _vit_wsol_inputs(**overrides):
    """tscam, scm, sat: tedloc_vit_tiny from random weights, two tiny epochs."""
    return lambda data, root: ({}, {"arch": "tedloc_vit_tiny", "input_size": 32, "pretrained": False, "epochs": 2,
                                    "batch_size": 8, "lr": 1e-3, "lr_step": 1, "workers": 0, **overrides})


def _nlccam_inputs(data, root):
    """nlccam: tedloc_resnet_tiny with its non-local blocks, Adam, two tiny epochs."""
    return {}, {"input_size": 48, "epochs": 2, "batch_size": 8, "workers": 0, "lr": 1e-3, "lr_step": 1}


def _toy_inputs(data, root):
    return {}, {"input_size": 32, "epochs": 2}


# name -> (data, work folder) -> (training inputs, config overrides): the tiny run of each method
CASES = {"cam": _cam_inputs, "dips": _dips_inputs, "tedloc": _tedloc_inputs, "toy": _toy_inputs,
         "trcamv": _trcamv_inputs}
CASES.update(has=_wsolevaluation_inputs(has_grid_size=8), cutmix=_wsolevaluation_inputs(),
             adl=_wsolevaluation_inputs(adl_drop_rate=0.5), acol=_wsolevaluation_inputs(acol_width=16),
             spg=_wsolevaluation_inputs(spg_width=16))
CASES.update(tscam=_vit_wsol_inputs(), scm=_vit_wsol_inputs(scm_first_iterations=4), sat=_vit_wsol_inputs())
# weights trained by the run
SCRATCH = {"cam", "dips", "toy", "trcamv", "has", "cutmix", "adl", "acol", "spg", "tscam", "scm", "sat"}

CASES.update(nlccam=_nlccam_inputs)
SCRATCH.add("nlccam")


def test_every_method_has_a_case():
    builtin = {m for m in list_methods("trained") if get_method(m).build.__module__.startswith("tedloc.methods.")}
    assert builtin | {"toy"} == set(CASES)


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request, synthetic_small, tmp_path_factory):
    name = request.param
    root = tmp_path_factory.mktemp(f"contract_{name}")
    method = get_method(name)
    inputs, overrides = CASES[name](synthetic_small, root)
    data = inputs.pop("data", synthetic_small)  # a video method trains on video data
    history = method.train(data, root / "run", method.config(**overrides), runtime=CPU, **inputs)
    return name, root / "run", history, overrides


def _images(data, n=3):
    split = load_dataset(data)["test"]
    return split, [load_image(split.image_path(i)) for i in range(n)]


def test_run_folder_layout(trained):
    name, run, history, overrides = trained
    folder = RunFolder(run)
    assert folder.is_finished() and folder.config_path.is_file() and folder.metrics_path.is_file()
    assert len(history) == overrides["epochs"] and folder.epochs() == list(range(1, overrides["epochs"] + 1))
    assert folder.metadata()["kind"] == get_method(name).run_kind
    assert get_method(name).summary(history)


def test_localizer_outputs(trained, synthetic_small):
    name, run, _, overrides = trained
    model = load_model(run, runtime=CPU)
    assert isinstance(model, LocalizationModel)
    assert model.class_names == load_dataset(synthetic_small).class_names
    assert model.preprocessing.to_dict() == RunFolder(run).metadata()["preprocessing"]
    assert model.preprocessing.input_size == overrides["input_size"]
    _, images = _images(synthetic_small)
    x = torch.stack([model.preprocessing.eval_input(im) for im in images])
    scores, maps = model.predict(x)
    assert scores.shape == (3, len(model.class_names)) and maps.ndim == 3 and len(maps) == 3
    assert torch.isfinite(scores).all() and torch.isfinite(maps).all()
    assert torch.allclose(scores.sum(1), torch.ones(3), atol=1e-4) and scores.min() >= 0
    for kind in map_kinds_of(model):
        assert isinstance(model, MultiMapModel) or kind == model.map_kind
    if isinstance(model, MultiMapModel):
        s2, all_maps = model.predict_maps(x, model.map_kinds)
        assert set(all_maps) == set(model.map_kinds) and torch.equal(s2, scores)
        assert torch.equal(all_maps[model.map_kind], maps)


def test_save_load_round_trip(trained, synthetic_small):
    _, run, history, _ = trained
    _, images = _images(synthetic_small)
    first, second = load_model(run, runtime=CPU), load_model(run, runtime=CPU)
    x = torch.stack([first.preprocessing.eval_input(im) for im in images])
    a, b = first.predict(x), second.predict(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    selected = RunFolder(run).metadata().get("selected_epoch", len(history))
    c = load_model(run, epoch=selected, runtime=CPU).predict(x)
    assert torch.allclose(a[0], c[0], atol=1e-6) and torch.allclose(a[1], c[1], atol=1e-6)


def test_label_free_prediction_and_evaluation(trained, synthetic_small):
    _, run, _, _ = trained
    split, images = _images(synthetic_small)
    localizer = Localizer(load_model(run, runtime=CPU), threshold=0.5)
    for p, image in zip(localizer(images), images):
        assert p.map.shape == (image.height, image.width) and 0 <= p.map.min() and p.map.max() <= 1
        x0, y0, x1, y1 = p.box
        assert 0 <= x0 <= x1 < image.width and 0 <= y0 <= y1 < image.height
        assert p.label in load_dataset(synthetic_small).class_names
    metrics = evaluate_localizer(load_model(run, runtime=CPU), split, batch_size=16, all_maps=True)
    assert 0 <= metrics["MaxBoxAcc"] <= 100 and metrics["map"] == load_model(run, runtime=CPU).map_kind


def test_evaluate_command(trained, synthetic_small, capsys):
    _, run, _, _ = trained
    assert main(["evaluate", "--run", str(run), "--data", str(synthetic_small), "--batch-size", "16"]) == 0
    assert "MaxBoxAcc" in capsys.readouterr().out


def test_tampered_preprocessing_is_refused(trained, tmp_path):
    name, run, _, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    meta_path = RunFolder(copy).metadata_path
    meta = json.loads(meta_path.read_text())
    meta["preprocessing"]["mean"] = [0.5, 0.5, 0.5]
    meta_path.write_text(json.dumps(meta))
    if name in SCRATCH:  # weights trained by the run itself (DiPS, TrCAM-V: their ViT by `tedloc pretrain`): its record is the truth, and is used
        assert load_model(copy, runtime=CPU).preprocessing.mean == (0.5, 0.5, 0.5)
        return
    # weights from timm (TeD-Loc's E here): the record must be the normalisation timm's config gives them
    with pytest.raises(TedlocError, match=r"model.json: preprocessing mean \[0.5, 0.5, 0.5\] differs"):
        load_model(copy, runtime=CPU)
