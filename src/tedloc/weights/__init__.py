"""Pretrained weights: which files a model loads (:func:`weights_of`), whether they are in the local caches, fetching
them (:func:`ensure_weights`), and loading them without waiting on a network (:func:`loading_weights`).
See docs/WEIGHTS.md."""
from tedloc.weights.availability import (WeightsUnavailable, ensure_weights, hub_offline, loading_weights,
                                         network_timeout)
from tedloc.weights.resolve import ModelWeights, list_weights_libraries, register_weights_library, weights_of
from tedloc.weights.sources import HubFile, HubFolder, UrlFile, WeightSource, size_on_disk

__all__ = ["ModelWeights", "weights_of", "register_weights_library", "list_weights_libraries", "ensure_weights",
           "loading_weights", "hub_offline", "network_timeout", "WeightsUnavailable", "WeightSource", "HubFile",
           "HubFolder", "UrlFile", "size_on_disk"]
