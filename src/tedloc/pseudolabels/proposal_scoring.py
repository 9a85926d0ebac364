"""DiPS's proposals of a split (thesis Alg. 2.1): attention maps of a frozen ViT -> Otsu boxes -> scored by a
classifier with the outside blurred -> the top K per image, in a resumable :class:`ProposalCache`.

Attention maps come from the eval view the ViT's preprocessing defines; their boxes are found on
the maps resized to the original image, so the cache holds original-image pixels and any training
view can rasterise them. An image whose maps give no proposal at all (every map constant, or
nothing above Otsu) gets the whole image as its only proposal (from the mean map): a documented
fallback (scored like any proposal).
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from tedloc.data.dataset import Split
from tedloc.data.images import load_image
from tedloc.data.preprocessing import Preprocessing
from tedloc.eval.boxes import box_iou
from tedloc.models.vit_attention import cls_attention_maps
from tedloc.pseudolabels.classifier_tools import ClassifierTools
from tedloc.pseudolabels.proposal_cache import ProposalCache, top_k
from tedloc.pseudolabels.proposals import Proposal, attention_map_set, image_proposals
from tedloc.utils.progress import progress

__all__ = ["compute_proposal_cache", "proposal_quality"]


def compute_proposal_cache(encoder: nn.Module, preprocessing: Preprocessing, tools: ClassifierTools, split: Split,
                           out: str | os.PathLike, settings: dict, heads: tuple[int, ...] = (0, 1, 2, 3),
                           min_size: float = 0.05, k: int = 5, batch_size: int = 32) -> ProposalCache:
    """Fill (or resume) the proposal cache of ``split`` at ``out``.

    ``encoder``: a timm ViT with a class token (eval mode, on its device); ``preprocessing``: its record;
    ``tools``: the scoring classifier; ``settings``: what else identifies the proposals (encoder and
    classifier names), recorded with ``heads``, ``min_size`` and ``k``.
    """
    record = {**settings, "heads": list(heads), "min_size": float(min_size),
              "blur_sigma": tools.blur_sigma, "view": "eval", "input_size": preprocessing.input_size}
    cache = ProposalCache(out, split.image_ids, k, record)
    missing = cache.missing().tolist()
    if not missing:
        return cache
    device = next(encoder.parameters()).device
    dataset = torch.utils.data.Subset(preprocessing.dataset(split), missing)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in progress(loader, desc=f"proposals of {split.name}", unit="batch"):
        with torch.no_grad():
            map_sets = attention_map_set(cls_attention_maps(encoder, batch["image"].to(device)), heads).cpu()
        rows, found, items = [], [], []
        for j, i in enumerate(batch["index"].tolist()):
            image = load_image(split.image_path(i))
            width, height = image.size
            proposals = image_proposals(map_sets[j], (height, width), min_size)
            if not proposals:
                proposals = [Proposal((0, 0, width - 1, height - 1), 0)]
            rows.append(i)
            found.append(proposals)
            items.append((image, int(split.labels[i]), np.array([p.box for p in proposals])))
        kept = [top_k(proposals, confidence, k) for proposals, confidence in zip(found, tools.confidences(items))]
        found, scores = [p for p, _ in kept], [s for _, s in kept]
        cache.write(rows, found, scores)
    return cache


def proposal_quality(cache: ProposalCache, split: Split) -> dict:
    """How good the stored proposals are against the GT boxes (the thesis reports it): the mean over images of
    the IoU of the best proposal (the best any selection could do) and of the top-scored one, and the share of
    images where each reaches IoU 0.5 (percent). IoU of inclusive pixel boxes, best over an image's GT boxes;
    images without GT boxes are skipped."""
    if cache.image_ids != split.image_ids:
        raise ValueError("the proposal cache and the split hold other images")
    best, top = [], []
    for row in range(len(split)):
        gt = np.asarray(split.boxes[row]).reshape(-1, 4)
        found, _ = cache.get(row)
        if len(gt) == 0:
            continue
        if not found:
            best.append(0.0)
            top.append(0.0)
            continue
        ious = box_iou(np.array([p.box for p in found]), gt).max(axis=1)
        best.append(float(ious.max()))
        top.append(float(ious[0]))
    best_arr, top_arr = np.array(best), np.array(top)
    if len(best_arr) == 0:
        raise ValueError(f"split {split.name!r} has no GT boxes to score proposals with")
    return {"images": len(best_arr), "mIoU best": 100 * best_arr.mean(), "mIoU top-1": 100 * top_arr.mean(),
            "best IoU>=50": 100 * (best_arr >= 0.5).mean(), "top-1 IoU>=50": 100 * (top_arr >= 0.5).mean()}
