"""The pipeline behind `tedloc demo` / `tedloc bench`: every step runs, results and report are written,
and a second call reuses everything instead of training again."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tedloc.methods.cam import PretrainConfig
from tedloc.methods.tedloc import TeDLocTrainConfig
from tedloc.recipes import VARIANTS, Recipe, run_recipe
from tedloc.recipes.presets import PRESETS, get_preset
from runtimes import CPU


def test_pipeline_runs_and_resumes(synthetic_small, tmp_path):
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(4, 16)))
    recipe = Recipe(
        pretrain=PretrainConfig(input_size=48, epochs=1, batch_size=8, workers=0),
        tedloc=TeDLocTrainConfig(decoder_channels=(8,), epochs=1, batch_size=8, k=4, cache_views=1),
        variants=("tedloc", "tedloc_no_orth", "tedloc_kd"), text_encoder=f"file:{tmp_path / 'emb.npy'}", overlays=2)
    out = tmp_path / "out"
    logs: list[str] = []
    results = run_recipe(synthetic_small, out, recipe, log=logs.append, runtime=CPU)
    assert list(results) == ["centered_box", "centered_gaussian", "cam", "tedloc", "tedloc_no_orth", "tedloc_kd"]
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    for method in ("cam", "tedloc"):
        assert {"CL@1", "MaxBoxAcc", "MaxBoxAccV2", "Top1Loc", "Top5Loc", "mIoU"} <= set(results[method])
    assert "class" in results["tedloc"]["maps"] and "curves" not in results["tedloc"]
    report = (out / "report.md").read_text()
    assert "| tedloc_kd | class |" in report and "report/test_00000.png" in report
    assert (out / "report" / "test_00000.png").exists()
    no_orth = json.loads((out / "runs" / "tedloc_no_orth" / "model.json").read_text())
    assert no_orth["anchors"]["orthogonalized"] is False
    assert json.loads((out / "runs" / "tedloc_kd" / "model.json").read_text())["config"]["lambdas"] == [1, 0, 0]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.safetensors")}
    assert run_recipe(synthetic_small, out, recipe, log=logs.append, runtime=CPU) == results
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.safetensors")} == stamps


def test_presets_are_well_formed():
    for name in PRESETS.names():
        recipe = get_preset(name)
        assert all(v in VARIANTS for v in recipe.variants) and recipe.tedloc.epochs >= 1
    with pytest.raises(Exception, match="unknown"):
        get_preset("nope")


def test_pipeline_with_dips(synthetic_small, tmp_path):
    """DiPS's steps: its ViT, one proposal cache per map set, a shared classifier stage, a run per variant."""
    from tedloc.methods.dips import DiPSTrainConfig

    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(4, 16)))
    recipe = Recipe(
        pretrain=PretrainConfig(input_size=32, epochs=1, batch_size=8, workers=0),
        tedloc=TeDLocTrainConfig(decoder_channels=(8,), epochs=1, batch_size=8, k=4, cache_views=1),
        text_encoder=f"file:{tmp_path / 'emb.npy'}", centered_box=False,
        vit=PretrainConfig(arch="tedloc_vit_tiny", input_size=32, epochs=1, batch_size=8, workers=0,
                           optimizer="adamw", lr=1e-3),
        dips=DiPSTrainConfig(classifier_epochs=1, epochs=1, batch_size=8, fg_count=5, bg_count=5, crf_scale=0.5),
        dips_variants=("dips", "dips_mean_map"))
    out = tmp_path / "out"
    results = run_recipe(synthetic_small, out, recipe, log=lambda _: None, runtime=CPU)
    assert list(results) == ["cam", "tedloc", "dips", "dips_mean_map"] and results["dips"]["map"] == "fg"
    quality = json.loads((out / "proposals.json").read_text())
    assert set(quality) == {"h0-1-2-3", "mean"} and quality["h0-1-2-3"]["images"] == 24
    assert "## DiPS proposals of the train split" in (out / "report.md").read_text()
    metas = [json.loads((out / "runs" / v / "model.json").read_text()) for v in ("dips", "dips_mean_map")]
    assert [m["config"]["heads"] for m in metas] == [[0, 1, 2, 3], []]
    assert metas[0]["classifier_history"] == metas[1]["classifier_history"]  # one shared stage 1
    assert metas[0]["config"]["classifier_dir"] == str((out / "runs" / "dips_classifier").resolve())
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.safetensors")}
    assert run_recipe(synthetic_small, out, recipe, log=lambda _: None, runtime=CPU) == results
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.safetensors")} == stamps


def test_a_recipe_refuses_a_job_of_several_processes(tmp_path, monkeypatch):
    import torch

    from tedloc.errors import TedlocError
    from tedloc.utils.device import Runtime
    from tedloc.utils.distributed import Distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    runtime = Runtime(torch.device("cpu"), "fp32", Distributed(0, 2, 0))  # what Runtime.create gives rank 0
    with pytest.raises(TedlocError, match="the recipes run in one process"):
        run_recipe(tmp_path / "data", tmp_path / "out", get_preset("demo"), runtime=runtime)
    assert not (tmp_path / "out").exists()


def _small_recipe(tmp_path, tedloc: dict | None = None, **changes) -> Recipe:
    """The small recipe of the tests below (random text embeddings, no centered box, no overlays), with the TeD-Loc
    options ``tedloc`` and the recipe fields ``changes``."""
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(4, 16)))
    return Recipe(
        pretrain=PretrainConfig(input_size=32, epochs=1, batch_size=8, workers=0),
        tedloc=TeDLocTrainConfig(decoder_channels=(8,), epochs=1, batch_size=8, k=4, cache_views=1, **(tedloc or {})),
        text_encoder=f"file:{tmp_path / 'emb.npy'}", centered_box=False, overlays=0, **changes)


