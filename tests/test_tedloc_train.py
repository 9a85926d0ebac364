"""TeD-Loc training end to end on the small synthetic set: runs, resumes exactly, loads as a localizer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tedloc.engine import load_checkpoint
from tedloc.errors import TedlocError
from tedloc.methods import load_model
from tedloc.methods.cam import PretrainConfig, pretrain
from tedloc.methods.run_maps import compute_run_map_cache
from tedloc.methods.tedloc import TeDLocTrainConfig, train_tedloc
from tedloc.text import build_anchors
from runtimes import CPU


@pytest.fixture(scope="module")
def inputs(synthetic_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("tedloc")
    pretrain(synthetic_small, root / "cnn", PretrainConfig(arch="tedloc_resnet_tiny", input_size=48, epochs=1,
                                                           batch_size=8, workers=0), runtime=CPU)
    compute_run_map_cache(root / "cnn", synthetic_small, "train", root / "cache", runtime=CPU)
    table = np.random.default_rng(0).normal(size=(4, 16))
    np.save(root / "emb.npy", table)
    build_anchors(["red circle", "green square", "blue triangle", "yellow diamond"],
                  f"file:{root / 'emb.npy'}").save(root / "anchors.safetensors")
    cfg = TeDLocTrainConfig(encoder="tedloc_resnet_tiny", encoder_run=str(root / "cnn"), input_size=48,
                            decoder_channels=(16, 8), epochs=2, batch_size=8, lr=0.01, lr_step=1, k=4)
    return root, cfg


def _train_whole_and_interrupted(data, root, cfg, tmp_path) -> list[dict]:
    """Train ``cfg`` (2 epochs) in one go into tmp_path/full, and as 1 epoch then resumed into tmp_path/part."""
    full = train_tedloc(data, tmp_path / "full", root / "anchors.safetensors", root / "cache", cfg, runtime=CPU)
    one = TeDLocTrainConfig(**{**cfg.__dict__, "epochs": 1})
    train_tedloc(data, tmp_path / "part", root / "anchors.safetensors", root / "cache", one, runtime=CPU)
    conf = json.loads((tmp_path / "part" / "config.json").read_text())
    conf["config"]["epochs"] = 2
    (tmp_path / "part" / "config.json").write_text(json.dumps(conf))
    train_tedloc(data, tmp_path / "part", root / "anchors.safetensors", root / "cache", cfg, runtime=CPU)
    return full


def test_train_resume_and_localizer(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    full = _train_whole_and_interrupted(synthetic_small, root, cfg, tmp_path)
    assert len(full) == 2 and all(np.isfinite(r["loss_total"]) for r in full)
    a, _, meta = load_checkpoint(tmp_path / "full" / "model")
    b, _, _ = load_checkpoint(tmp_path / "part" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert meta["kind"] == "tedloc" and meta["anchors"]["class_names"][0] == "red circle"
    # the encoder is the pretrained CNN's backbone, and stays frozen
    cnn, _, _ = load_checkpoint(root / "cnn" / "model")
    assert torch.equal(a["encoder.model.stem.0.weight"], cnn["stem.0.weight"])
    localizer = load_model(tmp_path / "full", runtime=CPU)
    scores, maps = localizer.predict(torch.zeros(2, 3, 48, 48))
    assert scores.shape == (2, 4) and maps.shape == (2, 24, 24) and (maps >= 0).all() and (maps <= 1).all()


def test_refuses_mismatched_inputs(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    with pytest.raises(TedlocError, match="no map cache"):
        train_tedloc(synthetic_small, tmp_path / "x", root / "anchors.safetensors", root / "cnn", cfg, runtime=CPU)
    # a sampling option out of range is refused before anything is written
    with pytest.raises(TedlocError, match="bg_border must be in"):
        train_tedloc(synthetic_small, tmp_path / "z", root / "anchors.safetensors", root / "cache",
                     TeDLocTrainConfig(**{**cfg.__dict__, "bg_border": 0.5}), runtime=CPU)
    assert not (tmp_path / "z" / "config.json").exists()
    compute_run_map_cache(root / "cnn", synthetic_small, "val", tmp_path / "val_cache", runtime=CPU)
    with pytest.raises(TedlocError, match="other images"):
        train_tedloc(synthetic_small, tmp_path / "y", root / "anchors.safetensors", tmp_path / "val_cache", cfg,
                     runtime=CPU)


def test_feature_cache_builds_once_resumes_and_refuses_other_encoders(inputs, synthetic_small, tmp_path):
    from tedloc.data import load_dataset
    from tedloc.data.images import load_image
    from tedloc.data.transforms import View
    from tedloc.engine.feature_cache import CachedFeatureDataset, FeatureCache, build_feature_cache
    from tedloc.methods.base import load_encoder
    from tedloc.models import create_encoder

    root, cfg = inputs
    split = load_dataset(synthetic_small)["train"]
    encoder = load_encoder("tedloc_resnet_tiny", 48, run=root / "cnn")
    transform = encoder.preprocessing.replace(input_size=48)
    cache = build_feature_cache(encoder, split, transform, tmp_path / "f", num_views=2, batch_size=8, runtime=CPU)
    assert cache.complete and cache.features.shape == (len(split), 2, encoder.info.channels, 6, 6)
    # a stored feature is E of the stored view of the image (float16)
    view = View.from_tensor(torch.from_numpy(np.array(cache.views[5, 1])))
    image = transform.normalize(view.image(load_image(split.image_path(5))))
    with torch.no_grad():
        expected = encoder(image[None])[0].numpy()
    assert np.allclose(cache.features[5, 1].astype(np.float32), expected, atol=2e-3 * max(1, np.abs(expected).max()))
    assert not np.array_equal(cache.views[5, 0], cache.views[5, 1]) or True  # views may coincide by chance
    # an interrupted build resumes with the missing rows only, to the same values
    before = np.array(cache.features)
    cache.done[3:9] = False
    cache.features[3:9] = 0
    cache.done_rows.save()
    again = build_feature_cache(encoder, split, transform, tmp_path / "f", num_views=2, batch_size=8, runtime=CPU)
    assert again.complete and np.array_equal(np.array(again.features), before)
    with pytest.raises(TedlocError, match="another setting.*encoder_sha1"):
        build_feature_cache(create_encoder("tedloc_resnet_tiny", img_size=48), split, transform, tmp_path / "f", 2,
                            runtime=CPU)
    ds = CachedFeatureDataset(FeatureCache(tmp_path / "f"), split.labels, seed=0)
    item = ds[2]
    assert item["features"].dtype == torch.float32 and item["label"] == int(split.labels[2])


def test_training_from_the_feature_cache_resumes_exactly(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    cached = TeDLocTrainConfig(**{**cfg.__dict__, "feature_cache": str(tmp_path / "features")})
    full = _train_whole_and_interrupted(synthetic_small, root, cached, tmp_path)
    assert len(full) == 2 and (tmp_path / "features" / "done.npy").exists()
    a, _, _ = load_checkpoint(tmp_path / "full" / "model")
    b, _, _ = load_checkpoint(tmp_path / "part" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained_run(inputs, synthetic_small, tmp_path_factory):
    root, cfg = inputs
    run = tmp_path_factory.mktemp("run") / "tedloc"
    train_tedloc(synthetic_small, run, root / "anchors.safetensors", root / "cache", cfg, runtime=CPU)
    return run


def test_prediction_needs_no_label(trained_run, synthetic_small):
    from PIL import Image

    from tedloc.data import load_dataset
    from tedloc.inference import Localizer

    split = load_dataset(synthetic_small)["test"]
    localizer = Localizer.from_run(trained_run)
    meta = json.loads((trained_run / "model.json").read_text())
    assert localizer.threshold == meta["threshold"]
    paths = [split.image_path(i) for i in range(3)]
    preds = localizer(paths + [Image.open(paths[0])])
    assert len(preds) == 4
    for p in preds:
        w, h = p.size
        assert p.map.shape == (h, w) and 0 <= p.map.min() and p.map.max() <= 1
        x0, y0, x1, y1 = p.box
        assert 0 <= x0 <= x1 < w and 0 <= y0 <= y1 < h
        scores = [s for _, _, s in p.top_classes]
        assert len(scores) == 4 and scores == sorted(scores, reverse=True)  # 4 classes: top-5 is all of them
        assert abs(p.scores.sum() - 1) < 1e-5 and p.top_classes[0][1] == p.label
    assert preds[0].box == preds[3].box and np.array_equal(preds[0].scores, preds[3].scores)  # file == PIL image
    otsu = Localizer.from_run(trained_run, threshold="otsu", map_kind="class")(paths[0])[0]
    assert otsu.threshold == "otsu"
    with pytest.raises(TedlocError, match="not offered"):
        Localizer.from_run(trained_run, map_kind="nope")
    with pytest.raises(TedlocError, match="no such image"):
        localizer(["/nonexistent.png"])


def test_predict_and_evaluate_commands(trained_run, synthetic_small, tmp_path, capsys):
    from tedloc.cli import main
    from tedloc.data import load_dataset

    split = load_dataset(synthetic_small)["test"]
    images = [str(split.image_path(i)) for i in range(2)]
    assert main(["predict", "--run", str(trained_run), *images, "--out", str(tmp_path / "pred")]) == 0
    stem = split.image_path(0).stem
    record = json.loads((tmp_path / "pred" / f"{stem}.json").read_text())
    assert len(record["top_classes"]) == 4 and len(record["box"]) == 4
    assert np.load(tmp_path / "pred" / record["map"]).shape == (48, 48)
    assert (tmp_path / "pred" / record["overlay"]).stat().st_size > 0
    out = tmp_path / "m.json"
    assert main(["evaluate", "--run", str(trained_run), "--data", str(synthetic_small), "--split", "test",
                 "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["map"] == "g" and "MaxBoxAcc" in metrics["maps"]["class"] and "CL@1" in metrics
    assert main(["predict", "--run", str(trained_run), images[0], "--threshold", "2"]) == 2


def test_history_goes_to_tensorboard_when_installed(tmp_path, monkeypatch):
    from tedloc.engine import run_folder

    written = []

    class FakeWriter:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_scalar(self, tag, value, global_step):
            written.append((self.log_dir, tag, value, global_step))

    history = [{"epoch": 1, "loss": 2.0, "val_CL@1": 10.0, "note": "x"},
               {"epoch": 2, "loss": 1.5, "val_CL@1": 12.0, "note": "y"}]
    monkeypatch.setattr(run_folder, "tensorboard_writer_factory", lambda: FakeWriter)
    run_folder.RunFolder(tmp_path).write_history(history)
    assert written == [(str(tmp_path / "tensorboard"), "loss", 1.5, 2), (str(tmp_path / "tensorboard"), "val_CL_at_1", 12.0, 2)]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "epoch,loss,val_CL@1,note"
    monkeypatch.setattr(run_folder, "tensorboard_writer_factory", lambda: None)  # not installed: CSV only
    run_folder.RunFolder(tmp_path).write_history(history[:1])
    assert len(written) == 2


def test_sweep_runs_tedloc_trials_scored_by_pseudo_boxes(inputs, synthetic_small, tmp_path):
    pytest.importorskip("optuna")
    import optuna

    from tedloc.cli import main
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    root, _ = inputs
    boxes = tmp_path / "cam.txt"
    make_pseudo_boxes(synthetic_small, "val", "cam", root / "cnn", boxes, runtime=CPU)
    assert main(["sweep", "--method", "tedloc", "--data", str(synthetic_small), "--pseudo-boxes", str(boxes),
                 "--out", str(tmp_path / "sweep"), "--trials", "1", "--epochs", "1", "--batch-size", "8",
                 "--input-size", "48", "--decoder-channels", "8", "--anchors", str(root / "anchors.safetensors"),
                 "--cams", str(root / "cache"), "--encoder-run", str(root / "cnn"),
                 "--feature-cache", str(tmp_path / "features"), "--cache-views", "1", "--workers", "0"]) == 0
    study = optuna.load_study(study_name="tedloc-tedloc", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    (trial,) = study.trials
    assert 0 <= trial.value <= 100 and set(trial.params) == {"lr", "weight_decay", "lr_gamma", "lr_step"}
    meta = json.loads((tmp_path / "sweep" / "trial_0000" / "model.json").read_text())
    assert meta["kind"] == "tedloc"
    config = json.loads((tmp_path / "sweep" / "trial_0000" / "config.json").read_text())["config"]
    assert config["lr"] == pytest.approx(trial.params["lr"]) and config["cache_views"] == 1


def test_class_map_of_the_true_class_beside_the_predicted_one(trained_run, synthetic_small):
    """Paper Table 4: <z_p, t_y> with the true class y; `class@pred` is the predicted-class version."""
    from tedloc.data import load_dataset
    from tedloc.eval.conventions import eval_protocol
    from tedloc.eval.localizer_eval import evaluate_localizer, iter_score_maps
    from tedloc.methods import load_model

    split = load_dataset(synthetic_small)["test"]
    localizer = load_model(trained_run, runtime=CPU)
    true = evaluate_localizer(localizer, split, all_maps=True)
    pred = evaluate_localizer(localizer, split, all_maps=True, map_class="pred")
    assert set(true["maps"]) == {"class", "class@pred"} and set(pred["maps"]) == {"class"}
    assert true["maps"]["class@pred"]["MaxBoxAcc"] == pred["maps"]["class"]["MaxBoxAcc"]
    assert true["MaxBoxAcc"] == pred["MaxBoxAcc"]  # g does not depend on a class
    images = torch.stack([localizer.preprocessing.dataset(split)[i]["image"] for i in range(len(split))])
    labels = torch.as_tensor(split.labels)
    with torch.no_grad():
        out = localizer.model.eval()(images)
        direct = localizer.model.class_map(out["u"], labels).double().numpy()
    for i, (_, maps, _) in enumerate(iter_score_maps(localizer, split, ("g", "class", "class@pred"),
                                                     show_progress=False)):
        from tedloc.eval.scoremaps import normalize_scoremap

        assert np.allclose(maps["class"], normalize_scoremap(direct[i], (48, 48)), atol=1e-6)
    with pytest.raises(TedlocError, match="offers the maps"):
        next(iter_score_maps(localizer, split, ("class@pred",), protocol=eval_protocol(map_class="pred")))


def test_selection_on_val_pseudo_boxes(inputs, synthetic_small, tmp_path):
    """`selection pseudo:FILE`: the epoch and the threshold of the run come from the val pseudo-boxes."""
    from dataclasses import replace

    from tedloc.data import load_dataset
    from tedloc.data.box_files import write_box_file
    from tedloc.eval.localizer_eval import evaluate_localizer

    root, cfg = inputs
    val = load_dataset(synthetic_small)["val"]
    boxes = {i: np.array([0, 0, int(w) // 2, int(h) - 1]) for i, (w, h) in zip(val.image_ids, val.sizes)}
    write_box_file(tmp_path / "left.txt", boxes)
    run = tmp_path / "run"
    history = train_tedloc(synthetic_small, run, root / "anchors.safetensors", root / "cache",
                           replace(cfg, selection=f"pseudo:{tmp_path / 'left.txt'}"), runtime=CPU)
    meta = json.loads((run / "model.json").read_text())
    best = max(range(len(history)), key=lambda i: (history[i]["val_MaxBoxAcc"], -i))
    assert meta["selected_epoch"] == best + 1 and meta["threshold"] == history[best]["val_threshold"]
    assert meta["threshold_source"]["boxes"].endswith("left.txt")
    pseudo = val.with_boxes([boxes[i][None] for i in val.image_ids])
    metrics = evaluate_localizer(load_model(run, runtime=CPU), pseudo, batch_size=8)
    assert metrics["MaxBoxAcc"] == history[best]["val_MaxBoxAcc"] and metrics["threshold"] == meta["threshold"]
    # test: Top-k Loc at the oracle threshold and at the one chosen on the val pseudo-boxes (no GT box used)
    from tedloc.methods import evaluate_run

    test = evaluate_run(run, synthetic_small, "test", runtime=CPU, batch_size=8)
    at_val = evaluate_localizer(load_model(run, runtime=CPU), load_dataset(synthetic_small)["test"], mode="fixed",
                                tau=meta["threshold"], batch_size=8)
    assert test["val_threshold"] == meta["threshold"] and test["val_threshold_source"]["boxes"].endswith("left.txt")
    assert [test[f"{k}@val_thr"] for k in ("Top1Loc", "Top5Loc", "GTKnownLoc")] == [
        at_val[k] for k in ("Top1Loc", "Top5Loc", "GTKnownLoc")]
    with pytest.raises(TedlocError, match="selection must be loc, cls, last or pseudo:FILE"):
        train_tedloc(synthetic_small, tmp_path / "bad", root / "anchors.safetensors", root / "cache",
                     replace(cfg, selection="pseudo"), runtime=CPU)


def test_map_size_and_val_threshold_of_a_run_decide_its_evaluation(inputs, synthetic_small, tmp_path, capsys):
    """A run's map_size is used by its validation and by `tedloc evaluate` (unless --map-size); runs without the
    field keep their input size. Top-k Loc at the run's val threshold beside the oracle one, or a note saying why
    there is none."""
    import shutil
    from dataclasses import replace

    from tedloc.cli import main
    from tedloc.data import load_dataset
    from tedloc.eval import eval_protocol
    from tedloc.eval.localizer_eval import evaluate_localizer

    root, cfg = inputs
    run = tmp_path / "run"
    history = train_tedloc(synthetic_small, run, root / "anchors.safetensors", root / "cache",
                           replace(cfg, map_size=64, epochs=1), runtime=CPU)
    meta = json.loads((run / "model.json").read_text())
    assert meta["config"]["map_size"] == 64 and meta["threshold_source"] == {"split": "val", "boxes": "GT",
                                                                              "criterion": "MaxBoxAcc"}
    dataset = load_dataset(synthetic_small)
    val = evaluate_localizer(load_model(run, runtime=CPU), dataset["val"], eval_protocol("validation", map_size=64),
                             batch_size=8)
    assert val["MaxBoxAcc"] == history[0]["val_MaxBoxAcc"] and val["threshold"] == meta["threshold"]

    def evaluate(folder, *extra) -> dict:
        out = tmp_path / "m.json"
        assert main(["evaluate", "--run", str(folder), "--data", str(synthetic_small), "--json", str(out),
                     "--batch-size", "8", *extra]) == 0
        return json.loads(out.read_text())

    m = evaluate(run)
    printed = capsys.readouterr()
    at_val = evaluate_localizer(load_model(run, runtime=CPU), dataset["test"], mode="fixed", tau=meta["threshold"],
                                map_size=64, batch_size=8)
    assert m["map_size"] == 64 and m["val_threshold"] == meta["threshold"]
    assert m["Top1Loc@val_thr"] == at_val["Top1Loc"] and m["Top5Loc@val_thr"] == at_val["Top5Loc"]
    assert "Top1Loc@val_thr" in printed.out and "val_threshold_from" in printed.out and "val_thr" not in printed.err
    assert evaluate(run, "--map-size", "32")["map_size"] == 32  # the option wins
    older = tmp_path / "older"  # a run made before map_size existed, and without a stored threshold
    shutil.copytree(run, older)
    record = json.loads((older / "model.json").read_text())
    del record["config"]["map_size"]
    record["threshold"] = record["threshold_source"] = None
    (older / "model.json").write_text(json.dumps(record))
    m = evaluate(older)
    assert m["map_size"] == 48 and "val_threshold" not in m and "Top1Loc" in m
    assert "Top1Loc@val_thr" in capsys.readouterr().err and any("stores no threshold" in n for n in m["not_computed"])
    assert main(["evaluate", "--run", str(older), "--data", str(synthetic_small), "--split", "test",
                 "--save-threshold", "--batch-size", "8"]) == 0  # a threshold of the test split is no val threshold
    m = evaluate(older)
    assert "val_threshold" not in m and any("chosen on split 'test', not on val" in n for n in m["not_computed"])


def test_a_run_own_maps_as_pseudo_labels(trained_run, synthetic_small, tmp_path):
    """``tedloc cams --source map``: a run's own localization map (TeD-Loc's g) as the next round's pseudo-labels."""
    from tedloc.data import load_dataset
    from tedloc.data.torch_dataset import WSOLImageDataset
    from tedloc.pseudolabels.map_cache import MapCache

    compute_run_map_cache(trained_run, synthetic_small, "train", tmp_path / "own", method="map", runtime=CPU)
    model = load_model(trained_run, runtime=CPU)
    split = load_dataset(synthetic_small)["train"]
    dataset = WSOLImageDataset(split, model.preprocessing)
    images = torch.stack([dataset[i]["image"] for i in range(4)])
    with torch.no_grad():
        maps = model.predict(images)[1]
    maps = (maps - maps.amin((1, 2), keepdim=True)) / (maps.amax((1, 2), keepdim=True) - maps.amin((1, 2), keepdim=True))
    stored = torch.from_numpy(MapCache(tmp_path / "own").get(range(4)).numpy())
    assert stored.shape == maps.shape and torch.allclose(stored, maps, atol=2e-3)  # float16, min-max
    assert json.loads((tmp_path / "own" / "index.json").read_text())["source"]["method"] == "map"
