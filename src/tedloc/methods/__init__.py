"""WSOL methods by name: each a package here (``cam``, ``tedloc``, ``dips``, the training-free ``clip``) registered
as a :class:`Method`.

``load_model(run)`` gives the localizer of any run folder, ``evaluate_run(run, data)`` its metrics; ``get_method(name)``
what the command line, the sweep and the recipes need to train one (see :mod:`tedloc.methods.registry`).
"""
from tedloc.methods.base import NetworkLocalizer, TrainConfig, option
from tedloc.methods.registry import (METHOD_KINDS, Method, get_method, is_finished_run, list_methods, load_model,
                                     method_for_kind, register_method)
from tedloc.methods.run_evaluation import evaluate_run
from tedloc.methods.run_maps import compute_run_map_cache
from tedloc.models.localizer import ClassConditionalMaps, LocalizationModel, MultiMapModel

__all__ = ["LocalizationModel", "MultiMapModel", "ClassConditionalMaps", "NetworkLocalizer", "TrainConfig", "option",
           "Method", "METHOD_KINDS", "register_method", "get_method", "list_methods", "method_for_kind", "load_model",
           "evaluate_run", "compute_run_map_cache", "is_finished_run"]
