"""Evaluate a :class:`~tedloc.methods.LocalizationModel` on a split: maps at the input size, as wsolevaluation."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from tedloc.data.dataset import Split
from tedloc.engine.distributed import shard_indices
from tedloc.errors import TedlocError
from tedloc.eval.conventions import MAP_CLASSES, EvalProtocol, eval_protocol
from tedloc.eval.evaluator import WSOLEvaluator
from tedloc.eval.scoremaps import normalize_scoremap
from tedloc.models.localizer import (PRED_SUFFIX, ClassScores, LocalizationModel, MultiMapModel,
                                     class_map_kinds, map_kinds_of)
from tedloc.utils.progress import progress

__all__ = ["evaluate_localizer", "iter_score_maps", "scored_kinds", "MAP_CLASSES", "PRED_SUFFIX"]

def scored_kinds(localizer: LocalizationModel, map_class: str, all_maps: bool) -> list[str]:
    """The maps an evaluation scores, the localizer's own first: its own only, or (``all_maps``) every map it
    offers (those of its ``scored_map_kinds`` when it lists them: maps that cost more are scored when asked by
    name) and, under ``map_class='true'``, each class-dependent map of the predicted class too (``KIND@pred``)."""
    if map_class not in MAP_CLASSES:
        raise ValueError(f"map_class must be one of {MAP_CLASSES}, got {map_class!r}")
    if not all_maps:
        return [localizer.map_kind]
    scored = getattr(localizer, "scored_map_kinds", None)
    kinds = [k for k in map_kinds_of(localizer) if scored is None or k in scored or k == localizer.map_kind]
    if map_class == "true":
        kinds += [kind + PRED_SUFFIX for kind in class_map_kinds(localizer) if kind in kinds]
    return kinds


def _predict(localizer: LocalizationModel, images: torch.Tensor, labels: torch.Tensor, kinds: tuple[str, ...],
             map_class: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Class scores and the maps of ``kinds`` for one batch: under ``map_class='true'`` the class-dependent
    maps are the true classes' (``KIND@pred``: the predicted classes'), every other map as predicted."""
    main = localizer.map_kind
    true_kinds = tuple(k for k in kinds if k in class_map_kinds(localizer)) if map_class == "true" else ()
    if isinstance(localizer, MultiMapModel):  # one forward pass for every map, true and predicted classes
        scores, maps = localizer.predict_maps(images, kinds, classes=labels.to(images.device) if true_kinds else None)
        return scores, {k: maps[k] for k in kinds}
    # a single-map model: its own map, of the predicted class and/or (ClassConditionalMaps) of the true one
    out: dict[str, torch.Tensor] = {}
    if any(k not in true_kinds for k in kinds):
        scores, predicted = localizer.predict(images)
        out[main + PRED_SUFFIX if true_kinds else main] = predicted
    else:
        scores = localizer.scores(images) if isinstance(localizer, ClassScores) else localizer.predict(images)[0]
    if true_kinds:
        out[main] = localizer.cams(images, labels.to(images.device))
    return scores, {k: out[k] for k in kinds}


def iter_score_maps(localizer: LocalizationModel, split: Split, kinds: tuple[str, ...] | None = None,
                    batch_size: int = 64, workers: int = 0, indices: list[int] | None = None,
                    show_progress: bool = True, protocol: EvalProtocol | str = "standard"
                    ) -> Iterator[tuple[str, dict[str, np.ndarray], np.ndarray]]:
    """``(image id, kind -> score map, class scores)`` for every image of ``split`` (or ``indices``), in order.

    Each map is resized (bicubic) to the ``protocol``'s ``map_size`` (None: the input size) and min-max
    normalised, as wsolevaluation does; ``kinds`` (default: the localizer's own map) uses ``predict_maps``
    when several are asked. The protocol's ``map_class``: ``true`` (GT-known, as wsolevaluation and the papers:
    a CAM is the true class's map) or ``pred`` (the predicted class's: no label used); maps that do not depend on a
    class (TeD-Loc's g, DiPS) are the same either way. ``KIND@pred`` asks for a class-dependent map of the predicted
    class under ``true``. Images are preprocessed as the localizer's record says and go to its device.
    """
    protocol = eval_protocol(protocol)
    map_class, map_size = protocol.map_class, protocol.map_size
    main = localizer.map_kind
    kinds = tuple(kinds or (main,))
    offered = set(map_kinds_of(localizer)) | {k + PRED_SUFFIX for k in class_map_kinds(localizer)}
    unknown = [k for k in kinds if k not in offered or (k.endswith(PRED_SUFFIX) and map_class != "true")]
    if unknown:
        raise TedlocError(f"{type(localizer).__name__} offers the maps {', '.join(sorted(offered))} "
                          f"(KIND@pred under map_class 'true' only), not {', '.join(unknown)}")
    pre = localizer.preprocessing
    dataset = pre.dataset(split)
    if indices is not None:
        dataset = Subset(dataset, indices)
    device = localizer.device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    side = int(map_size or pre.input_size)
    size = (side, side)
    for batch in progress(loader, desc=f"evaluating {split.name}", unit="batch", enabled=show_progress):
        batch["image"] = batch["image"].to(device, non_blocking=True)
        with torch.no_grad():
            scores, maps = _predict(localizer, batch["image"], batch["label"], kinds, map_class)
        scores = scores.double().cpu().numpy()
        maps = {kind: m.double().cpu().numpy() for kind, m in maps.items()}
        for j, i in enumerate(batch["index"].tolist()):
            yield split.image_ids[i], {kind: normalize_scoremap(maps[kind][j], size) for kind in kinds}, scores[j]


