"""Evaluate a :class:`~tedloc.methods.LocalizationModel` on a split: maps at the input size, as wsolevaluation."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from tedloc.data.dataset import Split
from tedloc.eval.evaluator import WSOLEvaluator
from tedloc.eval.scoremaps import normalize_scoremap
from tedloc.utils.progress import progress

__all__ = ["evaluate_localizer", "iter_score_maps"]


def iter_score_maps(localizer, split: Split, kinds: tuple[str, ...] | None = None, batch_size: int = 64,
                    workers: int = 0) -> Iterator[tuple[str, dict[str, np.ndarray], np.ndarray]]:
    """``(image id, kind -> score map, class scores)`` for every image of ``split``, in order.

    Each map is resized (bicubic) to the input size and min-max normalised, as wsolevaluation
    does; ``kinds`` (default: the localizer's own map) uses ``predict_maps`` when several are asked.
    """
    from tedloc.data import EvalTransform, WSOLImageDataset

    main = getattr(localizer, "map_kind", "default")
    kinds = tuple(kinds or (main,))
    dataset = WSOLImageDataset(split, EvalTransform(localizer.input_size), mean=localizer.mean, std=localizer.std)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    size = (localizer.input_size, localizer.input_size)
    for batch in progress(loader, desc=f"evaluating {split.name}", unit="batch"):
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


def evaluate_localizer(localizer, split: Split, batch_size: int = 64, workers: int = 0, all_maps: bool = False,
                       **evaluator_kwargs) -> dict:
    """Metrics of ``localizer`` on ``split``: each map is resized (bicubic) to the input size and
    min-max normalised, then scored against the split's GT (boxes rescaled to the input size).

    With ``all_maps``, a method that offers several maps (``predict_maps``, e.g. TeD-Loc's g and
    <z_p, t_c>) has each scored in the same pass: the main map's metrics at the top level, the
    others under ``maps`` -> kind (without curves).
    """
    main = getattr(localizer, "map_kind", "default")
    kinds = [main]
    if all_maps and hasattr(localizer, "predict_maps"):
        kinds += [k for k in localizer.map_kinds if k != main]
    evaluators = {kind: WSOLEvaluator(split, **evaluator_kwargs) for kind in kinds}
    for image_id, maps, scores in iter_score_maps(localizer, split, tuple(kinds), batch_size, workers):
        for kind, evaluator in evaluators.items():
            evaluator.accumulate(image_id, maps[kind], scores)
    metrics = evaluators[main].compute()
    if len(kinds) > 1:
        metrics["map"] = main
        metrics["maps"] = {}
        for kind in kinds[1:]:
            other = evaluators[kind].compute()
            other.pop("curves", None)
            metrics["maps"][kind] = other
    return metrics
