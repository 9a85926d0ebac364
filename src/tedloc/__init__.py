"""tedloc: weakly supervised object localization (TeD-Loc, DiPS, CAM, CLIP-ES) and the WSOL evaluation protocol.

The public API is small; everything else lives in submodules:

- :class:`Localizer`: a trained run as a function from images to class, map and box
  (``Localizer.from_run(path)``; :mod:`tedloc.inference`).
- :class:`Runtime`: where networks run (device, precision, torchrun job), made once and passed down
  (``Runtime.create("auto")``).
- :func:`load_model`, :func:`evaluate_run`, :func:`get_method`: runs and methods (:mod:`tedloc.methods`).
- :class:`EvalProtocol`, :func:`eval_protocol`: how a number is scored (presets ``standard``, ``validation``).
- :mod:`tedloc.data`: datasets on disk and in memory, converters, the synthetic benchmark, transforms.
- :mod:`tedloc.eval`: the standard WSOL metrics (MaxBoxAcc, MaxBoxAccV2, PxAP, Top-k Loc).
- :mod:`tedloc.models`, :mod:`tedloc.engine`, :mod:`tedloc.methods`, :mod:`tedloc.pseudolabels`: models,
  training, methods, pseudo-labels.
"""
from tedloc.errors import DataError, TedlocError

__version__ = "0.1.0"

__all__ = ["DataError", "TedlocError", "Localizer", "Prediction", "Runtime", "EvalProtocol", "eval_protocol",
           "load_model", "evaluate_run", "get_method", "list_methods", "__version__"]

# torch-backed names load on first use, so `import tedloc` stays light: name -> its module
_LAZY = {"Localizer": "tedloc.inference", "Prediction": "tedloc.inference", "Runtime": "tedloc.utils.device",
         "EvalProtocol": "tedloc.eval", "eval_protocol": "tedloc.eval", "load_model": "tedloc.methods",
         "evaluate_run": "tedloc.methods", "get_method": "tedloc.methods", "list_methods": "tedloc.methods"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tedloc' has no attribute {name!r}")
