"""`tedloc bench zoo` on a tiny synthetic dataset: every chosen method trained alike, evaluated (the CAM run's
post-hoc maps too), one comparison table with the seconds, the protocol table; a second call reuses everything;
the paper path from the <dataset>_<method> configs with random weights; bad options are one line before any work."""
from __future__ import annotations

import json

import pytest

from tedloc.cli import main
from tedloc.errors import OptionError
from tedloc.recipes.zoo import ZOO_METHODS, parse_methods, zoo_paper_recipe, zoo_preset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["epochs=2", "lr_step=1", "input_size=32", "batch_size=8", "acol.acol_width=16"]


def test_presets_and_methods():
    assert parse_methods(None) == ZOO_METHODS and parse_methods("has, cam,has") == ("has", "cam")
    with pytest.raises(OptionError, match="--methods: dips; choose from cam, has"):
        parse_methods("dips")
    recipe = zoo_preset("synthetic", ("cam", "adl", "sat"), {"epochs": 1, "adl.adl_drop_rate": 0.5})
    cam, adl, sat = (recipe.configs[m] for m in ("cam", "adl", "sat"))
    assert cam.arch == adl.arch == "tedloc_resnet_tiny" and sat.arch == "tedloc_vit_tiny"
    assert cam.epochs == adl.epochs == sat.epochs == 1 and adl.adl_drop_rate == 0.5
    assert cam.selection == adl.selection == sat.selection == "loc" and not sat.pretrained
    assert "gradcam" in recipe.posthoc and "scorecam" not in recipe.posthoc
    lrs = {m: c.lr for m, c in zoo_preset("synthetic", ("cam", "acol", "nlccam")).configs.items()}
    assert lrs == {"cam": 0.1, "acol": 0.01, "nlccam": 1e-3}  # ACoL's branches diverge at 0.1 from scratch
    assert "scorecam" in zoo_paper_recipe("cub", ("cam",)).posthoc
    with pytest.raises(OptionError, match="--set has.x: 'has' is not among the methods"):
        zoo_preset("synthetic", ("cam",), {"has.x": 1})
    with pytest.raises(OptionError, match="no method's config has 'nope'"):
        zoo_preset("synthetic", ("cam",), {"nope": 1})
    paper = zoo_paper_recipe("cub", ("cam", "has", "tscam"))
    assert paper.configs["has"].arch == "resnet50" and paper.configs["tscam"].arch == "deit_small_patch16_224"
    assert {c.epochs for c in paper.configs.values()} == {50} and paper.configs["cam"].selection == "loc"
    assert {c.batch_size for c in paper.configs.values()} == {32}
    assert zoo_paper_recipe("ilsvrc", ("sat",)).configs["sat"].area_threshold == 0.35


def test_bench_zoo_on_a_tiny_dataset(synthetic_small, tmp_path, capsys):
    out = tmp_path / "zoo"
    args = ["bench", "zoo", "--data", str(synthetic_small), "--out", str(out), "--methods", "cam,has,acol,tscam",
            "--set", *TINY]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["centered_box", "centered_gaussian", "cam", "has", "acol", "tscam"]
    assert {"gradcam", "layercam", "eigencam"} <= set(results["cam"]["posthoc"])
    assert all(0 <= r["MaxBoxAcc"] <= 100 for r in results.values())
    assert all("Top1Loc@val_thr" in results[m] for m in ("cam", "has", "acol", "tscam"))
    report = (out / "report.md").read_text()
    from tedloc.data import load_dataset

    assert report.startswith(f"# tedloc zoo: {load_dataset(synthetic_small).name}\n")  # the dataset, not its folder
    assert ("| method | map | CL@1 | MaxBoxAcc | MaxBoxAccV2 | Top1Loc | Top1Loc@val_thr | PxAP | train s | eval s |"
            in report)
    assert "| cam | gradcam |" in report and "| tscam | tscam |" in report
    assert "| centered_gaussian | - |" in report and "## What the table shows" in report
    from tedloc.report.glossary import verdicts

    assert all(f"- {line}" in report for line in verdicts(results)) and len(verdicts(results)) == 4
    assert "| method | cls BT-TT | cls BV-TT | cls BV-Otsu | GT BT-TT |" in report and "cam BV-VT" in report
    protocol = json.loads((out / "protocol.json").read_text())
    assert list(protocol) == ["cam", "has", "acol", "tscam"] and set(protocol["has"]) == {"cls", "GT", "cam"}
    timings = json.loads((out / "timings.json").read_text())
    assert all(timings[m]["train"] > 0 for m in ("cam", "has", "acol", "tscam"))
    before = (out / "runs" / "has" / "model.json").stat().st_mtime
    capsys.readouterr()
    assert main(args) == 0  # a second call reuses every run and evaluation
    assert (out / "runs" / "has" / "model.json").stat().st_mtime == before
    assert "train tedloc_resnet_tiny" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["has"]["MaxBoxAcc"] == results["has"]["MaxBoxAcc"]
    assert json.loads((out / "timings.json").read_text()) == timings  # the seconds of the work, not of the reuse


def test_bench_zoo_paper_configs_with_random_weights(synthetic_small, tmp_path):
    out = tmp_path / "cub"
    assert main(["bench", "zoo", "--dataset", "cub", "--data", str(synthetic_small), "--out", str(out),
                 "--methods", "cam,has", "--weights", "random", "--set", "arch=tedloc_resnet_tiny", "epochs=1",
                 "lr_step=1", "input_size=32", "resize_size=null", "batch_size=8"]) == 0
    run = json.loads((out / "runs" / "has" / "model.json").read_text())["config"]
    assert run["has_grid_size"] == 4 and run["nesterov"] and run["selection"] == "loc" and not run["pretrained"]


@pytest.mark.parametrize("argv, message", [
    (["--methods", "cam,nope"], "--methods: nope"),
    (["--set", "has.epochs=1"], "'has' is not among the methods"),
    (["--dataset", "cub"], "--dataset cub needs --data"),
    (["--preset", "tinyimagenet"], "--preset tinyimagenet needs --src"),
])
def test_bench_zoo_refuses_bad_options_in_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "o"
    methods = [] if "--methods" in argv else ["--methods", "cam"]
    assert main(["bench", "zoo", "--out", str(out), *methods, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (out / "runs").exists()
