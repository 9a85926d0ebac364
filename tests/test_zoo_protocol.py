"""The thesis' protocol over the zoo: `tedloc sweep` of each zoo method with its own search space, and `tedloc
protocol-table` over the runs of several methods (one row per method, one column per supervision and cell)."""
from __future__ import annotations

import json

import pytest

from runtimes import CPU
from tedloc.methods import get_method
from tedloc.protocol.selection import CELLS, format_methods_table, method_columns, runs_by_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--epochs", "1", "--batch-size", "8", "--input-size", "32", "--workers", "0"]
# the thesis' Table 4.4: each method's own hyper-parameters beside the shared ones
OWN = {"cam": set(), "has": {"has_drop_rate", "has_patch_area"}, "acol": {"acol_threshold"},
       "adl": {"adl_drop_rate", "adl_threshold"}, "sat": {"area_threshold"}, "tscam": set(), "scm": set(),
       "nlccam": set()}


def test_each_zoo_method_searches_the_thesis_space():
    shared = {"lr", "weight_decay", "lr_gamma", "lr_step"}
    for name, own in OWN.items():
        space = get_method(name).search_space
        assert set(space) == shared | own, name
        assert all(space[k] == ("uniform", 0.0, 1.0) for k in own), name
        assert all(space[k] == ("log", 1e-5, 1.0) for k in ("lr", "weight_decay", "lr_gamma")), name
    assert set(get_method("spg").search_space) > shared and set(get_method("cutmix").search_space) > shared


def _table(cell: float) -> dict:
    """A protocol table of one method whose every cell is ``cell`` (MaxBoxAcc), mIoU ``cell / 2``."""
    value = {"MaxBoxAcc": cell, "mIoU": cell / 2, "@50": cell, "MaxBoxAccV2": cell + 1, "checkpoint": "r@1"}
    return {"cls": {"BT-TT": value, "BV-TT": value, "BT-VT": None, "BV-VT": None, "BV-Otsu": value},
            "GT": {c: value for c in CELLS}, "rpn": {c: value for c in CELLS}}


def test_methods_table_layout_on_hand_made_tables():
    tables = {"cam": _table(50.0), "has": _table(12.5)}
    assert method_columns(tables["cam"])[:3] == [("cls", "BT-TT"), ("cls", "BV-TT"), ("cls", "BV-Otsu")]
    assert len(method_columns(tables["cam"])) == 3 + 4 + 4
    lines = format_methods_table(tables).splitlines()
    assert lines[0] == ("| method | cls BT-TT | cls BV-TT | cls BV-Otsu | GT BT-TT | GT BT-VT | GT BV-TT | GT BV-VT | "
                        "rpn BT-TT | rpn BT-VT | rpn BV-TT | rpn BV-VT |")
    assert lines[2] == "| cam | " + " | ".join(["50.00 / 25.00"] * 11) + " |"
    assert lines[3] == "| has | " + " | ".join(["12.50 / 6.25"] * 11) + " |"
    detail = format_methods_table(tables, detail=True).splitlines()
    assert detail[2] == "| cam | " + " | ".join(["51.00 / 50.00"] * 11) + " |"


@pytest.fixture(scope="module")
def zoo_runs(synthetic_small, tmp_path_factory):
    """Tiny runs of cam (two configurations), has and acol with their epoch checkpoints."""
    root = tmp_path_factory.mktemp("zoo_runs")
    tiny = dict(input_size=32, epochs=2, batch_size=8, workers=0, lr_step=1)
    runs = {"cam_a": ("cam", {}), "cam_b": ("cam", {"lr": 0.01}), "has": ("has", {"has_grid_size": 8}),
            "acol": ("acol", {"acol_width": 16})}
    for folder, (method, own) in runs.items():
        m = get_method(method)
        m.train(synthetic_small, root / folder, m.config(**tiny, **own), runtime=CPU)
    return root


def test_protocol_table_over_several_methods(zoo_runs, synthetic_small, tmp_path, capsys):
    from tedloc.cli import main
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    runs = [str(zoo_runs / n) for n in ("cam_a", "has", "cam_b", "acol")]
    assert runs_by_method(runs) == {"cam": [runs[0], runs[2]], "has": [runs[1]], "acol": [runs[3]]}
    boxes = tmp_path / "cam.txt"
    make_pseudo_boxes(synthetic_small, "val", "cam", zoo_runs / "cam_a", boxes, runtime=CPU)
    out = tmp_path / "t.json"
    assert main(["protocol-table", "--runs", *runs, "--data", str(synthetic_small), "--pseudo-boxes",
                 f"cam={boxes}", "--json", str(out), "--csv", str(tmp_path / "t.csv")]) == 0
    text = capsys.readouterr().out
    assert "| method | cls BT-TT | cls BV-TT | cls BV-Otsu | GT BT-TT |" in text and "| acol |" in text
    tables = json.loads(out.read_text())["methods"]
    assert list(tables) == ["cam", "has", "acol"] and set(tables["has"]) == {"cls", "GT", "cam"}
    # the cam row selects across its two configurations: BT-TT is the best test score of both runs' epochs
    single = tmp_path / "single.json"
    assert main(["protocol-table", "--runs", runs[0], "--data", str(synthetic_small), "--json", str(single)]) == 0
    assert tables["cam"]["GT"]["BT-TT"]["MaxBoxAcc"] >= json.loads(single.read_text())["GT"]["BT-TT"]["MaxBoxAcc"]
    csv_lines = (tmp_path / "t.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,supervision,cell,") and csv_lines[-1].startswith("acol,")
    assert main(["protocol-table", "--runs", *runs, "--data", str(synthetic_small), "--report",
                 str(tmp_path / "r.html")]) == 2  # one method's page only
    assert "--report draws the runs of one method" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["has", "adl", "sat"])
def test_sweep_of_a_zoo_method_draws_its_own_values(method, zoo_runs, synthetic_small, tmp_path):
    pytest.importorskip("optuna")
    import optuna

    from tedloc.cli import main
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    boxes = tmp_path / "cam.txt"
    make_pseudo_boxes(synthetic_small, "val", "cam", zoo_runs / "cam_a", boxes, runtime=CPU)
    extra = ["--arch", "tedloc_vit_tiny", "--no-pretrained", "--optimizer", "adamw"] if method == "sat" else []
    assert main(["sweep", "--method", method, "--data", str(synthetic_small), "--pseudo-boxes", str(boxes),
                 "--out", str(tmp_path / "s"), "--trials", "1", "--sampler", "random", *TINY, *extra]) == 0
    study = optuna.load_study(study_name=f"tedloc-{method}", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    params = study.trials[0].params
    assert set(params) == {"lr", "weight_decay", "lr_gamma", "lr_step"} | OWN[method]
    recorded = json.loads((tmp_path / "s" / "trial_0000" / "model.json").read_text())["config"]
    assert all(recorded[k] == pytest.approx(v) for k, v in params.items())
    assert set(json.loads((tmp_path / "s" / "table.json").read_text())) == {"cls", "GT", "pseudo"}
