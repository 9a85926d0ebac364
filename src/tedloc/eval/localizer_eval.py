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
from tedloc.errors import TedlocError
from tedloc.models.localizer import ClassConditionalMaps, ClassScores, LocalizationModel, MultiMapModel, map_kinds_of
from tedloc.utils.progress import progress

__all__ = ["evaluate_localizer", "iter_score_maps", "MAP_CLASSES"]

MAP_CLASSES = ("pred", "true")  # whose map is scored: the predicted class's (no label) or the true class's


def _predict(localizer: LocalizationModel, images: torch.Tensor, labels: torch.Tensor, kinds: tuple[str, ...],
             map_class: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Class scores and the maps of ``kinds`` for one batch."""
    main = localizer.map_kind
    if map_class == "true":
        scores = localizer.scores(images) if isinstance(localizer, ClassScores) else localizer.predict(images)[0]
        return scores, {main: localizer.cams(images, labels.to(images.device))}
    if kinds == (main,):
        scores, main_maps = localizer.predict(images)
        return scores, {main: main_maps}
    return localizer.predict_maps(images, kinds)


def iter_score_maps(localizer: LocalizationModel, split: Split, kinds: tuple[str, ...] | None = None,
                    batch_size: int = 64, workers: int = 0, indices: list[int] | None = None,
                    show_progress: bool = True, map_class: str = "pred"
                    ) -> Iterator[tuple[str, dict[str, np.ndarray], np.ndarray]]:
    """``(image id, kind -> score map, class scores)`` for every image of ``split`` (or ``indices``), in order.

    Each map is resized (bicubic) to the input size and min-max normalised, as wsolevaluation
    does; ``kinds`` (default: the localizer's own map) uses ``predict_maps`` when several are asked.
    ``map_class``: ``pred``, the maps of the predicted classes (no label used), or ``true``, the
    map of each image's true class (GT-known; a :class:`ClassConditionalMaps` model, its own map only).
    Images are preprocessed as the localizer's record says and go to its device.
    """
    main = localizer.map_kind
    kinds = tuple(kinds or (main,))
    if kinds != (main,) and not isinstance(localizer, MultiMapModel):
        raise TypeError(f"{type(localizer).__name__} offers one map ({main!r}), not {kinds}")
    if map_class not in MAP_CLASSES:
        raise ValueError(f"map_class must be one of {MAP_CLASSES}, got {map_class!r}")
    if map_class == "true" and (kinds != (main,) or not isinstance(localizer, ClassConditionalMaps)):
        raise TedlocError(f"{type(localizer).__name__}: maps of the true class need a model that gives the map of "
                          f"a given class, and one map kind ({main!r})")
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
            scores, maps = _predict(localizer, batch["image"], batch["label"], kinds, map_class)
        scores = scores.double().cpu().numpy()
        maps = {kind: m.double().cpu().numpy() for kind, m in maps.items()}
        for j, i in enumerate(batch["index"].tolist()):
            yield split.image_ids[i], {kind: normalize_scoremap(maps[kind][j], size) for kind in kinds}, scores[j]


def evaluate_localizer(localizer: LocalizationModel, split: Split, batch_size: int = 64, workers: int = 0,
                       all_maps: bool = False, dist=None, map_class: str = "pred", **evaluator_kwargs) -> dict:
    """Metrics of ``localizer`` on ``split``: each map is resized (bicubic) to the input size and
    min-max normalised, then scored against the split's GT (boxes rescaled to the input size).

    With ``all_maps``, a method that offers several maps (``predict_maps``, e.g. TeD-Loc's g and
    <z_p, t_c>) has each scored in the same pass: the main map's metrics at the top level, the
    others under ``maps`` -> kind (without curves).

    ``map_class``: whose maps are scored (``pred`` or ``true``, see :func:`iter_score_maps`; recorded
    in the metrics); Top-1/Top-5 Loc always use the predicted classes' scores.

    With ``dist`` (a :class:`tedloc.engine.distributed.Distributed` of several processes) each
    process scores every ``world_size``-th batch and the evaluators' sums are merged: every
    process gets exactly the metrics of a single-process evaluation.
    """
    main = localizer.map_kind
    kinds = list(map_kinds_of(localizer)) if all_maps and map_class == "pred" else [main]
    evaluators = {kind: WSOLEvaluator(split, **evaluator_kwargs) for kind in kinds}
    sharded = dist is not None and dist.world_size > 1
    indices = shard_indices(len(split), batch_size, dist.rank, dist.world_size) if sharded else None
    for image_id, maps, scores in iter_score_maps(localizer, split, tuple(kinds), batch_size, workers, indices,
                                                  show_progress=dist is None or dist.is_main, map_class=map_class):
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
    metrics["map_class"] = map_class
    if len(kinds) > 1:
        metrics["maps"] = {}
        for kind in kinds[1:]:
            other = evaluators[kind].compute()
            other.pop("curves", None)
            metrics["maps"][kind] = other
    return metrics
