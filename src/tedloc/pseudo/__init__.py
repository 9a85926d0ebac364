"""Pseudo-labels from localization maps: Otsu split, FG/BG candidate pools, balanced sampling."""
from tedloc.pseudo.sampling import PseudoLabels, PseudoLabelSampler, SamplerConfig, candidate_pools, otsu_levels
from tedloc.pseudo.views import maps_on_grid

__all__ = ["SamplerConfig", "PseudoLabels", "PseudoLabelSampler", "candidate_pools", "otsu_levels", "maps_on_grid"]
