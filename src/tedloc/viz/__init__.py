"""Pictures of results: heat-map overlays with boxes."""
from tedloc.viz.overlay import render_overlay

__all__ = ["render_overlay"]
