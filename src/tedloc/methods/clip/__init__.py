"""The training-free CLIP localizers as methods (``tedloc evaluate --method clip-es``): CLIP-ES and the dense
CLIP variants (``clip``, ``sclip``, ``naclip``). Nothing is trained: each is created from CLIP weights
(:mod:`tedloc.pseudolabels.clip_localizers`, where they also serve as pseudo-label map sources)."""
from __future__ import annotations

from tedloc.methods.registry import Method, register_method
from tedloc.models.clip_vit import ClipSpec
from tedloc.pseudolabels.clip_localizers import TRAINING_FREE, ClipLocalizer, create_training_free
from tedloc.utils.device import Runtime

__all__ = ["METHODS"]


def _creator(name: str):
    def create(class_names: list[str], *, runtime: Runtime, clip: str = ClipSpec.name,
               clip_pretrained: str = ClipSpec.pretrained, input_size: int | None = None,
               templates: str = "imagenet80", **options) -> ClipLocalizer:
        """The localizer for ``class_names`` on open_clip's ``clip`` with weights ``clip_pretrained``."""
        return create_training_free(name, class_names, ClipSpec(clip, clip_pretrained), input_size, templates,
                                    runtime=runtime, **options)

    return create


METHODS = [register_method(Method(name=entry.name, description=entry.description, kind="training-free",
                                  create=_creator(entry.name)))
           for entry in TRAINING_FREE.values()]
