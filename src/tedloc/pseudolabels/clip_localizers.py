"""The training-free CLIP localizers and their registry (see the package docstring): CLIP-ES, the dense CLIP
variants on an open_clip tower, and CLIPSeg (:mod:`tedloc.pseudolabels.clipseg`, a model of its own)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from tedloc.data.preprocessing import Preprocessing
from tedloc.data.transforms import NativeTransform
from tedloc.errors import OptionError, TedlocError
from tedloc.models.clip_vit import ClipSpec, ClipTower, load_clip
from tedloc.pseudolabels.clip_dense import LAST_BLOCKS, dense_class_maps
from tedloc.pseudolabels.clip_es import ClipES, ClipESConfig
from tedloc.pseudolabels.clipseg import ClipSeg, load_clipseg, minmax_maps
from tedloc.text.anchors import TEMPLATES
from tedloc.utils.device import Runtime
from tedloc.utils.registry import Registry

__all__ = ["TRAINING_FREE", "TrainingFree", "ClipLocalizer", "ClipESLocalizer", "DenseClipLocalizer",
           "ClipSegLocalizer", "create_training_free", "classification_templates", "RESOLUTIONS"]

RESOLUTIONS = ("native", "square")  # CLIP-ES's views of the images of a map cache (see ClipESLocalizer)


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

    def cache_transform(self) -> NativeTransform | None:
        """The views of the images when this localizer fills a map cache; None: the square eval view of
        :attr:`preprocessing`."""
        return None

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
    (``predict``: "CLIP-ES (Pred)").

    ``resolution``: how a map cache (``tedloc cams``, TeD-Loc's pseudo-labels) views the images. ``native`` (the
    reference's): each image at its own size rounded up to a multiple of the patch (bicubic), images of one size
    batched together, each map stored on its own patch grid; an image whose longer side exceeds ``max_side``
    is first scaled down to it (aspect ratio kept; None: never). ``square``: the eval view of
    ``preprocessing`` (a square of its input size). Other callers (``tedloc evaluate``) give the images
    they have.
    """

    map_kind = "clip-es"
    pos_mode = "bilinear"  # CLIP-ES's

    def __init__(self, tower: ClipTower, class_names: list[str], preprocessing: Preprocessing,
                 templates: str = "imagenet80", *, runtime: Runtime, config: ClipESConfig = ClipESConfig(),
                 resolution: str = "native", max_side: int | None = 1024):
        if resolution not in RESOLUTIONS:
            raise OptionError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        if max_side is not None and int(max_side) < tower.patch_size[0]:
            raise OptionError(f"max_side must be at least one patch ({tower.patch_size[0]}), got {max_side}")
        self.clip_es = ClipES(tower, class_names, config)
        self.resolution = resolution
        self.max_side = None if max_side is None else int(max_side)
        super().__init__(tower, class_names, preprocessing, templates, runtime=runtime)

    def cache_transform(self) -> NativeTransform | None:
        """:class:`~tedloc.data.transforms.NativeTransform` of the patch for ``native``; None for ``square``."""
        if self.resolution == "square":
            return None
        return NativeTransform(self.tower.patch_size[0], self.max_side)

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


