"""Hyper-parameter search that never sees a GT box (thesis §4.4.1, Table 4.4), driven by Optuna.

Search space (the thesis' shared hyper-parameters): learning rate, weight decay and the step
decay factor gamma, log-uniform in [1e-5, 1]; the step size, uniform over integers (the thesis
uses [5, 45] for CUB and [2, 9] for ILSVRC; ``--step-range``). Each trial trains one run in
``OUT/trial_NNNN`` (the CAM baseline: `tedloc pretrain`; TeD-Loc: `tedloc train` on given
anchors, map cache and encoder) and scores every epoch checkpoint by its validation MaxBoxAcc
against the pseudo-boxes; the trial's value is the best epoch's. The study lives in an Optuna
storage (SQLite by default, ``OUT/study.db``): a new call with the same storage continues it,
and several processes can run trials of one study at once.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tedloc.errors import TedlocError

__all__ = ["run_sweep", "SEARCH_SPACE"]

SEARCH_SPACE = {"lr": (1e-5, 1.0), "weight_decay": (1e-5, 1.0), "lr_gamma": (1e-5, 1.0)}


def _objective_factory(method: str, data: Path, out: Path, boxes: Path, base, step_range: tuple[int, int],
                       tedloc_inputs: dict, interval: float, runtime=None):
    from tedloc.data import load_dataset
    from tedloc.protocol.box_files import read_box_file
    from tedloc.protocol.selection import evaluate_checkpoint, list_checkpoints

    dataset = load_dataset(data, splits=["val", "test"])
    val = dataset["val"]
    pseudo_boxes = read_box_file(boxes, val)
    pseudo = val.with_boxes([pseudo_boxes[i][None] for i in val.image_ids])

    def objective(trial) -> float:
        params = {name: trial.suggest_float(name, lo, hi, log=True) for name, (lo, hi) in SEARCH_SPACE.items()}
        params["lr_step"] = trial.suggest_int("lr_step", *step_range)
        run = out / f"trial_{trial.number:04d}"
        cfg = dataclasses.replace(base, **params)
        if method == "cam":
            from tedloc.training import pretrain

            pretrain(data, run, cfg, runtime=runtime)
        else:
            from tedloc.training.tedloc import train_tedloc

            train_tedloc(data, run, tedloc_inputs["anchors"], tedloc_inputs["cams"], cfg, runtime=runtime)
        best, best_epoch = float("-inf"), None
        for ckpt in list_checkpoints(run):
            curves = evaluate_checkpoint(ckpt, {"pseudo": pseudo}, dataset["test"], interval,
                                         runtime=runtime)["val"]["pseudo"]
            score = max(curves["acc50"])
            if score > best:
                best, best_epoch = score, ckpt.epoch
        trial.set_user_attr("run", str(run))
        trial.set_user_attr("best_epoch", best_epoch)
        return best

    return objective


def run_sweep(method: str, data: str | os.PathLike, out: str | os.PathLike, boxes: str | os.PathLike, trials: int,
              base=None, storage: str | None = None, step_range: tuple[int, int] = (2, 9), seed: int = 0,
              tedloc_inputs: dict | None = None, interval: float = 0.01, runtime=None):
    """Run trials until the study holds ``trials`` finished ones; returns the Optuna study. ``runtime``:
    the device and precision of the trials (a :class:`~tedloc.utils.device.Runtime`; default the CPU)."""
    import optuna

    if method not in ("cam", "tedloc"):
        raise TedlocError("sweep method must be cam or tedloc")
    if method == "tedloc" and not tedloc_inputs:
        raise TedlocError("a TeD-Loc sweep needs --anchors and --cams (and the encoder in the base config)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if base is None:
        from tedloc.training.pretrain import PretrainConfig
        from tedloc.training.tedloc import TeDLocTrainConfig

        base = PretrainConfig() if method == "cam" else TeDLocTrainConfig()
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study = optuna.create_study(study_name=f"tedloc-{method}", storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)
    finished = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if finished < trials:
        objective = _objective_factory(method, Path(data), out, Path(boxes), base, step_range, tedloc_inputs or {},
                                       interval, runtime)
        study.optimize(objective, n_trials=trials - finished)
    return study
