"""The training-free CLIP localizers and their registry (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import TedlocError
from tedloc.models.clip_vit import ClipSpec, ClipTower, load_clip
from tedloc.pseudolabels.clip_dense import LAST_BLOCKS, dense_class_maps
from tedloc.pseudolabels.clip_es import ClipES, ClipESConfig
from tedloc.text.anchors import TEMPLATES
from tedloc.utils.device import Runtime
from tedloc.utils.registry import Registry

__all__ = ["TRAINING_FREE", "TrainingFree", "ClipLocalizer", "ClipESLocalizer", "DenseClipLocalizer",
           "create_training_free", "classification_templates"]


def classification_templates(name: str) -> list[str]:
    """Prompt templates by name: ``imagenet80`` (OpenAI's 80 ImageNet templates, from open_clip) or a set of
    :data:`tedloc.text.anchors.TEMPLATES`."""
    if name == "imagenet80":
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    if name not in TEMPLATES:
        raise TedlocError(f"unknown template set {name!r}; choose from imagenet80, {', '.join(TEMPLATES)}")
    return list(TEMPLATES[name])


class ClipLocalizer:
    """A CLIP tower as a localizer: zero-shot class scores and the map of a class.

    Args:
        tower: the :class:`~tedloc.models.clip_vit.ClipTower`.
        class_names: the dataset's classes.
        preprocessing: the record of the tower's weights at the input size used.
        templates: the templates of the zero-shot classifier (and of the dense maps).
        runtime: device and precision.
    """

    map_kind = "clip"
    pos_mode = "bicubic"  # the interpolation of position embeddings at other input sizes

    def __init__(self, tower: ClipTower, class_names: list[str], preprocessing: Preprocessing,
                 templates: str = "imagenet80", *, runtime: Runtime):
        self.tower = tower
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.templates = templates
        classification_templates(templates)  # an unknown name fails now, not at the first prediction
        self._classify_text: torch.Tensor | None = None
        self.to(runtime)

    @property
    def device(self) -> torch.device:
        """Where the tower runs."""
        return self.runtime.device

    @property
    def classify_text(self) -> torch.Tensor:
        """The class prompts' embeddings ``(K, E)`` (L2-normalised), made on first use: maps of given classes by
        CLIP-ES need none, and K x 80 prompts take a while on a CPU."""
        if self._classify_text is None:
            self._classify_text = self.tower.text_embeddings(self.class_names, classification_templates(self.templates))
        self._classify_text = self._classify_text.to(self.device)
        return self._classify_text

    @classify_text.setter
    def classify_text(self, rows: torch.Tensor) -> None:
        """Use ``rows`` (L2-normalised, ``(K, E)``) as the class prompts' embeddings."""
        self._classify_text = rows

    def to(self, runtime: Runtime) -> "ClipLocalizer":
        """Run on ``runtime``'s device and precision."""
        self.runtime = runtime
        self.tower.to(runtime.device)
        return self

    def record(self) -> dict:
        """What made the maps (stored with caches and boxes)."""
        return {"localizer": self.map_kind, **self.tower.spec.to_dict(), "input_size": self.preprocessing.input_size,
                "templates": self.templates}

    def forward(self, images: torch.Tensor, classes: torch.Tensor | None
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(zero-shot class scores (B, K), maps (B, gh, gw) of ``classes`` or, None, of the predicted ones); a
        localizer may leave the scores out (None) when ``classes`` are given."""
        raise NotImplementedError

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class scores (B, K), maps of the predicted classes): no label needed."""
        return self.forward(images, None)

    def cams(self, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """Maps (B, gh, gw) of ``classes`` (the true ones: GT-known), or of the predicted ones when None."""
        return self.forward(images, classes)[1]

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Zero-shot class probabilities (B, K): softmax of ``exp(logit_scale)`` x cosine of the model's own
        image embedding with the class prompts."""
        tower = self.tower
        text = self.classify_text
        with self.runtime.autocast():
            x, _ = tower.embed(images.to(self.device), pos_mode=self.pos_mode)
            x, _ = tower.run_blocks(x, tower.num_blocks)
        return tower.class_probabilities(x, text)


class ClipESLocalizer(ClipLocalizer):
    """CLIP-ES (:class:`~tedloc.pseudolabels.clip_es.ClipES`) of the true class (``cams``) or of the class CLIP predicts
    (``predict``: "CLIP-ES (Pred)")."""

    map_kind = "clip-es"
    pos_mode = "bilinear"  # CLIP-ES's

    def __init__(self, tower: ClipTower, class_names: list[str], preprocessing: Preprocessing,
                 templates: str = "imagenet80", *, runtime: Runtime, config: ClipESConfig = ClipESConfig()):
        self.clip_es = ClipES(tower, class_names, config)
        super().__init__(tower, class_names, preprocessing, templates, runtime=runtime)

    def to(self, runtime: Runtime) -> "ClipESLocalizer":
        """Run on ``runtime``'s device and precision."""
        super().to(runtime)
        self.clip_es.to(runtime.device)
        return self

    def record(self) -> dict:
        """What made the maps, with CLIP-ES's settings."""
        cfg = self.clip_es.config
        record = {**super().record(), "template": cfg.template, "background": list(cfg.background),
                  "drop_colliding_background": cfg.drop_colliding_background, "refine": cfg.refine,
                  "caa_blocks": cfg.caa_blocks, "box_threshold": cfg.box_threshold,
                  "balance_rounds": cfg.balance_rounds}
        record.pop("templates")  # CLIP-ES's maps of given classes never use the classification prompts
        return record

    def forward(self, images: torch.Tensor, classes: torch.Tensor | None
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(zero-shot scores, CLIP-ES maps of the predicted classes) from one trunk pass when ``classes`` is None;
        (None, the maps of ``classes``) otherwise."""
        classify_text = self.classify_text if classes is None else None
        return self.clip_es.maps(images, classes, classify_text=classify_text, autocast=self.runtime.autocast)


class DenseClipLocalizer(ClipLocalizer):
    """The cosine maps of a dense CLIP variant (``clip``, ``sclip``, ``naclip``:
    :mod:`tedloc.pseudolabels.clip_dense`)."""

    def __init__(self, tower: ClipTower, class_names: list[str], preprocessing: Preprocessing,
                 templates: str = "imagenet80", *, runtime: Runtime, variant: str = "clip"):
        LAST_BLOCKS.get(variant)
        self.map_kind = variant
        super().__init__(tower, class_names, preprocessing, templates, runtime=runtime)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, classes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(zero-shot scores, cosine maps of ``classes`` or of the predicted classes) from one pass."""
        text = self.classify_text
        maps, scores = dense_class_maps(self.tower, images, text, self.map_kind, self.pos_mode, self.runtime.autocast)
        picked = scores.argmax(dim=1) if classes is None else torch.as_tensor(classes, device=maps.device).long()
        return scores, maps[torch.arange(len(maps), device=maps.device), picked.reshape(-1)].float()


@dataclass(frozen=True)
class TrainingFree:
    """A training-free localizer by name.

    Attributes:
        name: ``tedloc evaluate --method NAME`` / ``tedloc cams --source NAME``.
        description: one line for ``--help``.
        create: ``create(tower, class_names, preprocessing, templates, runtime, **options) -> ClipLocalizer``.
    """

    name: str
    description: str
    create: Callable[..., ClipLocalizer]


TRAINING_FREE: Registry[TrainingFree] = Registry("training-free localizer")


def _register(entry: TrainingFree) -> None:
    TRAINING_FREE.register(entry.name)(entry)


_register(TrainingFree("clip-es", "CLIP-ES: softmax-Grad-CAM with background prompts + CAA (Lin et al. 2023)",
                       lambda tower, names, pre, templates, runtime, **options: ClipESLocalizer(
                           tower, names, pre, templates, runtime=runtime, config=ClipESConfig(**options))))
for _name, _text in (("clip", "vanilla CLIP: patch-token / class-prompt cosine"),
                     ("sclip", "SCLIP: correlative self-attention in the last block (Wang et al. 2024)"),
                     ("naclip", "NACLIP: neighbourhood attention, no residual/FFN in the last block "
                                "(Hajimiri et al. 2025)")):
    _register(TrainingFree(_name, _text, lambda tower, names, pre, templates, runtime, _v=_name, **options:
                           DenseClipLocalizer(tower, names, pre, templates, runtime=runtime, variant=_v, **options)))


def create_training_free(name: str, class_names: list[str], clip: ClipSpec = ClipSpec(), input_size: int | None = None,
                         templates: str = "imagenet80", *, runtime: Runtime, **options) -> ClipLocalizer:
    """The training-free localizer ``name`` of :data:`TRAINING_FREE` for ``class_names``, on ``clip``'s weights at
    ``input_size`` (default: the model's; rounded up to a multiple of the patch), on ``runtime``."""
    entry = TRAINING_FREE.get(name)
    tower = load_clip(clip, runtime.device)
    tower.check_class_names(class_names)
    return entry.create(tower, class_names, tower.preprocessing(input_size), templates, runtime, **options)
