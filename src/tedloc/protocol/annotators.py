"""Pseudo-box annotators: one box per validation image, made without any human box (thesis §4.3.1).

- ``cam``: the true-class CAM of a pretrained classifier, Otsu, the box of the largest region.
- ``ss``: Selective Search proposals (OpenCV ``ximgproc``, fast mode), each scored by the
  classifier's confidence for the true class on the box content; the top 20 % by that score are
  kept, then those containing the peak of the true-class CAM (pointing game); the most
  confident survivor wins.
- ``rpn``: class-agnostic proposals of torchvision's Faster R-CNN region proposal network, ranked
  by objectness; the top 20 % are kept, then the pointing game, then the classifier's confidence.
- ``clip``: the CLIP-ES map of the true class (:class:`~tedloc.pseudolabels.ClipESLocalizer`, the same
  implementation as ``tedloc cams --source clip-es``), Otsu, the largest region.

Box content confidence (:class:`~tedloc.pseudolabels.classifier_tools.ClassifierTools`): the softmax
probability of the true class for the image whose outside of the box is blurred (a Gaussian of
sigma = 1/8 of the image side; DiPS-style), so context
is damped but the object's scale is kept. If the pointing game leaves no box, the most
confident box of the pool is kept (the thesis does not say; documented in docs/PROTOCOL.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch
from PIL import Image

from tedloc.errors import TedlocError
from tedloc.eval.evaluator import box_from_map
from tedloc.models.localizer import ClassConditionalMaps
from tedloc.pseudolabels.classifier_tools import ClassifierTools
from tedloc.utils.device import Runtime
from tedloc.utils.registry import Registry
from tedloc.weights import loading_weights

__all__ = ["ANNOTATORS", "AnnotatorSpec", "AnnotatorContext", "Annotator", "register_annotator", "create_annotator",
           "select_by_pointing_game", "selective_search_boxes", "ClassifierTools", "ProposalAnnotator", "STAGES"]

# the stages of a proposal annotator's chain (thesis Table 4.5), as :meth:`ProposalAnnotator.stages` names them
STAGES = ("top box", "PG only", "PG + top 20%", "final")


def _box_contains(boxes: np.ndarray, point: tuple[int, int]) -> np.ndarray:
    x, y = point
    return (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])


def select_by_pointing_game(boxes: np.ndarray, rank: np.ndarray, peak: tuple[int, int],
                            confidence: Callable[[np.ndarray], np.ndarray], fraction: float = 0.2) -> np.ndarray:
    """The thesis' selection: top ``fraction`` of ``boxes`` by ``rank`` (higher first), those containing
    ``peak``, then the one with the highest ``confidence(boxes)``; without survivors, the most
    confident box of the pool."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 0:
        raise ValueError("no proposal to select from")
    order = np.argsort(-np.asarray(rank, dtype=np.float64), kind="stable")
    pool = boxes[order[:max(1, math.ceil(fraction * len(boxes)))]]
    hit = pool[_box_contains(pool, peak)]
    candidates = hit if len(hit) else pool
    return candidates[int(np.argmax(confidence(candidates)))]


def selective_search_boxes(image: Image.Image, mode: str = "fast", max_proposals: int = 200) -> np.ndarray:
    """Selective Search proposals (inclusive boxes, OpenCV's order), at most ``max_proposals``."""
    if not hasattr(cv2, "ximgproc"):
        raise TedlocError("Selective Search needs opencv-contrib (cv2.ximgproc); see docs/INSTALL.md")
    cv2.setNumThreads(1)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1]))
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    elif mode == "quality":
        ss.switchToSelectiveSearchQuality()
    else:
        raise TedlocError(f"unknown selective search mode {mode!r} (fast, quality)")
    rects = np.asarray(ss.process(), dtype=np.int64).reshape(-1, 4)[:max_proposals]
    return np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2] - 1, rects[:, 1] + rects[:, 3] - 1], axis=1)


