"""The realistic protocol: box files and their scores, the noise generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tedloc.data import Split
from tedloc.errors import DataError
from tedloc.protocol.box_files import read_box_file, score_boxes, write_box_file
from tedloc.protocol.noise import NOISE_LEVELS, noisy_split, perturb_boxes
from runtimes import CPU


def _split() -> Split:
    return Split("val", ["a.jpg", "b.jpg", "c.jpg"], [0, 1, 0], [[100, 50], [40, 40], [10, 10]],
                 [[[0, 0, 49, 49]], [[10, 10, 19, 19], [0, 0, 39, 39]], [[0, 0, 9, 9]]])


def test_box_file_round_trip_and_scores(tmp_path):
    split = _split()
    boxes = {"a.jpg": np.array([0, 0, 99, 49]), "b.jpg": np.array([10, 10, 19, 19]), "c.jpg": np.array([5, 0, 9, 9])}
    write_box_file(tmp_path / "boxes.txt", boxes)
    assert (tmp_path / "boxes.txt").read_text().splitlines()[0] == "a.jpg,0,0,99,49"
    read = read_box_file(tmp_path / "boxes.txt", split)
    assert all(np.array_equal(read[k], boxes[k]) for k in boxes)
    scores = score_boxes(split, read)
    # a: 2500 / 5000 = 0.5; b: exact match with the first GT box = 1.0; c: 50 / 100 = 0.5
    assert scores["mIoU"] == pytest.approx(100 * 2 / 3)
    assert scores["IoU>=30"] == 100.0 and scores["IoU>=50"] == 100.0 and scores["IoU>=70"] == pytest.approx(100 / 3)
    # rescaled to 224 x 224 by the evaluation's rule
    assert score_boxes(split, read, rescale=224)["images"] == 3


def test_box_file_errors_name_file_and_line(tmp_path):
    split = _split()
    path = tmp_path / "bad.txt"
    path.write_text("a.jpg,0,0,9\nb.jpg,0,0,x,9\nc.jpg,5,5,1,1\nzzz.jpg,0,0,1,1\na.jpg,0,0,1,1\na.jpg,0,0,2,2\n")
    with pytest.raises(DataError) as e:
        read_box_file(path, split)
    text = str(e.value)
    for fragment in ("bad.txt:1", "bad.txt:2", "bad.txt:3", "bad.txt:4", "bad.txt:6", "second box", "have no box"):
        assert fragment in text


def test_noise_generator():
    rng = np.random.default_rng(0)
    boxes = np.array([[20, 30, 59, 69]] * 2000)
    sizes = np.array([[100, 120]] * 2000)
    assert np.array_equal(perturb_boxes(boxes, sizes, 0.0, rng), boxes)
    mean_iou = []
    for level in NOISE_LEVELS:
        noisy = perturb_boxes(boxes, sizes, level / 100, np.random.default_rng(level))
        assert (noisy[:, 0] >= 0).all() and (noisy[:, 2] <= 99).all() and (noisy[:, 3] <= 119).all()
        assert (noisy[:, 2] >= noisy[:, 0]).all() and (noisy[:, 3] >= noisy[:, 1]).all()
        w = noisy[:, 2] - noisy[:, 0] + 1
        # scale and aspect each change the width by at most a factor (1 +- L): (1 + L)^2 at most, plus rounding
        assert w.max() <= 40 * (1 + level / 100) ** 2 + 1
        from tedloc.eval.boxes import box_iou

        mean_iou.append(np.mean([box_iou(n, b)[0, 0] for n, b in zip(noisy[:300], boxes[:300])]))
    assert all(a > b for a, b in zip(mean_iou, mean_iou[1:]))  # more noise, lower IoU
    assert mean_iou[0] > 0.85 and mean_iou[-1] < 0.6
    split = _split()
    a, b = noisy_split(split, 20, seed=1), noisy_split(split, 20, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a.boxes, b.boxes)) and len(a.boxes[1]) == 2
    assert split.boxes[0].tolist() == [[0, 0, 49, 49]]  # the original is untouched


def test_selection_table_arithmetic():
    from pathlib import Path

    from tedloc.protocol.selection import Checkpoint, protocol_table

    c1, c2 = Checkpoint(Path("r1"), 1), Checkpoint(Path("r2"), 3)
    results = {
        c1: {"val": {"GT": {"acc50": [10, 50, 30], "miou": [1, 2, 3], "CL@1": 70.0},
                     "ps": {"acc50": [0, 0, 90], "miou": [0, 0, 0], "CL@1": 70.0}},
             "test": {"acc50": [20, 40, 60], "miou": [21, 41, 61], "otsu": {"MaxBoxAcc": 33.0, "mIoU": 34.0}}},
        c2: {"val": {"GT": {"acc50": [40, 45, 20], "miou": [0, 0, 0], "CL@1": 80.0},
                     "ps": {"acc50": [95, 0, 0], "miou": [0, 0, 0], "CL@1": 80.0}},
             "test": {"acc50": [70, 10, 0], "miou": [71, 11, 1], "otsu": {"MaxBoxAcc": 44.0, "mIoU": 45.0}}},
    }
    table = protocol_table(results, ["GT", "ps"])
    assert table["GT"]["BT-TT"] == {"MaxBoxAcc": 70.0, "mIoU": 71.0, "checkpoint": "r2@3", "tau_index": 0}
    assert table["GT"]["BV-TT"]["MaxBoxAcc"] == 60.0 and table["GT"]["BV-TT"]["checkpoint"] == "r1@1"
    assert table["GT"]["BV-VT"]["MaxBoxAcc"] == 40.0 and table["GT"]["BV-VT"]["mIoU"] == 41.0  # c1 at val tau 1
    assert table["GT"]["BT-VT"]["MaxBoxAcc"] == 10.0  # c2 at its val tau (index 1): a bad transfer
    assert table["ps"]["BV-TT"]["checkpoint"] == "r2@3" and table["ps"]["BV-VT"]["MaxBoxAcc"] == 70.0
    assert table["cls"]["BV-TT"]["checkpoint"] == "r2@3" and table["cls"]["BV-VT"] is None
    assert table["cls"]["BV-Otsu"] == {"MaxBoxAcc": 44.0, "mIoU": 45.0, "checkpoint": "r2@3"}


def _curves(acc50, v2=None, cl=50.0):
    v2 = v2 or {d: acc50 for d in (30, 50, 70)}
    return {"acc50": acc50, "miou": [a + 1 for a in acc50], "CL@1": cl, **{f"v2@{d}": c for d, c in v2.items()}}


def test_selection_is_per_column_on_two_levels():
    """The epoch within each run is chosen on val against the column's boxes, then the run: BT differs by column."""
    from pathlib import Path

    from tedloc.protocol.selection import Checkpoint, format_table, protocol_table, table_csv

    a1, a2, b1 = Checkpoint(Path("a"), 1), Checkpoint(Path("a"), 2), Checkpoint(Path("b"), 1)
    otsu = {"MaxBoxAcc": 0.0, "mIoU": 0.0}
    results = {
        # run a: epoch 1 is best on test (90) but GT-val prefers epoch 2; ps-val prefers epoch 1
        a1: {"val": {"GT": _curves([10, 20]), "ps": _curves([60, 50])}, "test": {**_curves([90, 0]), "otsu": otsu}},
        a2: {"val": {"GT": _curves([30, 40]), "ps": _curves([10, 10])}, "test": {**_curves([50, 20]), "otsu": otsu}},
        b1: {"val": {"GT": _curves([35, 0]), "ps": _curves([20, 30])},
             "test": {**_curves([70, 10], {30: [80, 95], 50: [70, 10], 70: [5, 40]}), "otsu": otsu}},
    }
    table = protocol_table(results, ["GT", "ps"])
    # GT column: a -> epoch 2 (val 40), b -> epoch 1; BT among {a@2: test 50, b@1: test 70} = b@1
    assert table["GT"]["BT-TT"]["checkpoint"] == "b@1" and table["GT"]["BT-TT"]["MaxBoxAcc"] == 70.0
    # ps column: a -> epoch 1 (val 60); BT among {a@1: 90, b@1: 70} = a@1: BT-TT differs by column
    assert table["ps"]["BT-TT"]["checkpoint"] == "a@1" and table["ps"]["BT-TT"]["MaxBoxAcc"] == 90.0
    assert table["GT"]["BV-TT"]["checkpoint"] == "a@2" and table["ps"]["BV-TT"]["checkpoint"] == "a@1"
    # IoU 30/50/70 cells: TT takes each curve's best; VT each delta's own val threshold
    tt = table["GT"]["BT-TT"]
    assert (tt["@30"], tt["@50"], tt["@70"]) == (95.0, 70.0, 40.0) and tt["MaxBoxAccV2"] == pytest.approx(205 / 3)
    vt = table["GT"]["BT-VT"]  # b@1 val GT curves [35, 0]: every delta picks threshold 0
    assert (vt["@30"], vt["@50"], vt["@70"], vt["MaxBoxAcc"]) == (80.0, 70.0, 5.0, 70.0)
    text = format_table(table, detail=True)
    assert "| BT-TT |" in text and "95.00 / 70.00 / 40.00 / 68.33" in text and "BV: the one with" in text
    assert "BoxAcc@30" in table_csv(table).splitlines()[0]


