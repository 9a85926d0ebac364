"""tedloc: weakly supervised object localization (TeD-Loc, DiPS, CAM) and the WSOL evaluation protocol.

The public API is small; everything else lives in submodules:

- :mod:`tedloc.data`: datasets on disk and in memory, converters, the synthetic benchmark, transforms.
"""
from tedloc.errors import DataError, TedlocError

__version__ = "0.1.0"

__all__ = ["DataError", "TedlocError", "__version__"]
