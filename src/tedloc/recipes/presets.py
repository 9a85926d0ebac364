"""Named recipes: the demo on the synthetic benchmark, the Tiny ImageNet presets of ``tedloc bench`` and the
paper-scale recipes of ``tedloc bench cub|ilsvrc|openimages``, read from the shipped configs
(``tedloc/configs/<dataset>_bench.yaml`` naming the CAM and TeD-Loc configs the training commands take too).

Times are for the 2-core CPU machine of BENCHMARKS.md: the demo about 10 minutes (CAM, 3 rounds of TeD-Loc, DiPS); Tiny
ImageNet ``quick`` about 15 minutes (CAM and TeD-Loc); ``full`` about 4 hours (97 minutes for CAM and TeD-Loc,
the rest DiPS's ViT, proposals and two DiPS runs).
"""
from __future__ import annotations

import types
import typing
from typing import Callable

from tedloc.methods import get_method
from tedloc.recipes.pipeline import DIPS_VARIANTS, VARIANTS, Recipe
from tedloc.utils.registry import Registry

__all__ = ["PRESETS", "get_preset", "paper_recipe", "PAPER_DATASETS", "method_config", "coerce_value"]

PAPER_DATASETS = ("cub", "ilsvrc", "openimages")

PRESETS: Registry[Callable[[], Recipe]] = Registry("recipe preset")
ALL_VARIANTS = ("tedloc", "tedloc_no_orth", "tedloc_kd", "tedloc_kd_pcl")
# on Tiny ImageNet, the CRF ablation (a DiPS epoch takes about 25 min on the 2-core CPU); K and the map set are
# ablated on the synthetic benchmark (scripts/dips_ablations.py)
DIPS_ABLATIONS = ("dips", "dips_no_crf")
assert all(v in VARIANTS for v in ALL_VARIANTS) and all(v in DIPS_VARIANTS for v in DIPS_ABLATIONS)
# The offline DiPS recipes: 64x64 images whose content is an ImageNet image's (Tiny ImageNet is ImageNet downscaled),
# the CRF loss on a 32x32 grid (crf_scale 0.5; exact, every pair). DiPS's weight 2e-9 is for 224x224 (50,176 pixels);
# the loss sums over pixel pairs, so it is rescaled by the pair count, (50,176 / 1,024)^2 = 2,401, to weigh as
# much against the seed loss; sigma_xy 100 pixels of a 224 image is 100 * 64 / 224 of a 64 image.
# DiPS's ViT trained here (the stand-in for DINO): AdamW, as ViTs from scratch need
OFFLINE_VIT = dict(arch="tedloc_vit_tiny", optimizer="adamw", lr=1e-3, weight_decay=0.05)
OFFLINE_DIPS = dict(lambda_crf=2e-9 * (224 * 224 / (32 * 32)) ** 2, sigma_xy=100 * 64 / 224, crf_scale=0.5,
                    workers=0)


# what the offline presets' numbers can and cannot show (the first paragraph of their reports)
_STAND_INS = ("its image encoders are stand-ins trained here {how} (a tiny CNN; a tiny ViT for DiPS, in place of "
              "DINO), and a small offline sentence encoder embeds the class names in place of CLIP's text tower: not "
              "the papers' pretrained weights, so its numbers are not the papers'.")
DEMO_SCOPE = ("What this demo shows: every step of the pipeline run end to end (classifier, pseudo-labels, text "
              "anchors, TeD-Loc, DiPS, the evaluation, this report) and how the methods compare with each other and "
              "with the no-look baselines on the synthetic benchmark (its objects as large and as centred as CUB's "
              "test boxes). TeD-Loc here adds two things of tedloc's to the paper's method: a boundary prior (the "
              "map's outer eighth is background) and rounds of self-training on its own maps; DiPS adds the boundary "
              "prior (its background seeds from the image's outer eighth). What it cannot show: "
              "the papers' results; "
              + _STAND_INS.format(how="in minutes on the synthetic benchmark"))
TINYIMAGENET_SCOPE = ("What this recipe shows: the pipeline on Tiny ImageNet (64x64 images of 200 ImageNet classes) "
                      "and how the methods compare there. What it cannot show: the papers' results; "
                      + _STAND_INS.format(how="from scratch on Tiny ImageNet"))


@PRESETS.register("demo")
def _demo() -> Recipe:
    # TeD-Loc's pseudo-labels: the CNN's Grad-CAM, FG drawn from all of its Otsu region; the boundary prior (the outer
    # eighth of the map on each side is background, the only BG source) and 3 rounds of self-training (each round
    # learns from the previous round's own maps). Both are tedloc's additions to the paper: on this data the CAM lights
    # the class emblem alone, never the body. Chosen on the val split's MaxBoxAcc (GT val boxes): the settings and the
    # rounds in BENCHMARKS.md ("The demo on objects placed as CUB's"); 3 rounds: the fewest within 0.5 point of the
    # best round (4). DiPS: background seeds from the same outer ring (background "border"), the whole ring's pool.
    return Recipe(
        pretrain=get_method("cam").config(epochs=8, lr_step=6, batch_size=64, workers=1),
        tedloc=get_method("tedloc").config(decoder_channels=(32,), epochs=6, lr_step=4, batch_size=64, lr=0.01,
                                           cache_views=2, workers=0, fg_pool=1.0, bg_pool=1.0, bg_border=0.125),
        pseudo_labels="gradcam", tedloc_rounds=3, variants=("tedloc",), overlays=6, eval_batch_size=100,
        vit=get_method("cam").config(epochs=5, lr_step=4, batch_size=64, workers=1, **OFFLINE_VIT),
        dips=get_method("dips").config(classifier_epochs=2, epochs=2, lr_step=2, batch_size=32, background="border",
                                       bg_pool=1.0, **OFFLINE_DIPS),
        scope=DEMO_SCOPE)


