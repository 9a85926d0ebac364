"""The standard WSOL evaluation (Choe et al. 2020, wsolevaluation), exact and additive.

- :class:`WSOLEvaluator`: ``accumulate(image_id, score_map, class_scores=None)``, ``compute()``.
- :func:`evaluate_map_folder`: score a folder of ``<image_id>.npy`` maps (``tedloc evaluate-maps``).
- Building blocks: :mod:`tedloc.eval.scoremaps`, :mod:`tedloc.eval.boxes`,
  :mod:`tedloc.eval.box_metrics`, :mod:`tedloc.eval.mask_metrics`.
"""
from tedloc.eval.evaluator import THRESHOLD_MODES, WSOLEvaluator, box_from_map, otsu_cut, topk_correct
from tedloc.eval.map_folder import evaluate_map_folder
from tedloc.eval.scoremaps import ScoreMapError, normalize_scoremap, threshold_list

__all__ = ["WSOLEvaluator", "THRESHOLD_MODES", "evaluate_map_folder", "normalize_scoremap", "threshold_list",
           "ScoreMapError", "topk_correct", "box_from_map", "otsu_cut"]
