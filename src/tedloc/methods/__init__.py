"""WSOL methods behind one interface (:class:`LocalizationModel`): the CAM baseline, TeD-Loc, ..."""
from tedloc.methods.base import LocalizationModel, list_models, load_model, register_model

__all__ = ["LocalizationModel", "load_model", "register_model", "list_models"]
