"""WSOL methods behind one interface (:class:`Localizer`): the CAM baseline, TeD-Loc, ..."""
from tedloc.methods.base import Localizer, list_localizers, load_localizer, register_localizer

__all__ = ["Localizer", "load_localizer", "register_localizer", "list_localizers"]