def test_pseudo_labels_from_a_post_hoc_map(synthetic_small, tmp_path):
    """``pseudo_labels: gradcam``: TeD-Loc learns from the classifier's Grad-CAM, cached apart from its CAM."""
    from tedloc.errors import TedlocError
    from tedloc.pseudolabels.map_cache import MapCache

    recipe = _small_recipe(tmp_path, {"fg_pool": 1.0, "bg_pool": 0.05}, pseudo_labels="gradcam")
    out = tmp_path / "out"
    results = run_recipe(synthetic_small, out, recipe, log=lambda _: None, runtime=CPU)
    assert list(results) == ["cam", "tedloc"] and not (out / "cache" / "cams_train").exists()
    assert MapCache(out / "cache" / "gradcam_train").source["method"] == "gradcam"
    config = json.loads((out / "runs" / "tedloc" / "model.json").read_text())["config"]
    assert (config["fg_pool"], config["bg_pool"]) == (1.0, 0.05)
    demo = get_preset("demo")
    assert demo.pseudo_labels == "gradcam" and (demo.tedloc.fg_pool, demo.tedloc.bg_pool) == (1.0, 1.0)
    assert demo.tedloc.bg_border == 0.125 and demo.tedloc_rounds == 3
    assert (demo.dips.background, demo.dips.bg_pool, demo.dips.bg_border) == ("border", 1.0, 0.125)
    with pytest.raises(TedlocError, match="pseudo_labels must be one of cam, gradcam, .*, clip-es, got 'x'"):
        run_recipe(synthetic_small, out, dataclasses.replace(recipe, pseudo_labels="x"), runtime=CPU)


def test_a_changed_config_is_refused_not_silently_reused(synthetic_small, tmp_path):
    """A second call whose TeD-Loc config differs from the finished run's names the field (no stale results)."""
    from tedloc.errors import TedlocError

    recipe = _small_recipe(tmp_path)
    out = tmp_path / "out"
    run_recipe(synthetic_small, out, recipe, log=lambda _: None, runtime=CPU)
    changed = dataclasses.replace(recipe, tedloc=dataclasses.replace(recipe.tedloc, k=5))
    with pytest.raises(TedlocError, match=r"runs/tedloc holds a run with another configuration \(.*k"):
        run_recipe(synthetic_small, out, changed, log=lambda _: None, runtime=CPU)


def test_self_training_rounds(synthetic_small, tmp_path):
    """``tedloc_rounds: 2``: round 2 learns from round 1's own maps of the train split; the report lists each
    round's val MaxBoxAcc; a second call reuses both rounds."""
    from tedloc.errors import TedlocError
    from tedloc.pseudolabels.map_cache import MapCache

    recipe = _small_recipe(tmp_path, {"bg_border": 0.125}, tedloc_rounds=2)
    out = tmp_path / "out"
    results = run_recipe(synthetic_small, out, recipe, log=lambda _: None, runtime=CPU)
    assert list(results) == ["cam", "tedloc"]
    first, last = out / "runs" / "tedloc_round1", out / "runs" / "tedloc"
    own = MapCache(out / "cache" / "tedloc_round1_train")
    assert own.source["method"] == "map" and own.source["run"] == str(first.resolve())
    assert json.loads((first / "config.json").read_text())["cams"] == str(out / "cache" / "cams_train")
    assert json.loads((last / "config.json").read_text())["cams"] == str(own.root)
    assert json.loads((last / "model.json").read_text())["config"]["bg_border"] == 0.125
    vals = [json.loads((r / "model.json").read_text())["history"][0]["val_MaxBoxAcc"] for r in (first, last)]
    note = f"val MaxBoxAcc of each round: tedloc: {vals[0]:.2f} -> {vals[1]:.2f}."
    assert note in (out / "report.md").read_text() and note in json.loads((out / "recipe.json").read_text())["notes"][0]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.safetensors")}
    assert run_recipe(synthetic_small, out, recipe, log=lambda _: None, runtime=CPU) == results
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.safetensors")} == stamps
    assert note.replace("'", "&#x27;").replace(">", "&gt;") in (out / "report.html").read_text()
    with pytest.raises(TedlocError, match="tedloc_rounds must be >= 1, got 0"):
        run_recipe(synthetic_small, out, dataclasses.replace(recipe, tedloc_rounds=0), runtime=CPU)
    # another number of rounds over the same folder: runs/tedloc learnt from other maps, refused naming them
    with pytest.raises(TedlocError, match=r"runs/tedloc holds a run with another configuration \(.*cams"):
        run_recipe(synthetic_small, out, dataclasses.replace(recipe, tedloc_rounds=3), log=lambda _: None,
                   runtime=CPU)


def test_a_run_without_a_newer_option_counts_as_its_default(synthetic_small, tmp_path):
    """A finished run recorded before an option existed is reused only when the option keeps its default."""
    from tedloc.recipes.pipeline import finished_run

    recipe = _small_recipe(tmp_path)
    out = tmp_path / "out"
    run_recipe(synthetic_small, out, recipe, log=lambda _: None, runtime=CPU)
    run = out / "runs" / "tedloc"
    record = json.loads((run / "config.json").read_text())
    del record["config"]["bg_border"]  # as written before the option existed
    (run / "config.json").write_text(json.dumps(record))
    config = json.loads((run / "model.json").read_text())["config"]
    config = TeDLocTrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    assert finished_run(run, config)
    assert not finished_run(run, dataclasses.replace(config, bg_border=0.125))