def test_pointing_game_selection():
    from tedloc.protocol.annotators import select_by_pointing_game

    boxes = np.array([[0, 0, 9, 9], [20, 20, 29, 29], [0, 0, 29, 29], [15, 15, 25, 25], [5, 5, 6, 6],
                      [0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [6, 6, 7, 7], [8, 8, 9, 9]])
    rank = np.arange(10, 0, -1)  # boxes 0 and 1 form the top 20 %
    conf = {tuple(b): c for b, c in zip(boxes.tolist(), [0.1, 0.2, 0.9, 0.8, 0.3, 0, 0, 0, 0, 0])}
    confidence = lambda bs: np.array([conf[tuple(b)] for b in bs.tolist()])  # noqa: E731
    # the peak is in box 1 only (of the pool): box 1 wins although box 2 is more confident (outside the pool)
    assert select_by_pointing_game(boxes, rank, (25, 25), confidence).tolist() == [20, 20, 29, 29]
    # with a larger pool, boxes 1, 2 and 3 contain the peak: the most confident, box 2, wins
    assert select_by_pointing_game(boxes, rank, (22, 22), confidence, fraction=0.4).tolist() == [0, 0, 29, 29]
    # no box of the pool contains the peak: the most confident of the pool
    assert select_by_pointing_game(boxes, rank, (50, 50), confidence).tolist() == [20, 20, 29, 29]


@pytest.fixture(scope="module")
def classifier_run(synthetic_small, tmp_path_factory):
    from tedloc.methods.cam import PretrainConfig, pretrain

    run = tmp_path_factory.mktemp("protocol") / "cnn"
    pretrain(synthetic_small, run, PretrainConfig(input_size=48, epochs=2, batch_size=8, workers=0), runtime=CPU)
    return run


def _valid(box, size):
    x0, y0, x1, y1 = (int(v) for v in box)
    return 0 <= x0 <= x1 < size[0] and 0 <= y0 <= y1 < size[1]


def test_annotators_give_valid_boxes_from_their_proposals(classifier_run, synthetic_small):
    from tedloc.data import load_dataset
    from tedloc.data.images import load_image
    from tedloc.protocol.annotators import AnnotatorContext, create_annotator, selective_search_boxes

    dataset = load_dataset(synthetic_small)
    split = dataset["val"]
    context = AnnotatorContext(dataset.class_names, str(classifier_run), runtime=CPU)
    image, label = load_image(split.image_path(0)), int(split.labels[0])
    assert _valid(create_annotator("cam", context)(image, label), image.size)
    ss = create_annotator("ss", context, max_proposals=50)
    box = ss(image, label)
    assert _valid(box, image.size)
    assert any(np.array_equal(box, p) for p in selective_search_boxes(image, "fast", 50))
    rpn = create_annotator("rpn", context, weights=None, min_size=64, max_proposals=50)  # random weights
    proposals = rpn.proposals(image)
    assert len(proposals) > 0 and all(_valid(p, image.size) for p in proposals)
    box = rpn(image, label)
    assert any(np.array_equal(box, p) for p in proposals)


def test_make_pseudo_boxes_resumes_and_scores(classifier_run, synthetic_small, tmp_path):
    from tedloc.data import load_dataset
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    split = load_dataset(synthetic_small)["val"]
    out = tmp_path / "cam.txt"
    (tmp_path / "cam.txt.partial").write_text(f"{split.image_ids[0]},1,2,3,4\n{split.image_ids[1]},1,2")  # cut short
    summary = make_pseudo_boxes(synthetic_small, "val", "cam", classifier_run, out, runtime=CPU)
    lines = out.read_text().splitlines()
    assert len(lines) == len(split) and lines[0] == f"{split.image_ids[0]},1,2,3,4"  # the finished line is kept
    assert not (tmp_path / "cam.txt.partial").exists()
    assert 0 <= summary["score"]["mIoU"] <= 100 and summary["images"] == len(split)
    assert make_pseudo_boxes(synthetic_small, "val", "cam", classifier_run, out, runtime=CPU) == summary
    with pytest.raises(Exception, match="other settings"):
        make_pseudo_boxes(synthetic_small, "val", "ss", classifier_run, out, runtime=CPU)


def test_protocol_table_and_noise_study_commands(classifier_run, synthetic_small, tmp_path, capsys):
    import json

    from tedloc.cli import main

    boxes = tmp_path / "cam.txt"
    assert main(["pseudo-boxes", "--data", str(synthetic_small), "--method", "cam", "--run", str(classifier_run),
                 "--out", str(boxes)]) == 0
    assert main(["pseudo-boxes", "score", "--data", str(synthetic_small), "--boxes", str(boxes), "--json"]) == 0
    score = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert score["images"] == 8
    table_json = tmp_path / "table.json"
    assert main(["protocol-table", "--runs", str(classifier_run), "--data", str(synthetic_small),
                 "--pseudo-boxes", f"cam={boxes}", "--json", str(table_json), "--csv", str(tmp_path / "t.csv"),
                 "--report", str(tmp_path / "table.html")]) == 0
    page = (tmp_path / "table.html").read_text()
    assert "Selection curves" in page and "<td>BV-VT</td>" in page and page.count("data:image/png;base64,") == 1
    assert main(["report", str(table_json), "--out", str(tmp_path / "t.html")]) == 0
    assert "<td>BT-TT</td>" in (tmp_path / "t.html").read_text()
    table = json.loads(table_json.read_text())
    assert set(table) == {"cls", "GT", "cam"}
    assert table["GT"]["BT-TT"]["MaxBoxAcc"] >= table["GT"]["BV-TT"]["MaxBoxAcc"]  # BT is the best test score
    assert table["GT"]["BT-TT"]["MaxBoxAcc"] >= table["cam"]["BV-VT"]["MaxBoxAcc"]
    assert (classifier_run / "protocol" / "epoch_001.json").exists()
    assert main(["noise-study", "--runs", str(classifier_run), "--data", str(synthetic_small)]) == 0
    assert "| noise50 |" in capsys.readouterr().out


def test_sweep_is_resumable(classifier_run, synthetic_small, tmp_path):
    pytest.importorskip("optuna")
    from tedloc.cli import main
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    boxes = tmp_path / "cam.txt"
    make_pseudo_boxes(synthetic_small, "val", "cam", classifier_run, boxes, runtime=CPU)
    common = ["sweep", "--method", "cam", "--data", str(synthetic_small), "--pseudo-boxes", str(boxes),
              "--out", str(tmp_path / "sweep"), "--epochs", "1", "--batch-size", "8", "--input-size", "48",
              "--workers", "0"]
    assert main([*common, "--trials", "1"]) == 0
    assert main([*common, "--trials", "2"]) == 0  # continues the study: one more trial
    import optuna

    study = optuna.load_study(study_name="tedloc-cam", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    assert [t.number for t in study.trials] == [0, 1] and all(0 <= t.value <= 100 for t in study.trials)
    assert set(study.trials[0].params) == {"lr", "weight_decay", "lr_gamma", "lr_step"}
    assert (tmp_path / "sweep" / "trial_0001" / "model.json").exists()
    assert main([*common, "--trials", "3", "--sampler", "random"]) == 2  # a folder keeps its sampler


def test_random_sweep_is_a_fixed_pool_scored_by_every_criterion(classifier_run, synthetic_small, tmp_path, capsys):
    pytest.importorskip("optuna")
    import json

    from tedloc.cli import main
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    boxes = tmp_path / "cam.txt"
    make_pseudo_boxes(synthetic_small, "val", "cam", classifier_run, boxes, runtime=CPU)
    common = ["sweep", "--method", "cam", "--data", str(synthetic_small), "--pseudo-boxes", str(boxes),
              "--epochs", "1", "--batch-size", "8", "--input-size", "48", "--workers", "0", "--sampler", "random",
              "--trials", "2"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    table = json.loads((tmp_path / "a" / "table.json").read_text())
    assert set(table) == {"cls", "GT", "pseudo"} and "| BV-VT |" in capsys.readouterr().out
    assert main([*common[:-1], "1", "--out", str(tmp_path / "b")]) == 0  # the same pool in two calls
    assert main([*common, "--out", str(tmp_path / "b")]) == 0
    import optuna

    def params(name):
        study = optuna.load_study(study_name="tedloc-cam", storage=f"sqlite:///{tmp_path / name / 'study.db'}")
        return [t.params for t in study.trials]

    assert params("a") == params("b")  # the same seeded pool, whatever the scores and the calls
    assert params("a")[0] != params("a")[1]
    trial = json.loads((tmp_path / "a" / "trial_0000" / "model.json").read_text())
    assert trial["selection"] == f"pseudo:{boxes.resolve()}"  # CAM's `last`: selected on the pseudo-boxes
    assert trial["threshold_source"]["boxes"] == str(boxes.resolve())


def test_selection_on_val_pseudo_boxes_uses_no_gt_box(classifier_run, synthetic_small, tmp_path, capsys):
    """`--selection pseudo:FILE`: the epoch and the stored threshold come from the val pseudo-boxes."""
    import json

    from tedloc.cli import main
    from tedloc.data import load_dataset
    from tedloc.data.box_files import write_box_file
    from tedloc.engine.checkpoint import load_checkpoint
    from tedloc.eval.localizer_eval import evaluate_localizer
    from tedloc.methods import load_model

    val = load_dataset(synthetic_small)["val"]
    # pseudo-boxes far from the GT: the top-left quarter of every image
    boxes = {i: np.array([0, 0, int(w) // 4, int(h) // 4]) for i, (w, h) in zip(val.image_ids, val.sizes)}
    box_file = tmp_path / "corner.txt"
    write_box_file(box_file, boxes)
    run = tmp_path / "cam"
    common = ["pretrain", "--data", str(synthetic_small), "--input-size", "48", "--epochs", "2", "--batch-size", "8",
              "--workers", "0"]
    assert main([*common, "--out", str(run), "--selection", f"pseudo:{box_file}"]) == 0
    meta = json.loads((run / "model.json").read_text())
    history = meta["history"]
    best = max(range(2), key=lambda i: (history[i]["val_MaxBoxAcc"], -i))
    assert meta["epoch"] == best and meta["threshold"] == history[best]["val_threshold"]
    assert meta["threshold_source"]["boxes"] == str(box_file.resolve())
    # the recorded numbers are the CAM's against the pseudo-boxes, not against the GT boxes
    pseudo = val.with_boxes([boxes[i][None] for i in val.image_ids])
    localizer = load_model(run, runtime=CPU)
    ours = evaluate_localizer(localizer, pseudo, "validation", batch_size=8, masks=False)  # as the training did
    gt = evaluate_localizer(localizer, val, "validation", batch_size=8, masks=False)
    assert ours["MaxBoxAcc"] == history[best]["val_MaxBoxAcc"] and ours["threshold"] == meta["threshold"]
    assert ours["curves"]["mIoU"] != gt["curves"]["mIoU"]
    state = load_checkpoint(run / "checkpoints" / f"epoch_{best + 1:03d}")[0]
    assert all(torch.equal(v, localizer.model.state_dict()[k]) for k, v in state.items())
    # a box file missing images: one line naming the file, before any training
    write_box_file(tmp_path / "short.txt", {val.image_ids[0]: boxes[val.image_ids[0]]})
    assert main([*common, "--out", str(tmp_path / "bad"), "--selection", f"pseudo:{tmp_path / 'short.txt'}"]) == 2
    err = capsys.readouterr().err
    assert "short.txt" in err and "have no box" in err and not (tmp_path / "bad").exists()
    assert main([*common, "--out", str(tmp_path / "bad"), "--selection", "best"]) == 2
    assert "selection must be last, loc or pseudo:FILE" in capsys.readouterr().err


def test_annotator_stages_and_pointing_game(classifier_run, synthetic_small, tmp_path, capsys):
    """Table 4.5: the IoU after each stage of the chain; the upper bound bounds every stage."""
    import json

    from tedloc.cli import main
    from tedloc.data import load_dataset
    from tedloc.data.images import load_image
    from tedloc.protocol.annotator_stages import annotator_stages
    from tedloc.protocol.annotators import AnnotatorContext, create_annotator

    pytest.importorskip("cv2.ximgproc")
    result = annotator_stages(synthetic_small, "val", "ss", classifier_run, limit=4, max_proposals=30, runtime=CPU)
    stages = result["stages"]
    assert set(stages) == {"top box", "PG only", "PG + top 20%", "final", "upper bound"} and result["images"] == 4
    assert all(stages["upper bound"]["mIoU"] >= s["mIoU"] - 1e-9 for s in stages.values())
    # the final stage is the annotator's own box
    dataset = load_dataset(synthetic_small)
    split = dataset["val"]
    context = AnnotatorContext(dataset.class_names, str(classifier_run), runtime=CPU)
    ss = create_annotator("ss", context, max_proposals=30)
    boxes = {split.image_ids[i]: ss(load_image(split.image_path(i)), int(split.labels[i])) for i in range(4)}
    from tedloc.eval.boxes import box_iou

    final = np.mean([box_iou(boxes[split.image_ids[i]][None], split.boxes[i]).max() for i in range(4)]) * 100
    assert stages["final"]["mIoU"] == pytest.approx(final)
    # the pointing game: the CAM peak inside a GT box, per image
    tools = ss.tools
    hits = [any(b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3] for b in split.boxes[i])
            for i in range(4) for p in [tools.peak(load_image(split.image_path(i)), int(split.labels[i]))]]
    assert result["pointing_game"] == pytest.approx(100 * np.mean(hits))
    out = tmp_path / "stages.json"
    assert main(["pseudo-boxes", "stages", "--data", str(synthetic_small), "--method", "cam", "--run",
                 str(classifier_run), "--json-out", str(out)]) == 0
    assert "| final |" in capsys.readouterr().out and set(json.loads(out.read_text())["stages"]) == {"final"}