class Annotator:
    """``annotator(image, label) -> box`` (inclusive, image pixels); ``name`` and ``settings`` describe it."""

    name = ""

    def settings(self) -> dict:
        """What, besides its name, makes its boxes (recorded beside the box file)."""
        return {}

    def __call__(self, image: Image.Image, label: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class CAMAnnotator(Annotator):
    """The box of the largest region of the Otsu-thresholded true-class CAM of the classifier."""

    name = "cam"

    def __init__(self, tools: ClassifierTools):
        self.tools = tools

    def __call__(self, image: Image.Image, label: int) -> np.ndarray:
        return np.array(box_from_map(self.tools.cam(image, label), "otsu"), dtype=np.int64)


class ProposalAnnotator(Annotator):
    """Proposals ranked by a score (:meth:`ranked`), the top ``fraction`` kept, the pointing game on the
    true-class CAM peak, then the classifier's confidence (:func:`select_by_pointing_game`); the whole image
    if there is no proposal. :meth:`stages` gives the box after each stage of that chain."""

    fraction = 0.2

    def ranked(self, image: Image.Image, label: int
               ) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """``(proposals (N, 4), rank (N,) higher first, confidence(boxes))`` of one image."""
        raise NotImplementedError  # pragma: no cover - interface

    def __call__(self, image: Image.Image, label: int) -> np.ndarray:
        boxes, rank, confidence = self.ranked(image, label)
        if len(boxes) == 0:
            w, h = image.size
            return np.array([0, 0, w - 1, h - 1], dtype=np.int64)
        return select_by_pointing_game(boxes, rank, self.tools.peak(image, label), confidence, self.fraction)

    def stages(self, image: Image.Image, label: int) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[int, int]]:
        """``(stage -> box, every proposal, the CAM peak)``. Stages (:data:`STAGES`): ``top box``, the first by
        rank; ``PG only``, the first by rank of the proposals containing the peak (no 20 % pool); ``PG + top
        20%``, the same within the pool; ``final``, the annotator's box (pool, pointing game, confidence).
        Without a proposal every stage is the whole image."""
        boxes, rank, confidence = self.ranked(image, label)
        peak = self.tools.peak(image, label)
        if len(boxes) == 0:
            w, h = image.size
            whole = np.array([0, 0, w - 1, h - 1], dtype=np.int64)
            return {stage: whole for stage in STAGES}, whole[None], peak
        ordered = boxes[np.argsort(-np.asarray(rank, dtype=np.float64), kind="stable")]
        pool = ordered[:max(1, math.ceil(self.fraction * len(ordered)))]
        hit_all, hit_pool = ordered[_box_contains(ordered, peak)], pool[_box_contains(pool, peak)]
        out = {"top box": ordered[0], "PG only": hit_all[0] if len(hit_all) else ordered[0],
               "PG + top 20%": hit_pool[0] if len(hit_pool) else pool[0],
               "final": select_by_pointing_game(boxes, rank, peak, confidence, self.fraction)}
        return out, boxes, peak


class SelectiveSearchAnnotator(ProposalAnnotator):
    """Selective Search proposals ranked by the classifier's box confidence, then the pointing game on the
    true-class CAM peak (:func:`select_by_pointing_game`); the whole image if there is no proposal."""

    name = "ss"

    def __init__(self, tools: ClassifierTools, mode: str = "fast", max_proposals: int = 200, fraction: float = 0.2):
        self.tools, self.mode, self.max_proposals, self.fraction = tools, mode, max_proposals, fraction

    def settings(self) -> dict:
        """The Selective Search mode, the proposal cap and the fraction kept before the pointing game."""
        return {"mode": self.mode, "max_proposals": self.max_proposals, "fraction": self.fraction}

    def ranked(self, image: Image.Image, label: int
               ) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Selective Search proposals ranked by the classifier's confidence (computed once for all)."""
        boxes = selective_search_boxes(image, self.mode, self.max_proposals)
        conf = self.tools.confidence(image, label, boxes) if len(boxes) else np.zeros(0)
        lookup = {tuple(b): c for b, c in zip(boxes.tolist(), conf)}
        return boxes, conf, lambda bs: np.array([lookup[tuple(b)] for b in bs.tolist()])


class RPNAnnotator(ProposalAnnotator):
    """torchvision's Faster R-CNN (ResNet-50 FPN) region proposal network, class-agnostic.

    ``weights``: ``"DEFAULT"`` (COCO weights, downloaded by torchvision, needs network once), a
    local state-dict file of the whole detector, or ``None`` for random weights (tests only).
    """

    name = "rpn"

    def __init__(self, tools: ClassifierTools, weights: str | None = "DEFAULT", fraction: float = 0.2,
                 max_proposals: int = 1000, min_size: int = 800):
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        self.tools, self.fraction, self.weights = tools, fraction, weights
        kwargs = {"weights_backbone": None, "rpn_post_nms_top_n_test": max_proposals, "min_size": min_size}
        if weights in (None, "DEFAULT"):
            with loading_weights("torchvision:fasterrcnn_resnet50_fpn", needed=weights == "DEFAULT"):
                model = fasterrcnn_resnet50_fpn(weights=weights, **kwargs)
        else:
            model = fasterrcnn_resnet50_fpn(weights=None, **kwargs)
            try:
                model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            except Exception as exc:
                raise TedlocError(f"{weights}: not a Faster R-CNN ResNet-50 FPN state dict ({exc})") from None
        self.model = model.eval()

    def settings(self) -> dict:
        """The detector weights and the fraction of proposals kept before the pointing game."""
        return {"weights": self.weights, "fraction": self.fraction}

    @torch.no_grad()
    def proposals(self, image: Image.Image) -> np.ndarray:
        """Proposals in image pixels (inclusive), by decreasing objectness."""
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        images, _ = self.model.transform([x])
        features = self.model.backbone(images.tensors)
        boxes = self.model.rpn(images, features)[0][0]  # sorted by objectness (NMS keeps score order)
        rh, rw = images.image_sizes[0]
        scale = torch.tensor([image.width / rw, image.height / rh] * 2)
        b = (boxes * scale).round().long().numpy()
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, image.width - 1)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, image.height - 1)
        b[:, 2] = np.maximum(b[:, 2], b[:, 0])
        b[:, 3] = np.maximum(b[:, 3], b[:, 1])
        return b

    def ranked(self, image: Image.Image, label: int
               ) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """RPN proposals ranked by objectness; the confidence computed only for the boxes asked."""
        boxes = self.proposals(image)
        return boxes, -np.arange(len(boxes), dtype=np.float64), lambda bs: self.tools.confidence(image, label, bs)


