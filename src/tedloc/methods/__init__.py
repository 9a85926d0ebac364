"""WSOL methods by name: each a package here (``cam``, ``tedloc``, ...) registered as a :class:`Method`.

``load_model(run)`` gives the localizer of any run folder; ``get_method(name)`` what the command line,
the sweep and the recipes need to train one (see :mod:`tedloc.methods.registry`).
"""
from tedloc.methods.base import NetworkLocalizer
from tedloc.methods.registry import Method, get_method, list_methods, load_model, method_for_kind, register_method
from tedloc.models.localizer import ClassConditionalMaps, LocalizationModel, MultiMapModel

__all__ = ["LocalizationModel", "MultiMapModel", "ClassConditionalMaps", "NetworkLocalizer", "Method",
           "register_method", "get_method", "list_methods", "method_for_kind", "load_model"]
