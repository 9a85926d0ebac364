"""tedloc: weakly supervised object localization (TeD-Loc, DiPS, CAM, CLIP-ES) and the WSOL evaluation protocol.

The public API is small; everything else lives in submodules:

- :class:`Localizer`: a trained run as a function from images to class, map and box
  (``Localizer.from_run(path)``; :mod:`tedloc.inference`).
- :mod:`tedloc.data`: datasets on disk and in memory, converters, the synthetic benchmark, transforms.
- :mod:`tedloc.eval`: the standard WSOL metrics (MaxBoxAcc, MaxBoxAccV2, PxAP, Top-k Loc).
- :mod:`tedloc.models`, :mod:`tedloc.engine`, :mod:`tedloc.methods`: models, training, methods.
"""
from tedloc.errors import DataError, TedlocError

__version__ = "0.1.0"

__all__ = ["DataError", "TedlocError", "Localizer", "Prediction", "__version__"]


def __getattr__(name: str):
    # torch-backed names load on first use, so `import tedloc` stays light
    if name in ("Localizer", "Prediction"):
        from tedloc import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'tedloc' has no attribute {name!r}")
