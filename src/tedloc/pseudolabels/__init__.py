"""Pseudo-labels: where the maps, boxes and pixel seeds that train the methods come from.

- **Map sources** by name (:mod:`~tedloc.pseudolabels.sources`: ``cam``, ``gradcam``, ``clip-es``, ``clip``,
  ``sclip``, ``naclip``), each registered where it is defined; :func:`compute_map_cache` fills a
  :class:`MapCache` of a split with one of them.
- **The training-free CLIP localizers** (:mod:`~tedloc.pseudolabels.clip_localizers`) and CLIP-ES
  (:mod:`~tedloc.pseudolabels.clip_es`); the CAM formula (:mod:`~tedloc.pseudolabels.cam`) and Grad-CAM.
- **Samplers**: TeD-Loc's balanced FG/BG locations (:class:`PseudoLabelSampler`), DiPS's pixel seeds
  (:mod:`~tedloc.pseudolabels.pixel_seeds`), maps and boxes through a training view (:func:`maps_on_grid`).
- **Proposals**: DiPS's attention proposals scored by a classifier (:mod:`~tedloc.pseudolabels.proposal_scoring`)
  and their cache (:class:`ProposalCache`).
"""
from tedloc.pseudolabels.cam import cam_and_logits, class_activation_maps
from tedloc.pseudolabels.compute import compute_map_cache
from tedloc.pseudolabels.map_cache import MapCache
from tedloc.pseudolabels.proposal_cache import ProposalCache
from tedloc.pseudolabels.sampling import PseudoLabels, PseudoLabelSampler, SamplerConfig, candidate_pools, otsu_levels
from tedloc.pseudolabels.sources import MAP_SOURCES, MapSource, map_source, register_map_source
from tedloc.pseudolabels.views import maps_on_grid

__all__ = ["MAP_SOURCES", "MapSource", "map_source", "register_map_source", "compute_map_cache", "MapCache",
           "ProposalCache", "class_activation_maps", "cam_and_logits", "SamplerConfig", "PseudoLabels",
           "PseudoLabelSampler", "candidate_pools", "otsu_levels", "maps_on_grid"]