class CLIPAnnotator(CAMAnnotator):
    """The Otsu box of the CLIP-ES map of the true class (:class:`~tedloc.pseudolabels.ClipESLocalizer`, which maps any
    given class as a classifier's CAM does); no classifier is needed."""

    name = "clip"

    def __init__(self, localizer: ClassConditionalMaps):
        super().__init__(ClassifierTools(localizer))


@dataclass
class AnnotatorContext:
    """What an annotator may draw on: the classes, the device, and a classifier run when one is given."""

    class_names: list[str]
    run: str | None = None  # a classifier run (tedloc pretrain)
    runtime: Runtime = field(kw_only=True)

    def classifier(self, method: str) -> ClassifierTools:
        """The run's classifier (CAMs, confidences); without a run, or with a run of another kind, a
        :class:`TedlocError` naming ``method``."""
        from tedloc.methods import load_model

        if self.run is None:
            raise TedlocError(f"--method {method} needs --run (a classifier run from `tedloc pretrain`)")
        localizer = load_model(self.run, runtime=self.runtime)
        if not isinstance(localizer, ClassConditionalMaps):
            raise TedlocError(f"{self.run}: pseudo-boxes need a classifier run (tedloc pretrain), not this kind")
        return ClassifierTools(localizer)

    @property
    def device(self) -> torch.device:
        """The device networks run on."""
        return self.runtime.device


@dataclass(frozen=True)
class AnnotatorSpec:
    """A registered annotator: ``build(context, **options) -> Annotator``; ``options``: the keyword options it
    takes (``tedloc pseudo-boxes`` passes those given)."""

    name: str
    description: str
    build: Callable[..., Annotator]
    options: tuple[str, ...] = ()


ANNOTATORS: Registry[AnnotatorSpec] = Registry("pseudo-box annotator")


def register_annotator(spec: AnnotatorSpec) -> AnnotatorSpec:
    """Add ``spec`` to :data:`ANNOTATORS` (``tedloc pseudo-boxes --method`` offers every registered name)."""
    return ANNOTATORS.register(spec.name)(spec)


register_annotator(AnnotatorSpec(
    "cam", "Otsu box of the classifier's true-class CAM (needs --run)",
    lambda ctx, **kw: CAMAnnotator(ctx.classifier("cam"), **kw)))
register_annotator(AnnotatorSpec(
    "ss", "Selective Search proposals, pointing game, classifier confidence (needs --run)",
    lambda ctx, **kw: SelectiveSearchAnnotator(ctx.classifier("ss"), **kw), ("fraction",)))
register_annotator(AnnotatorSpec(
    "rpn", "Faster R-CNN region proposals, pointing game, classifier confidence (needs --run)",
    lambda ctx, **kw: RPNAnnotator(ctx.classifier("rpn"), **kw), ("fraction", "weights")))


def _clip(ctx: AnnotatorContext, clip: str = "ViT-B-16", clip_pretrained: str = "openai") -> Annotator:
    from tedloc.models.clip_vit import ClipSpec
    from tedloc.pseudolabels.clip_localizers import create_training_free

    return CLIPAnnotator(create_training_free("clip-es", ctx.class_names, ClipSpec(clip, clip_pretrained),
                                              runtime=ctx.runtime))


register_annotator(AnnotatorSpec("clip", "Otsu box of the CLIP-ES map of the true class (--clip, --clip-pretrained)",
                                 _clip, ("clip", "clip_pretrained")))


def create_annotator(name: str, context: AnnotatorContext, **options) -> Annotator:
    """The annotator registered as ``name``, built on ``context`` with ``options`` (keywords of its class)."""
    return ANNOTATORS.get(name).build(context, **options)
