"""Localization maps used as pseudo-labels: CAM of a classifier, and the on-disk map cache."""
from tedloc.cams.cache import MapCache
from tedloc.cams.cam import cam_and_logits, class_activation_maps

__all__ = ["MapCache", "class_activation_maps", "cam_and_logits"]
