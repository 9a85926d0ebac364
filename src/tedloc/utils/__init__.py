"""Small shared helpers: atomic file writes, progress bars."""
from tedloc.utils.io import atomic_write, atomic_write_text
from tedloc.utils.progress import progress

__all__ = ["atomic_write", "atomic_write_text", "progress"]
