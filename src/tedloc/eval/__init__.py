"""The standard WSOL evaluation (Choe et al. 2020, wsolevaluation), exact and additive.

- :class:`EvalProtocol` and its presets (``standard``, ``validation``): the settings that decide a number.
- :class:`WSOLEvaluator`: ``accumulate(image_id, score_map, class_scores=None)``, ``compute()``.
- :func:`evaluate_localizer`: score a localizer (a run's, a training-free one) on a split.
- :func:`evaluate_map_folder`: score a folder of ``<image_id>.npy`` maps (``tedloc evaluate-maps``).
- Building blocks: :mod:`tedloc.eval.scoremaps`, :mod:`tedloc.eval.boxes`,
  :mod:`tedloc.eval.box_metrics`, :mod:`tedloc.eval.mask_metrics`.
"""
from tedloc.eval.conventions import EVAL_PROTOCOLS, MAP_CLASSES, THRESHOLD_MODES, EvalProtocol, eval_protocol
from tedloc.eval.evaluator import WSOLEvaluator, box_from_map, otsu_cut, topk_correct
from tedloc.eval.localizer_eval import evaluate_localizer, iter_score_maps
from tedloc.eval.map_folder import evaluate_map_folder
from tedloc.eval.scoremaps import ScoreMapError, normalize_scoremap, threshold_list

__all__ = ["EvalProtocol", "EVAL_PROTOCOLS", "eval_protocol", "MAP_CLASSES", "WSOLEvaluator", "THRESHOLD_MODES",
           "evaluate_map_folder", "evaluate_localizer", "iter_score_maps", "normalize_scoremap", "threshold_list",
           "ScoreMapError", "topk_correct", "box_from_map", "otsu_cut"]