class ClipSegLocalizer(ClipLocalizer):
    """CLIPSeg (:mod:`tedloc.pseudolabels.clipseg`) as a training-free localizer, as TrCAM-V uses it.

    The map of class k: CLIPSeg's decoder conditioned on CLIP's text embedding of ``prompt.format(name_k)``
    (the class name alone by default: TrCAM-V's prompt), ``sigmoid`` of its logits, averaged over
    ``map_stride`` x ``map_stride`` pixels, min-max normalised per map (a constant map gives zeros).

    The class probabilities: CLIP zero-shot with CLIPSeg's own (frozen, OpenAI) CLIP, the image tower's class
    token through ``post_layernorm`` and ``visual_projection`` against the class prompts of ``templates``:
    ``softmax(exp(logit_scale) x cosine)``, as the other localizers. They come from the image pass the maps
    reuse, so the predicted class's map costs one decoder pass, not one per class. (CLIPSeg's logits are a
    per-pixel "is this the prompt" score, not calibrated across prompts: their mean or max would need the
    decoder for every class and is no classifier.)

    Args:
        clipseg: the :class:`~tedloc.pseudolabels.clipseg.ClipSeg`.
        class_names, preprocessing, templates, runtime: as :class:`ClipLocalizer` (``templates``: the
            zero-shot classifier's only; the maps use ``prompt``).
        prompt: the maps' prompt template (``"{}"``: the class name).
        map_stride: maps come at 1/``map_stride`` of the input side (default 4: 88x88 at 352, the storage of
            Grad-CAM's maps; 1: CLIPSeg's full resolution).
        pair_batch: (image, class) pairs per decoder pass in :meth:`all_maps`.
    """

    map_kind = "clipseg"

    def __init__(self, clipseg: ClipSeg, class_names: list[str], preprocessing: Preprocessing,
                 templates: str = "imagenet80", *, runtime: Runtime, prompt: str = "{}", map_stride: int = 4,
                 pair_batch: int = 256):
        if not isinstance(prompt, str) or "{}" not in prompt:
            raise TedlocError(f"CLIPSeg's prompt must be a template with one {{}} for the class name, got {prompt!r}")
        try:
            prompt.format("x")
        except (IndexError, KeyError, ValueError):
            raise TedlocError(f"CLIPSeg's prompt {prompt!r} is not a template with one {{}}") from None
        if int(map_stride) < 1 or int(pair_batch) < 1:
            raise TedlocError(f"map_stride and pair_batch must be positive, got {map_stride}, {pair_batch}")
        clipseg.check_class_names(class_names)
        classification_templates(templates)  # an unknown name fails now, not at the first prediction
        self.clipseg = clipseg
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.templates = templates
        self.prompt = prompt
        self.map_stride = int(map_stride)
        self.pair_batch = int(pair_batch)
        self._classify_text: torch.Tensor | None = None
        self._prompt_text: torch.Tensor | None = None
        self.to(runtime)

    @property
    def classify_text(self) -> torch.Tensor:
        """The zero-shot classifier's class rows ``(K, P)`` (L2-normalised), made on first use."""
        if self._classify_text is None:
            self._classify_text = self.clipseg.class_text(self.class_names, classification_templates(self.templates))
        self._classify_text = self._classify_text.to(self.device)
        return self._classify_text

    @classify_text.setter
    def classify_text(self, rows: torch.Tensor) -> None:
        """Replace the classifier's text rows (the base class sets them when it builds its prompts)."""
        self._classify_text = rows

    @property
    def prompt_text(self) -> torch.Tensor:
        """CLIPSeg's conditional embeddings of the class prompts ``(K, P)`` (not normalised), made once."""
        if self._prompt_text is None:
            self._prompt_text = self.clipseg.text_embeddings([self.prompt.format(n) for n in self.class_names])
        self._prompt_text = self._prompt_text.to(self.device)
        return self._prompt_text

    def to(self, runtime: Runtime) -> "ClipSegLocalizer":
        """Run on ``runtime``'s device and precision."""
        self.runtime = runtime
        self.clipseg.to(runtime.device)
        return self

    def record(self) -> dict:
        """What made the maps (stored with caches and boxes)."""
        return {"localizer": self.map_kind, **self.clipseg.record(), "input_size": self.preprocessing.input_size,
                "templates": self.templates, "prompt": self.prompt, "map_stride": self.map_stride}

    def _probabilities(self, embedding: torch.Tensor) -> torch.Tensor:
        with torch.autocast(embedding.device.type, enabled=False):
            return (self.clipseg.logit_scale * embedding.float() @ self.classify_text.float().T).softmax(dim=-1)

    def _maps(self, reduced: list[torch.Tensor], images: torch.Tensor, classes: torch.Tensor,
              grid: tuple[int, int]) -> torch.Tensor:
        """Maps ``(N, h, w)`` of the pairs (image ``images[j]``, class ``classes[j]``)."""
        with self.runtime.autocast():
            logits = self.clipseg.decode(reduced, images, self.prompt_text[classes.to(self.device)], grid)
        maps = torch.sigmoid(logits.float())
        if self.map_stride > 1:
            h, w = maps.shape[-2:]
            size = (max(1, h // self.map_stride), max(1, w // self.map_stride))
            maps = F.adaptive_avg_pool2d(maps[:, None], size)[:, 0]
        return minmax_maps(maps)

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Zero-shot class probabilities (B, K) (see the class docstring)."""
        with self.runtime.autocast():
            _, embedding, _ = self.clipseg.visual(images.to(self.device), pooled=True)
        return self._probabilities(embedding)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, classes: torch.Tensor | None
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(zero-shot probabilities, maps of the predicted classes) when ``classes`` is None; (None, the maps of
        ``classes``) otherwise (the image tower then stops after the last block the decoder reads)."""
        with self.runtime.autocast():
            reduced, embedding, grid = self.clipseg.visual(images.to(self.device), pooled=classes is None)
        scores = None
        if classes is None:
            scores = self._probabilities(embedding)
            picked = scores.argmax(dim=1)
        else:
            picked = torch.as_tensor(classes, device=self.device).long().reshape(-1)
            if len(picked) != len(images):
                raise TedlocError(f"{len(images)} images but {len(picked)} classes")
        return scores, self._maps(reduced, torch.arange(len(picked), device=self.device), picked, grid)

    @torch.no_grad()
    def all_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The maps of every class ``(B, K, h, w)``: the image tower once per image, the decoder for the B x K
        (image, prompt) pairs in batches of ``pair_batch``."""
        with self.runtime.autocast():
            reduced, _, grid = self.clipseg.visual(images.to(self.device), pooled=False)
        b, k = len(images), len(self.class_names)
        which_image = torch.arange(b, device=self.device).repeat_interleave(k)
        which_class = torch.arange(k, device=self.device).repeat(b)
        parts = [self._maps(reduced, which_image[i:i + self.pair_batch], which_class[i:i + self.pair_batch], grid)
                 for i in range(0, b * k, self.pair_batch)]
        maps = torch.cat(parts)
        return maps.reshape(b, k, *maps.shape[-2:])


@dataclass(frozen=True)
class TrainingFree:
    """A training-free localizer by name.

    Attributes:
        name: ``tedloc evaluate --method NAME`` / ``tedloc cams --source NAME``.
        description: one line for ``--help``.
        create: ``create(tower, class_names, preprocessing, templates, runtime, **options) -> ClipLocalizer``,
            for a localizer on an open_clip tower (loaded by :func:`create_training_free`).
        load: for a localizer with a model of its own instead (CLIPSeg): ``load(class_names, clip, input_size,
            templates, runtime, **options) -> ClipLocalizer``, ``clip`` the :class:`ClipSpec` asked for.
        native: it takes a ``resolution`` option (:data:`RESOLUTIONS`): ``native`` unless an input size is given.
    """

    name: str
    description: str
    create: Callable[..., ClipLocalizer] | None = None
    load: Callable[..., ClipLocalizer] | None = None
    native: bool = False


TRAINING_FREE: Registry[TrainingFree] = Registry("training-free localizer")


def _register(entry: TrainingFree) -> None:
    TRAINING_FREE.register(entry.name)(entry)


def _create_clip_es(tower: ClipTower, names: list[str], pre: Preprocessing, templates: str, runtime: Runtime,
                    resolution: str = "native", max_side: int | None = 1024, **options) -> ClipESLocalizer:
    return ClipESLocalizer(tower, names, pre, templates, runtime=runtime, config=ClipESConfig(**options),
                           resolution=resolution, max_side=max_side)


_register(TrainingFree("clip-es", "CLIP-ES: softmax-Grad-CAM with background prompts + CAA (Lin et al. 2023); maps "
                                  "at each image's native size unless --input-size is given",
                       _create_clip_es, native=True))
for _name, _text in (("clip", "vanilla CLIP: patch-token / class-prompt cosine"),
                     ("sclip", "SCLIP: correlative self-attention in the last block (Wang et al. 2024)"),
                     ("naclip", "NACLIP: neighbourhood attention, no residual/FFN in the last block "
                                "(Hajimiri et al. 2025)")):
    _register(TrainingFree(_name, _text, lambda tower, names, pre, templates, runtime, _v=_name, **options:
                           DenseClipLocalizer(tower, names, pre, templates, runtime=runtime, variant=_v, **options)))


def _load_clipseg(class_names: list[str], clip: ClipSpec, input_size: int | None, templates: str, runtime: Runtime,
                  **options) -> ClipSegLocalizer:
    """CLIPSeg from ``clip``: ``clip.pretrained`` its weights (``openai``, the default: ``CIDAS/clipseg-rd64``; a
    Hub name, a local folder, or ``random``), ``clip.name`` the architecture of random weights."""
    model = load_clipseg(clip.name, clip.pretrained, runtime.device)
    return ClipSegLocalizer(model, class_names, model.preprocessing(input_size), templates, runtime=runtime,
                            **options)


_register(TrainingFree("clipseg", ("CLIPSeg (Lueddecke & Ecker 2022), TrCAM-V's: sigmoid of its decoder for the "
                                   "class-name prompt, min-max; --clip-pretrained: a Hugging Face checkpoint "
                                   "(default CIDAS/clipseg-rd64 = rd64-uni)"), load=_load_clipseg))


def create_training_free(name: str, class_names: list[str], clip: ClipSpec = ClipSpec(), input_size: int | None = None,
                         templates: str = "imagenet80", *, runtime: Runtime, **options) -> ClipLocalizer:
    """The training-free localizer ``name`` of :data:`TRAINING_FREE` for ``class_names``, on ``clip``'s weights at
    ``input_size`` (default: the model's; rounded up to a multiple of the patch), on ``runtime``. A localizer
    with a native mode (CLIP-ES) fills map caches at each image's native size unless ``input_size`` is given
    (then with square views of that size) or ``resolution`` says otherwise. For
    ``clipseg``, ``clip.pretrained`` names CLIPSeg's weights (``openai``, the default: ``CIDAS/clipseg-rd64``;
    a Hugging Face name or folder; ``random``) and ``clip.name`` the architecture of random weights
    (``ViT-B-16`` or a ``CLIPSegConfig`` JSON file)."""
    entry = TRAINING_FREE.get(name)
    if entry.load is not None:
        return entry.load(class_names, clip, input_size, templates, runtime, **options)
    if entry.native:
        options.setdefault("resolution", "native" if input_size is None else "square")
    tower = load_clip(clip, runtime.device)
    tower.check_class_names(class_names)
    return entry.create(tower, class_names, tower.preprocessing(input_size), templates, runtime, **options)
