"""CAM maps, the resumable map cache, and `tedloc evaluate` of the CAM baseline."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tedloc.cli import main
from tedloc.errors import TedlocError
from tedloc.methods import load_model
from tedloc.methods.cam import PretrainConfig, pretrain
from tedloc.methods.run_maps import compute_run_map_cache
from tedloc.pseudolabels import MapCache, class_activation_maps
from tedloc.pseudolabels.compute import normalize_maps
from runtimes import CPU


@pytest.fixture(scope="module")
def cam_run(synthetic_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cam"
    pretrain(synthetic_small, out, PretrainConfig(arch="tedloc_resnet_tiny", input_size=48, epochs=1, batch_size=8,
                                                  workers=0), runtime=CPU)
    return out


def test_cam_is_the_channel_mean_of_weighted_features():
    import timm

    import tedloc.models.cnn  # noqa: F401

    torch.manual_seed(0)
    model = timm.create_model("tedloc_resnet_tiny", num_classes=5).eval()
    x = torch.randn(2, 3, 48, 48)
    cams = class_activation_maps(model, x, torch.tensor([1, 3]))
    feats = model.forward_features(x)
    w = model.get_classifier().weight
    assert torch.allclose(cams[0], (w[1][:, None, None] * feats[0]).mean(0), atol=1e-6)
    assert torch.allclose(cams[1], (w[3][:, None, None] * feats[1]).mean(0), atol=1e-6)
    # CAM pooled over space is the logit without bias (up to the 1/C factor)
    logits = model(x)
    b = model.get_classifier().bias
    assert torch.allclose(cams[0].mean() * feats.shape[1] + b[1], logits[0, 1], atol=1e-4)


def test_normalize_maps_rules():
    maps = torch.stack([torch.arange(4.0).reshape(2, 2), torch.full((2, 2), 7.0), torch.tensor([[1.0, float("nan")],
                                                                                                [0.0, 2.0]])])
    out = normalize_maps(maps)
    assert np.allclose(out[0], [[0, 1 / 3], [2 / 3, 1]]) and not out[1].any() and not out[2].any()


def test_cache_is_made_once_reused_and_resumed(cam_run, synthetic_small, tmp_path):
    cache = compute_run_map_cache(cam_run, synthetic_small, "train", tmp_path / "cache", batch_size=5, runtime=CPU)
    assert cache.complete and len(cache) == 24 and cache.size == (6, 6)
    first = cache.get(np.arange(24)).clone()
    assert first.dtype == torch.float32 and 0 <= first.min() and first.max() <= 1
    stamp = (tmp_path / "cache" / "done.npy").stat().st_mtime_ns
    again = compute_run_map_cache(cam_run, synthetic_small, "train", tmp_path / "cache", runtime=CPU)
    assert (tmp_path / "cache" / "done.npy").stat().st_mtime_ns == stamp and again.complete
    # an interrupted run: rows 10.. never finished (garbage in the file, not marked done)
    partial = MapCache(tmp_path / "cache")
    partial.maps[10:] = 0
    partial.maps.flush()
    partial.done[10:] = False
    partial.done_rows.save()
    with pytest.raises(TedlocError, match="not computed"):
        partial.get([12])
    resumed = compute_run_map_cache(cam_run, synthetic_small, "train", tmp_path / "cache", runtime=CPU)
    assert resumed.complete and torch.allclose(resumed.get(np.arange(24)), first)
    with pytest.raises(TedlocError, match="another source"):
        compute_run_map_cache(cam_run, synthetic_small, "train", tmp_path / "cache", classes="pred", runtime=CPU)
    with pytest.raises(TedlocError, match="other images"):
        compute_run_map_cache(cam_run, synthetic_small, "val", tmp_path / "cache", runtime=CPU)


def test_evaluate_command_reports_the_cam_baseline(cam_run, synthetic_small, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["evaluate", "--run", str(cam_run), "--data", str(synthetic_small), "--split", "test",
                 "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAcc@30", "MaxBoxAcc@50", "MaxBoxAcc@70", "PxAP", "mIoU",
                "threshold", "CL@1", "CL@5", "Top1Loc", "Top5Loc", "GTKnownLoc"):
        assert key in m, key
    assert m["Top1Loc"] <= m["GTKnownLoc"] and m["Top1Loc"] <= m["CL@1"] and m["images"] == 8
    localizer = load_model(cam_run, runtime=CPU)
    scores, maps = localizer.predict(torch.zeros(2, 3, 48, 48))
    assert scores.shape == (2, 4) and maps.shape == (2, 6, 6)
    assert torch.allclose(scores.sum(1), torch.ones(2))


def test_evaluate_command_without_boxes_says_what_is_missing(cam_run, synthetic_small, tmp_path, capsys):
    root = tmp_path / "ds"
    shutil.copytree(synthetic_small, root)
    (root / "metadata" / "test" / "localization.txt").unlink()  # masks only (masks.txt)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--run", str(cam_run), "--data", str(root), "--split", "test", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert {"PxAP", "CL@1", "CL@5"} <= set(m) and "MaxBoxAcc" not in m and "Top1Loc" not in m
    err = capsys.readouterr().err
    assert "note: MaxBoxAcc" in err and "not computed: split 'test' has no GT boxes" in err
    assert main(["evaluate", "--run", str(cam_run), "--data", str(root), "--split", "test", "--save-threshold"]) == 2
    assert "--save-threshold needs GT boxes" in capsys.readouterr().err


def test_gradcam_cache_and_opencv_environment(cam_run, synthetic_small, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    import cv2

    from tedloc.utils.env_check import installed_cv2_distributions

    assert hasattr(cv2, "ximgproc")  # Selective Search needs the contrib build
    assert installed_cv2_distributions() == ["opencv-contrib-python-headless"]
    cache = compute_run_map_cache(cam_run, synthetic_small, "val", tmp_path / "gc", method="gradcam", size=12,
                                  runtime=CPU)
    assert cache.complete and cache.size == (12, 12) and cache.source["method"] == "gradcam"
    maps = cache.get(np.arange(len(cache)))
    assert maps.max() <= 1 and (maps.amax(dim=(1, 2)) > 0.99).sum() >= len(cache) - 1


def test_cam_box_metrics_are_gt_known_and_the_predicted_class_map_is_scored_beside(cam_run, synthetic_small):
    """The papers' convention: MaxBoxAcc of a CAM uses the true class's map; `cam@pred` the predicted one's."""
    from tedloc.data import load_dataset
    from tedloc.eval import WSOLEvaluator
    from tedloc.eval.localizer_eval import evaluate_localizer
    from tedloc.eval.scoremaps import normalize_scoremap

    split = load_dataset(synthetic_small)["test"]
    localizer = load_model(cam_run, runtime=CPU)
    true = evaluate_localizer(localizer, split, all_maps=True, interval=0.001)
    pred = evaluate_localizer(localizer, split, all_maps=True, interval=0.001, map_class="pred")
    assert true["map_class"] == "true" and true["map_size"] == 48 and set(true["maps"]) == {"cam@pred"}
    assert "maps" not in pred and true["interval"] == 0.001
    # the predicted-class version beside the GT-known one equals the `pred` evaluation
    assert true["maps"]["cam@pred"]["MaxBoxAcc"] == pred["MaxBoxAcc"]
    assert true["CL@1"] == pred["CL@1"]
    # the GT-known numbers are those of the maps of the true labels, computed directly
    images = torch.stack([localizer.preprocessing.dataset(split)[i]["image"] for i in range(len(split))])
    cams = localizer.cams(images, torch.as_tensor(split.labels)).double().numpy()
    scores = localizer.predict(images)[0].double().numpy()
    direct = WSOLEvaluator(split, interval=0.001)
    for i, image_id in enumerate(split.image_ids):
        direct.accumulate(image_id, normalize_scoremap(cams[i], (48, 48)), scores[i])
    expected = direct.compute()
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP", "Top1Loc", "Top5Loc", "GTKnownLoc"):
        assert true[key] == pytest.approx(expected[key], abs=1e-9), key


def test_map_size_rescales_maps_and_boxes(cam_run, synthetic_small, tmp_path):
    out = tmp_path / "m.json"
    assert main(["evaluate", "--run", str(cam_run), "--data", str(synthetic_small), "--split", "test",
                 "--map-size", "64", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["map_size"] == 64 and m["interval"] == 0.001 and m["map_class"] == "true"
    from tedloc.data import load_dataset
    from tedloc.eval.conventions import eval_protocol
    from tedloc.eval.localizer_eval import iter_score_maps

    split = load_dataset(synthetic_small)["test"]
    _, maps, _ = next(iter_score_maps(load_model(cam_run, runtime=CPU), split, show_progress=False,
                                   protocol=eval_protocol(map_size=64)))
    assert maps["cam"].shape == (64, 64) and maps["cam"].max() == 1.0
