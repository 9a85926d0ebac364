"""Training-free localizers from CLIP, by name: ``clip-es``, ``clip``, ``sclip``, ``naclip``.

Each is a :class:`~tedloc.models.localizer.LocalizationModel` (class by CLIP zero-shot over the
dataset's classes, map of that class) that also gives the map of a given class (the true one:
"GT-known"), so it is evaluated by ``tedloc evaluate --method NAME`` and fills map caches by
``tedloc cams --source NAME`` without any training run.
"""
from tedloc.zeroshot.localizers import (TRAINING_FREE, ClipESLocalizer, ClipLocalizer, DenseClipLocalizer,
                                        TrainingFree, classification_templates, create_training_free)

__all__ = ["TRAINING_FREE", "TrainingFree", "ClipLocalizer", "ClipESLocalizer", "DenseClipLocalizer",
           "create_training_free", "classification_templates"]
