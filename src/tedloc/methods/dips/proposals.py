"""DiPS's proposals of a split as the method needs them: the frozen ViT (loaded as the training loads it) and
the scoring classifier f_r (a ``tedloc pretrain`` run) ->
:func:`tedloc.pseudolabels.proposal_scoring.compute_proposal_cache`.

The cache records where the ViT's weights came from (:func:`encoder_source`), so a DiPS run refuses
proposals of another encoder: the map index of every box names one of *its* attention maps.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tedloc.data import load_dataset
from tedloc.engine.run_folder import RunFolder
from tedloc.errors import TedlocError
from tedloc.methods.base import load_encoder
from tedloc.models.vit_attention import check_attention, check_heads
from tedloc.pseudolabels.classifier_tools import ClassifierTools
from tedloc.pseudolabels.proposal_cache import ProposalCache
from tedloc.pseudolabels.proposal_scoring import compute_proposal_cache, proposal_quality
from tedloc.utils.device import Runtime

__all__ = ["encoder_source", "make_proposals", "check_proposals"]


def _sha1(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def encoder_source(run: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
                   pretrained: bool = False) -> str:
    """Where an encoder's weights come from, as recorded with its proposals: ``run:PATH@SHA1``, ``file:PATH@SHA1``
    (the SHA-1 of the weights, so retrained weights at the same path are another encoder), ``timm`` or
    ``random``."""
    if run:
        folder = RunFolder(run)
        stem = folder.model_stem.with_suffix(".safetensors")
        if not stem.is_file():
            raise TedlocError(f"{run}: no trained model (model.safetensors) to take the ViT from")
        return f"run:{Path(run).resolve()}@{_sha1(stem)}"
    if weights:
        if not Path(weights).is_file():
            raise TedlocError(f"encoder weights not found: {weights}")
        return f"file:{Path(weights).resolve()}@{_sha1(Path(weights))}"
    return "timm" if pretrained else "random"


def make_proposals(data: str | os.PathLike, split: str, out: str | os.PathLike, classifier_run: str | os.PathLike,
                   encoder: str, input_size: int, encoder_run: str | os.PathLike | None = None,
                   encoder_weights: str | os.PathLike | None = None, pretrained: bool = False,
                   heads: tuple[int, ...] = (0, 1, 2, 3), min_size: float = 0.05, k: int = 5,
                   blur_sigma: float | None = None, batch_size: int = 32,
                   *, runtime: Runtime) -> tuple[ProposalCache, dict | None]:
    """Fill (or resume) the proposal cache of ``split`` at ``out``; returns it and its quality against the GT
    boxes (None when the split has none)."""
    from tedloc.methods.registry import load_model

    dataset = load_dataset(data)
    if split not in dataset.splits:
        raise TedlocError(f"{data}: no split {split!r} (has {', '.join(dataset.splits)})")
    part = dataset[split]
    if int(k) < 1:
        raise TedlocError(f"K must be at least 1, got {k}")
    source = encoder_source(encoder_run, encoder_weights, pretrained)
    vit = load_encoder(encoder, input_size, run=encoder_run, weights=encoder_weights, pretrained=pretrained)
    check_attention(vit.model)  # before the cache is made: a wrong setting never leaves a folder behind
    check_heads(vit.model, tuple(heads))
    scorer = load_model(classifier_run, runtime=runtime)
    if scorer.class_names != dataset.class_names:
        raise TedlocError(f"{classifier_run}: a classifier of other classes than {data}")
    if not hasattr(scorer, "cams"):
        raise TedlocError(f"{classifier_run}: the scoring classifier must be a classifier run (tedloc pretrain)")
    tools = ClassifierTools(scorer, batch_size=batch_size, blur_sigma=blur_sigma)
    settings = {"encoder": encoder, "encoder_source": source,
                "classifier": str(Path(classifier_run).resolve())}
    vit.model.to(runtime.device)
    cache = compute_proposal_cache(vit.model, vit.preprocessing, tools, part, out, settings, tuple(heads),
                                   min_size, k, batch_size)
    return cache, (proposal_quality(cache, part) if part.has_boxes else None)


def check_proposals(cache: ProposalCache, encoder: str, source: str, heads: tuple[int, ...], top_k: int,
                    min_size: float | None = None) -> None:
    """Refuse (naming the cache and the first difference) proposals made by another encoder or map set, or with
    another minimum size (when ``min_size`` is given), or fewer stored per image than ``top_k``."""
    if top_k > cache.k:
        raise TedlocError(f"{cache.root}: {cache.k} proposals stored per image, top_k {top_k} asked")
    wanted = {"encoder": encoder, "encoder_source": source, "heads": list(heads)}
    if min_size is not None:
        wanted["min_size"] = float(min_size)
    for key, value in wanted.items():
        if cache.settings.get(key) != value:
            raise TedlocError(f"{cache.root}: the proposals were made with other settings ({key}: "
                              f"{cache.settings.get(key)!r} there, {value!r} here)")
