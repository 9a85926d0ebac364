"""NL-CCAM's combinational class activation map: the CAMs of all classes, weighted by their rank.

The classes are ranked by the classifier's logits (rank 0: the predicted class) and the map is
``sum_r w_r * CAM(class of rank r)`` with ``CAM(c) = W[c] . F`` (the head's weights on the last feature map, no bias,
no ReLU). The authors' combination functions (``IoU_check_cub_5.py``, ``returnCAM_``), for K classes:

- ``quadratic`` (their default): the first P = round(positive_fraction * K) ranks weigh ``linspace(1, 0, P) ** 2``,
  the other K - P weigh ``-linspace(0, -1, K - P) ** 2`` (the authors: P = 100 of CUB's 200 classes);
- ``linear``: ``linspace(1, -1, K)``;
- ``t1b1``: the CAM of the class minus the CAM of the last-ranked class;
- ``t1b0``: the CAM of the class alone.

``quadratic`` and ``linear`` do not depend on the class asked (only on the ranking); ``t1b1`` and ``t1b0`` are of the
given class (the true one under the GT-known protocol), else of the predicted one.
"""
from __future__ import annotations

import torch

from tedloc.errors import OptionError

__all__ = ["COMBINATIONS", "CLASS_COMBINATIONS", "rank_weights", "combinational_cams"]

COMBINATIONS = ("quadratic", "linear", "t1b1", "t1b0")
CLASS_COMBINATIONS = ("t1b1", "t1b0")  # the ones whose map depends on the class asked


def rank_weights(num_classes: int, combination: str = "quadratic", positive_fraction: float = 0.5) -> torch.Tensor:
    """The weight ``(K,)`` of each rank (rank 0 first) of a ranked combination (``quadratic`` or ``linear``), in
    float64."""
    if combination == "linear":
        return torch.linspace(1.0, -1.0, num_classes, dtype=torch.float64)
    if combination != "quadratic":
        raise OptionError(f"combination: rank weights are of quadratic or linear, got {combination!r}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise OptionError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}")
    positive = int(round(positive_fraction * num_classes))
    high = torch.linspace(1.0, 0.0, positive, dtype=torch.float64) ** 2
    low = -(torch.linspace(0.0, -1.0, num_classes - positive, dtype=torch.float64) ** 2)
    return torch.cat([high, low])


def combinational_cams(features: torch.Tensor, head_weight: torch.Tensor, logits: torch.Tensor,
                       classes: torch.Tensor | None = None, combination: str = "quadratic",
                       positive_fraction: float = 0.5) -> torch.Tensor:
    """The combinational CAMs ``(B, h, w)`` of features ``(B, C, h, w)`` with the head's weights ``(K, C)``, the
    classes ranked by ``logits`` ``(B, K)`` (ties: the lower class index first); ``classes`` ``(B,)``: the class of
    ``t1b1`` / ``t1b0`` (None: the predicted one). Computed in float32 as one weighted class vector per image."""
    if combination not in COMBINATIONS:
        raise OptionError(f"combination must be one of {', '.join(COMBINATIONS)}, got {combination!r}")
    features, weight = features.float(), head_weight.float()
    order = torch.sort(logits.float(), dim=1, descending=True, stable=True).indices  # (B, K) classes by rank
    if combination in CLASS_COMBINATIONS:
        target = order[:, 0] if classes is None else classes.to(order.device).long()
        vectors = weight[target]
        if combination == "t1b1":
            vectors = vectors - weight[order[:, -1]]
    else:
        ranks = rank_weights(weight.shape[0], combination, positive_fraction).to(weight)
        vectors = torch.einsum("k,bkc->bc", ranks, weight[order])
    return torch.einsum("bc,bchw->bhw", vectors, features)
