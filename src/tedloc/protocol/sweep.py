"""Hyper-parameter search that never sees a GT box (thesis §4.4.1, Table 4.4), driven by Optuna.

Any registered method (:mod:`tedloc.methods`) can be searched: its search space comes from its
registration (by default the thesis' shared hyper-parameters: learning rate, weight decay and the
step decay factor gamma, log-uniform in [1e-5, 1]; the step size, uniform over integers, whose
range ``step_range`` overrides: the thesis uses [5, 45] for CUB and [2, 9] for ILSVRC). Each trial
trains one run in ``OUT/trial_NNNN`` with the method's training function and scores every epoch
checkpoint by its validation MaxBoxAcc against the pseudo-boxes; the trial's value is the best
epoch's. The study lives in an Optuna storage (SQLite by default, ``OUT/study.db``): a new call
with the same storage continues it, and several processes can run trials of one study at once.

Samplers (``SAMPLERS``): ``tpe`` (Optuna's TPE: each configuration depends on the scores so far) or
``random`` (the thesis' practice: a fixed pool of independently sampled configurations, trained once
and then scored by every selection criterion, e.g. by ``tedloc protocol-table`` over the trials' runs,
which reuses their cached evaluations; trial N's values are drawn from a generator keyed by the seed and N,
so an interrupted or split sweep draws the same pool). A trial whose config selects on ``loc`` or ``last``
selects on the pseudo-boxes instead (``pseudo:FILE``, as the sweep scores it): no GT box is used for its
epoch or its stored threshold. ``OUT/sweep.json`` records the method, the sampler and its seed, the box
file and the search space; a folder is never continued with other ones.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tedloc.errors import TedlocError
from tedloc.eval.conventions import EvalProtocol, eval_protocol
from tedloc.methods import Method, get_method
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text

__all__ = ["run_sweep", "suggest", "SAMPLERS", "trial_runs", "pool_values", "pool_sampler"]

SAMPLERS = ("tpe", "random")


def suggest(trial, space: dict[str, tuple[str, float, float]]) -> dict:
    """The trial's values over ``space`` (name -> ``log`` | ``uniform`` | ``int``, low, high), in the space's order."""
    params = {}
    for name, (kind, low, high) in space.items():
        if kind == "log":
            params[name] = trial.suggest_float(name, low, high, log=True)
        elif kind == "uniform":
            params[name] = trial.suggest_float(name, low, high)
        else:
            params[name] = trial.suggest_int(name, int(low), int(high))
    return params


def _objective_factory(method: Method, data: Path, out: Path, boxes: Path, base, space: dict, inputs: dict,
                       protocol: EvalProtocol, runtime: Runtime):
    from tedloc.data import load_dataset
    from tedloc.protocol.box_files import split_with_box_file
    from tedloc.protocol.selection import evaluate_checkpoint, list_checkpoints

    dataset = load_dataset(data, splits=["val", "test"])
    pseudo = split_with_box_file(dataset["val"], boxes)

    def objective(trial) -> float:
        run = out / f"trial_{trial.number:04d}"
        cfg = dataclasses.replace(base, **suggest(trial, space))
        method.train(data, run, cfg, runtime=runtime, **inputs)
        best, best_epoch = float("-inf"), None
        for ckpt in list_checkpoints(run):
            curves = evaluate_checkpoint(ckpt, {"pseudo": pseudo}, dataset["test"], protocol,
                                         runtime=runtime)["val"]["pseudo"]
            score = max(curves["acc50"])
            if score > best:
                best, best_epoch = score, ckpt.epoch
        trial.set_user_attr("run", str(run))
        trial.set_user_attr("best_epoch", best_epoch)
        return best

    return objective


def run_sweep(method: str, data: str | os.PathLike, out: str | os.PathLike, boxes: str | os.PathLike, trials: int,
              base=None, storage: str | None = None, step_range: tuple[int, int] | None = None, seed: int = 0,
              inputs: dict | None = None, protocol: EvalProtocol | str = "validation", *, runtime: Runtime,
              sampler: str = "tpe"):
    """Run trials of ``method`` (a registered name) until the study holds ``trials`` finished ones; returns
    the Optuna study. ``base``: the method's config the trials start from (default: its defaults);
    ``inputs``: the method's extra training inputs (TeD-Loc: ``anchors``, ``cams``); ``protocol``: how the
    trials' checkpoints are scored (a record or a preset name); ``runtime``: the device and precision of the trials;
    ``sampler``: ``tpe`` or ``random`` (see the module docstring), seeded by ``seed``."""
    import optuna

    if sampler not in SAMPLERS:
        raise TedlocError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    spec = get_method(method)
    missing = [name for name in spec.inputs if not (inputs or {}).get(name)]
    if missing:
        raise TedlocError(f"a {method} sweep needs " + " and ".join(f"--{n.replace('_', '-')}" for n in missing))
    space = dict(spec.search_space)
    if step_range is not None and "lr_step" in space:
        space["lr_step"] = ("int", *step_range)
    out = Path(out)
    record = {"method": method, "sampler": sampler, "seed": seed, "boxes": str(Path(boxes).resolve()),
              "space": {name: list(spec) for name, spec in space.items()}}
    if (out / "sweep.json").exists():
        previous = json.loads((out / "sweep.json").read_text())
        if {k: previous.get(k) for k in record} != record:
            raise TedlocError(f"{out} holds a sweep with {previous}; continue it with those settings or choose "
                              f"another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(record, indent=1) + "\n")
    base = base if base is not None else spec.config()
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    chosen = optuna.samplers.TPESampler(seed=seed) if sampler == "tpe" else pool_sampler(space, seed)
    study = optuna.create_study(study_name=f"tedloc-{method}", storage=storage, direction="maximize",
                                sampler=chosen, load_if_exists=True)
    finished = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if getattr(base, "selection", None) in ("loc", "last"):  # the trials' own epoch and threshold: never on GT
        base = dataclasses.replace(base, selection=f"pseudo:{Path(boxes).resolve()}")  # boxes, as the sweep's value
    if finished < trials:
        objective = _objective_factory(spec, Path(data), out, Path(boxes), base, space,
                                       {k: (inputs or {})[k] for k in spec.inputs}, eval_protocol(protocol), runtime)
        study.optimize(objective, n_trials=trials - finished)
    return study


def pool_sampler(space: dict[str, tuple[str, float, float]], seed: int):
    """An Optuna sampler giving trial N the values :func:`pool_values` ``(space, seed, N)``: the pool is the
    same however the trials are split across calls and processes (a failed trial's values are not retried)."""
    import optuna

    class PoolSampler(optuna.samplers.BaseSampler):
        """Trial N's values from a generator keyed by (seed, N)."""

        def infer_relative_search_space(self, study, trial) -> dict:
            """No joint sampling."""
            return {}

        def sample_relative(self, study, trial, search_space) -> dict:
            """No joint sampling."""
            return {}

        def sample_independent(self, study, trial, param_name, param_distribution):
            """The pool's value of ``param_name`` for this trial's number."""
            return pool_values(space, seed, trial.number)[param_name]

    return PoolSampler()


def pool_values(space: dict[str, tuple[str, float, float]], seed: int, number: int) -> dict:
    """The values of trial ``number`` of a random pool: drawn from a generator keyed by ``(seed, number)``
    (log-uniform for ``log``, uniform for ``uniform``, uniform over the integers for ``int``)."""
    import numpy as np

    rng = np.random.default_rng([int(seed), int(number)])
    values = {}
    for name, (kind, low, high) in space.items():
        if kind == "log":
            values[name] = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        elif kind == "uniform":
            values[name] = float(rng.uniform(low, high))
        else:
            values[name] = int(rng.integers(int(low), int(high) + 1))
    return values


def trial_runs(study) -> list[str]:
    """The run folders of the study's finished trials, in trial order."""
    import optuna

    return [t.user_attrs["run"] for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE and "run" in t.user_attrs]
