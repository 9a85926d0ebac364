"""Evaluate a :class:`~tedloc.methods.LocalizationModel` on a split: maps at the input size, as wsolevaluation."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from tedloc.data.dataset import Split
from tedloc.engine.distributed import shard_indices
from tedloc.eval.evaluator import WSOLEvaluator
from tedloc.eval.scoremaps import normalize_scoremap
from tedloc.models.localizer import LocalizationModel, MultiMapModel, map_kinds_of
from tedloc.utils.progress import progress

__all__ = ["evaluate_localizer", "iter_score_maps"]


def iter_score_maps(localizer: LocalizationModel, split: Split, kinds: tuple[str, ...] | None = None,
                    batch_size: int = 64, workers: int = 0, indices: list[int] | None = None,
                    show_progress: bool = True) -> Iterator[tuple[str, dict[str, np.ndarray], np.ndarray]]:
    """``(image id, kind -> score map, class scores)`` for every image of ``split`` (or ``indices``), in order.

    Each map is resized (bicubic) to the input size and min-max normalised, as wsolevaluation
    does; ``kinds`` (default: the localizer's own map) uses ``predict_maps`` when several are asked.
    Images are preprocessed as the localizer's record says and go to its device.
    """
    main = localizer.map_kind
    kinds = tuple(kinds or (main,))
    if kinds != (main,) and not isinstance(localizer, MultiMapModel):
        raise TypeError(f"{type(localizer).__name__} offers one map ({main!r}), not {kinds}")
    pre = localizer.preprocessing
    dataset = pre.dataset(split)
    if indices is not None:
        dataset = Subset(dataset, indices)
    device = localizer.device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    size = (pre.input_size, pre.input_size)
    for batch in progress(loader, desc=f"evaluating {split.name}", unit="batch", enabled=show_progress):
        batch["image"] = batch["image"].to(device, non_blocking=True)
        with torch.no_grad():
            if kinds == (main,):
                scores, main_maps = localizer.predict(batch["image"])
                maps = {main: main_maps}
            else:
                scores, maps = localizer.predict_maps(batch["image"], kinds)
        scores = scores.double().cpu().numpy()
        maps = {kind: m.double().cpu().numpy() for kind, m in maps.items()}
        for j, i in enumerate(batch["index"].tolist()):
            yield split.image_ids[i], {kind: normalize_scoremap(maps[kind][j], size) for kind in kinds}, scores[j]


def evaluate_localizer(localizer: LocalizationModel, split: Split, batch_size: int = 64, workers: int = 0,
                       all_maps: bool = False, dist=None, **evaluator_kwargs) -> dict:
    """Metrics of ``localizer`` on ``split``: each map is resized (bicubic) to the input size and
    min-max normalised, then scored against the split's GT (boxes rescaled to the input size).

    With ``all_maps``, a method that offers several maps (``predict_maps``, e.g. TeD-Loc's g and
    <z_p, t_c>) has each scored in the same pass: the main map's metrics at the top level, the
    others under ``maps`` -> kind (without curves).

    With ``dist`` (a :class:`tedloc.engine.distributed.Distributed` of several processes) each
    process scores every ``world_size``-th batch and the evaluators' sums are merged: every
    process gets exactly the metrics of a single-process evaluation.
    """
    main = localizer.map_kind
    kinds = list(map_kinds_of(localizer)) if all_maps else [main]
    evaluators = {kind: WSOLEvaluator(split, **evaluator_kwargs) for kind in kinds}
    sharded = dist is not None and dist.world_size > 1
    indices = shard_indices(len(split), batch_size, dist.rank, dist.world_size) if sharded else None
    for image_id, maps, scores in iter_score_maps(localizer, split, tuple(kinds), batch_size, workers, indices,
                                                  show_progress=dist is None or dist.is_main):
        for kind, evaluator in evaluators.items():
            evaluator.accumulate(image_id, maps[kind], scores)
    if sharded:
        states = dist.gather_objects({kind: evaluator.state() for kind, evaluator in evaluators.items()})
        evaluators = {kind: WSOLEvaluator(split, **evaluator_kwargs) for kind in kinds}
        for state in states:
            for kind, evaluator in evaluators.items():
                evaluator.merge(state[kind])
    metrics = evaluators[main].compute()
    metrics["map"] = main
    if len(kinds) > 1:
        metrics["maps"] = {}
        for kind in kinds[1:]:
            other = evaluators[kind].compute()
            other.pop("curves", None)
            metrics["maps"][kind] = other
    return metrics