@PRESETS.register("tinyimagenet-quick")
def _tin_quick() -> Recipe:
    return Recipe(
        pretrain=get_method("cam").config(epochs=2, lr_step=1, workers=1),
        tedloc=get_method("tedloc").config(decoder_channels=(32,), epochs=1, lr_step=1, batch_size=128, cache_views=1,
                                           workers=0),
        variants=ALL_VARIANTS, overlays=4,  # no DiPS: its ViT and one epoch take about an hour here
        scope=TINYIMAGENET_SCOPE.replace("; a tiny ViT for DiPS, in place of DINO", ""))


@PRESETS.register("tinyimagenet-full")
def _tin_full() -> Recipe:
    return Recipe(
        pretrain=get_method("cam").config(epochs=8, lr_step=3, workers=1),
        tedloc=get_method("tedloc").config(decoder_channels=(32,), epochs=6, lr_step=4, batch_size=128, cache_views=2,
                                           workers=0),
        variants=ALL_VARIANTS, overlays=6,
        vit=get_method("cam").config(epochs=2, lr_step=2, workers=1, **OFFLINE_VIT),
        dips=get_method("dips").config(classifier_epochs=1, epochs=1, lr_step=1, batch_size=64, **OFFLINE_DIPS),
        dips_variants=DIPS_ABLATIONS, scope=TINYIMAGENET_SCOPE)


def get_preset(name: str) -> Recipe:
    """A new :class:`Recipe` of the preset ``name`` (TedlocError listing the presets if unknown), named after it
    (the title of its reports)."""
    recipe = PRESETS.get(name)()
    recipe.name = recipe.name or name
    return recipe


def method_config(cls: type, name: str, overrides: dict, section: str):
    """The config dataclass ``cls`` from the shipped (or given) config file ``name``, then ``overrides``; an
    unknown key is a TedlocError naming the file."""
    import dataclasses

    from tedloc.errors import TedlocError
    from tedloc.utils.config_files import config_path, read_config_file

    values = {k: v for k, v in read_config_file(name).items() if k != "method"}
    fields = {f.name for f in dataclasses.fields(cls)}
    where = {**{k: f"{config_path(name)}: {k}" for k in values}, **{k: f"--set {section}.{k}" for k in overrides}}
    values.update(overrides)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise TedlocError(f"unknown option(s) of {cls.__name__}: {', '.join(where[k] for k in unknown)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce_value(hints[k], v, where[k]) for k, v in values.items()})


def coerce_value(hint, value, where: str):
    """A YAML value as the field's annotation wants it (YAML reads ``1e-3`` as text; lists become tuples)."""
    from tedloc.errors import TedlocError

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise TedlocError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if not (len(args) == 2 and args[1] is Ellipsis) and len(args) != len(value):
            raise TedlocError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(coerce_value(args[0], v, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TedlocError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (int, float, str):
        if isinstance(value, (bool, list, dict)) or value is None:
            raise TedlocError(f"{where}: expected {'an' if hint is int else 'a'} {hint.__name__}, got {value!r}")
        try:
            converted = hint(value)
        except (TypeError, ValueError):
            raise TedlocError(f"{where}: {value!r} is not a valid {hint.__name__}") from None
        if hint is int and isinstance(value, float) and value != converted:
            raise TedlocError(f"{where}: {value!r} is not a whole number")
        return converted
    return value


def paper_recipe(dataset: str, overrides: dict | None = None) -> tuple[str, Recipe]:
    """``(wsolevaluation dataset name, Recipe)`` of ``tedloc bench <dataset>`` from ``<dataset>_bench.yaml``.
    ``overrides``: ``cam.<field>``, ``tedloc.<field>`` or a recipe key (``clip``, ``text_encoder``, ...) ->
    value (small sizes and random weights in the tests; another encoder for users)."""
    from tedloc.errors import TedlocError
    from tedloc.utils.config_files import read_config_file

    if dataset not in PAPER_DATASETS:
        raise TedlocError(f"no paper recipe for {dataset!r}; choose from {', '.join(PAPER_DATASETS)}")
    bench = read_config_file(f"{dataset}_bench")
    overrides = dict(overrides or {})
    part = {"cam": {}, "tedloc": {}}
    for key in [k for k in overrides if "." in k]:
        section, _, field_name = key.partition(".")
        if section not in part:
            raise TedlocError(f"override {key!r}: the sections are cam. and tedloc.")
        part[section][field_name] = overrides.pop(key)
    recipe_keys = ("text_encoder", "pseudo_labels", "clip", "clip_pretrained", "map_sizes", "eval_batch_size",
                   "overlays", "eval_interval", "tedloc_rounds")
    hints = typing.get_type_hints(Recipe)
    settings = {"overlays": 6, **{k: coerce_value(hints[k], v,
                                                  f"--set {k}" if k in overrides else f"{dataset}_bench: {k}")
                                  for k, v in {**bench, **overrides}.items() if k in recipe_keys}}
    unknown = sorted(set(overrides) - set(recipe_keys))
    if unknown:
        raise TedlocError(f"unknown recipe option(s) {', '.join(unknown)}")
    recipe = Recipe(pretrain=method_config(get_method("cam").config, bench["cam"], part["cam"], "cam"),
                    tedloc=method_config(get_method("tedloc").config, bench["tedloc"], part["tedloc"], "tedloc"),
                    variants=("tedloc",), encoder_from_cam=False, name=dataset, **settings)
    return bench["dataset"], recipe