def evaluate_localizer(localizer: LocalizationModel, split: Split, protocol: EvalProtocol | str = "standard", *,
                       batch_size: int = 64, workers: int = 0, all_maps: bool = False, dist=None,
                       masks: bool | None = None, num_classes: int | None = None,
                       val_threshold: float | None = None, **changes) -> dict:
    """Metrics of ``localizer`` on ``split`` under ``protocol`` (a record or a preset name, with ``changes``:
    see :mod:`tedloc.eval.conventions`): each map is resized (bicubic) to its ``map_size`` (None: the input
    size) and min-max normalised, then scored against the split's GT (boxes rescaled to that size).
    ``masks=False`` leaves PxAP out; ``num_classes`` checks the length of every class score vector.

    With ``all_maps``, a method that offers several maps (``predict_maps``, e.g. TeD-Loc's g and
    <z_p, t_c>) has each scored in the same pass: the main map's metrics at the top level, the
    others under ``maps`` -> kind (without curves); under ``map_class='true'`` each class-dependent map
    is also scored with the predicted class (``cam@pred``, ``class@pred``).

    The protocol's ``map_class``: whose maps are scored (``true``, GT-known, the convention of wsolevaluation and the
    papers; or ``pred``; see :func:`iter_score_maps`; recorded in the metrics). Top-1 Loc needs the right
    class, so the true class's map is the predicted one wherever it counts; Top-5 Loc scores the true
    class's map when the true class is among the top 5.

    ``val_threshold``: a threshold of the main map chosen without this split's boxes (a run's, chosen on its
    val split): its GT-known Loc, Top-1/Top-5 Loc and mIoU are reported too (``Top1Loc@val_thr``, ...; see
    :class:`~tedloc.eval.evaluator.WSOLEvaluator`), beside the oracle ones.

    With ``dist`` (a :class:`tedloc.engine.distributed.Distributed` of several processes) each
    process scores every ``world_size``-th batch and the evaluators' sums are merged: every
    process gets exactly the metrics of a single-process evaluation.
    """
    protocol = eval_protocol(protocol, **changes)
    evaluator_kwargs = {"protocol": protocol, "masks": masks, "num_classes": num_classes}
    main = localizer.map_kind
    kinds = scored_kinds(localizer, protocol.map_class, all_maps)
    main_kwargs = {**evaluator_kwargs, "val_threshold": val_threshold}  # the threshold is of the main map only

    def evaluators_of() -> dict[str, WSOLEvaluator]:
        return {kind: WSOLEvaluator(split, **(main_kwargs if kind == main else evaluator_kwargs)) for kind in kinds}

    evaluators = evaluators_of()
    sharded = dist is not None and dist.world_size > 1
    indices = shard_indices(len(split), batch_size, dist.rank, dist.world_size) if sharded else None
    for image_id, maps, scores in iter_score_maps(localizer, split, tuple(kinds), batch_size, workers, indices,
                                                  show_progress=dist is None or dist.is_main, protocol=protocol):
        for kind, evaluator in evaluators.items():
            evaluator.accumulate(image_id, maps[kind], scores)
    if sharded:
        states = dist.gather_objects({kind: evaluator.state() for kind, evaluator in evaluators.items()})
        evaluators = evaluators_of()
        for state in states:
            for kind, evaluator in evaluators.items():
                evaluator.merge(state[kind])
    metrics = evaluators[main].compute()
    metrics["map"] = main
    metrics["map_class"] = protocol.map_class
    metrics["map_size"] = int(protocol.map_size or localizer.preprocessing.input_size)
    if len(kinds) > 1:
        metrics["maps"] = {}
        for kind in kinds[1:]:
            other = evaluators[kind].compute()
            other.pop("curves", None)
            metrics["maps"][kind] = other
    return metrics
