"""Named recipes: the demo on the synthetic benchmark and the Tiny ImageNet presets of ``tedloc bench``.

Times are for the 2-core CPU machine of BENCHMARKS.md; the presets are sized to their budgets
(demo: a few minutes; Tiny ImageNet ``quick``: about 15 minutes; ``full``: under an hour).
"""
from __future__ import annotations

from typing import Callable

from tedloc.methods.cam import PretrainConfig
from tedloc.methods.tedloc import TeDLocTrainConfig
from tedloc.recipes.pipeline import VARIANTS, Recipe
from tedloc.utils.registry import Registry

__all__ = ["PRESETS", "get_preset"]

PRESETS: Registry[Callable[[], Recipe]] = Registry("recipe preset")
ALL_VARIANTS = ("tedloc", "tedloc_no_orth", "tedloc_kd", "tedloc_kd_pcl")
assert all(v in VARIANTS for v in ALL_VARIANTS)


@PRESETS.register("demo")
def _demo() -> Recipe:
    return Recipe(
        pretrain=PretrainConfig(epochs=8, lr_step=6, batch_size=64, workers=1),
        tedloc=TeDLocTrainConfig(decoder_channels=(32,), epochs=6, lr_step=4, batch_size=64, lr=0.01,
                                 cache_views=2, workers=0),
        variants=("tedloc",), overlays=6, eval_batch_size=100)


@PRESETS.register("tinyimagenet-quick")
def _tin_quick() -> Recipe:
    return Recipe(
        pretrain=PretrainConfig(epochs=2, lr_step=1, workers=1),
        tedloc=TeDLocTrainConfig(decoder_channels=(32,), epochs=1, lr_step=1, batch_size=128, cache_views=1,
                                 workers=0),
        variants=ALL_VARIANTS, overlays=4)


@PRESETS.register("tinyimagenet-full")
def _tin_full() -> Recipe:
    return Recipe(
        pretrain=PretrainConfig(epochs=8, lr_step=3, workers=1),
        tedloc=TeDLocTrainConfig(decoder_channels=(32,), epochs=6, lr_step=4, batch_size=128, cache_views=2,
                                 workers=0),
        variants=ALL_VARIANTS, overlays=6)


def get_preset(name: str) -> Recipe:
    """A new :class:`Recipe` of the preset ``name`` (TedlocError listing the presets if unknown)."""
    return PRESETS.get(name)()
