"""Pictures of results: heat-map overlays with boxes."""
from tedloc.viz.overlay import render_overlay, wrap_caption

__all__ = ["render_overlay", "wrap_caption"]
