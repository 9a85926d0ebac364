"""Evaluate a :class:`~tedloc.methods.Localizer` on a split: maps at the input size, as wsolevaluation."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from tedloc.data.dataset import Split
from tedloc.eval.evaluator import WSOLEvaluator
from tedloc.eval.scoremaps import normalize_scoremap
from tedloc.utils.progress import progress

__all__ = ["evaluate_localizer"]


def evaluate_localizer(localizer, split: Split, batch_size: int = 64, workers: int = 0, **evaluator_kwargs) -> dict:
    """Metrics of ``localizer`` on ``split``: each map is resized (bicubic) to the input size and
    min-max normalised, then scored against the split's GT (boxes rescaled to the input size)."""
    from tedloc.data import EvalTransform, WSOLImageDataset

    dataset = WSOLImageDataset(split, EvalTransform(localizer.input_size), mean=localizer.mean, std=localizer.std)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    evaluator = WSOLEvaluator(split, **evaluator_kwargs)
    size = (localizer.input_size, localizer.input_size)
    for batch in progress(loader, desc=f"evaluating {split.name}", unit="batch"):
        with torch.no_grad():
            scores, maps = localizer.predict(batch["image"])
        scores = scores.double().cpu().numpy()
        maps = maps.double().cpu().numpy()
        for j, i in enumerate(batch["index"].tolist()):
            evaluator.accumulate(split.image_ids[i], normalize_scoremap(maps[j], size), scores[j])
    return evaluator.compute()
