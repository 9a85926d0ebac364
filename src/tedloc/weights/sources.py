"""Where a pretrained weight file comes from and where it is kept: a file of a Hugging Face Hub repository, a whole
Hub model folder, or a plain URL (torchvision's and older timm/open_clip releases).

Each source answers ``present()`` (its path in the local cache, without any network), ``fetch()`` (downloads it into
the cache the loading library reads: ``HF_HOME`` for the Hub, ``TORCH_HOME`` for torchvision and timm URLs,
``~/.cache/clip`` for open_clip URLs) and ``location`` (that cache path, for messages). Downloads use the libraries'
own download functions, so a fetched file is found by the library that loads it.
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["WeightSource", "HubFile", "HubFolder", "UrlFile", "hub_cache", "torch_checkpoints", "size_on_disk"]

# files of a Hub model folder no PyTorch loader reads (other frameworks' and runtimes' exports)
_OTHER_FRAMEWORKS = ("onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*",
                     "rust_model*", "coreml/*", "*.mlmodel", "*.tflite")


class WeightSource(Protocol):
    """One thing a model loads from outside: its ``location`` in the local cache, ``present()``, ``fetch()``."""

    location: str
    host: str
    on_hub: bool

    def present(self) -> Path | None:
        """Its path in the local cache, None when absent (no network used)."""

    def fetch(self) -> Path:
        """Download it into the cache its library reads; its path there."""

    def describe(self) -> str:
        """What it is, for messages: the repository and files, or the URL."""


def hub_cache() -> Path:
    """The Hugging Face Hub cache folder (``HF_HUB_CACHE``, else ``HF_HOME/hub``), read now (tests change it)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def torch_checkpoints() -> Path:
    """torch.hub's checkpoint folder (``TORCH_HOME/hub/checkpoints``), where torchvision and timm keep URL files."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _repo_folder(repo: str) -> str:
    return f"models--{repo.replace('/', '--')}"


def _cached_snapshot(repo: str, revision: str | None) -> Path | None:
    """The snapshot folder of ``repo`` at ``revision`` (a branch, default main, or a commit id) in the Hub cache,
    None when absent. Read from the cache's layout (``refs/<branch>`` holds the commit of ``snapshots/<commit>``),
    not with ``snapshot_download(local_files_only=True)``: that calls a snapshot incomplete when it lacks any file of
    the repository's listing, and a fetch leaves out on purpose other frameworks' files and pickles beside
    safetensors."""
    folder = hub_cache() / _repo_folder(repo)
    revision = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        commit = revision
    else:
        ref = folder / "refs" / revision
        if not ref.is_file():
            return None
        commit = ref.read_text().strip()
    snapshot = folder / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def size_on_disk(path: Path | None) -> int | None:
    """Bytes of a file, or of every file under a folder (links followed), None when absent."""
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _OnHub:
    """What a source of a Hub repository ``repo`` answers alike: its cache folder and the Hub's URL."""

    repo: str
    on_hub = True

    @property
    def location(self) -> str:
        """Where it is kept (the cache folder or file)."""
        return str(hub_cache() / _repo_folder(self.repo))

    @property
    def host(self) -> str:
        """The URL of the server it comes from."""
        return _hub_endpoint()


@dataclass(frozen=True)
class HubFile(_OnHub):
    """One weight file of a Hub repository; ``filenames`` are alternatives in the loader's order of preference (timm:
    ``model.safetensors`` then ``pytorch_model.bin``): any one present is enough, ``fetch`` takes the first the
    repository has."""

    repo: str
    filenames: tuple[str, ...]
    revision: str | None = None

    def describe(self) -> str:
        """What it is, for messages: the repository and files, or the URL."""
        return f"{self.repo} ({' or '.join(self.filenames)})"

    def present(self) -> Path | None:
        """Its path in the local cache, None when absent (no network used)."""
        from huggingface_hub import try_to_load_from_cache

        for name in self.filenames:
            found = try_to_load_from_cache(self.repo, name, revision=self.revision, cache_dir=hub_cache())
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        return None

    def fetch(self) -> Path:
        """Download it into the cache its library reads; its path there."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        missing = None
        for name in self.filenames:
            try:
                return Path(hf_hub_download(self.repo, name, revision=self.revision, cache_dir=hub_cache()))
            except LocalEntryNotFoundError:  # no network (a subclass of the error below): nothing else will do
                raise
            except EntryNotFoundError as e:  # the repository has no such file: try the next alternative
                missing = e
        raise FileNotFoundError(f"{self.repo} has none of {', '.join(self.filenames)}") from missing


@dataclass(frozen=True)
class HubFolder(_OnHub):
    """A whole model folder of a Hub repository (sentence-transformers, transformers): every file but other
    frameworks' exports. Present when its snapshot holds each of ``required`` (a tuple of alternatives each)."""

    repo: str
    required: tuple[tuple[str, ...], ...] = (("config.json",), ("model.safetensors", "pytorch_model.bin"))
    revision: str | None = None
    ignore: tuple[str, ...] = field(default=_OTHER_FRAMEWORKS)

    def describe(self) -> str:
        """What it is, for messages: the repository and files, or the URL."""
        return f"{self.repo} (model folder)"

    def present(self) -> Path | None:
        """Its path in the local cache, None when absent (no network used)."""
        folder = _cached_snapshot(self.repo, self.revision)
        if folder is None:
            return None
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        for alternatives in self.required:
            if not any(fnmatch.filter(files, pattern) for pattern in alternatives):
                return None
        return folder

    def files_to_fetch(self, files: list[str]) -> list[str]:
        """Of the repository's ``files``, those a PyTorch loader reads: no other framework's export, and no pickled
        weights where safetensors ones exist (transformers and sentence-transformers read those first)."""
        keep = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in self.ignore)]
        if any(f.endswith(".safetensors") for f in keep):
            keep = [f for f in keep if not f.endswith(("pytorch_model.bin", ".pth", ".ckpt"))]
        return keep

    def fetch(self) -> Path:
        """Download it into the cache its library reads; its path there."""
        from huggingface_hub import HfApi, snapshot_download

        info = HfApi().model_info(self.repo, revision=self.revision)
        files = self.files_to_fetch([s.rfilename for s in info.siblings or []])
        # the branch, not info.sha: given a commit id, snapshot_download writes no refs/<branch>, and neither
        # present() nor the libraries' offline loaders (which ask for the branch) would find the snapshot
        folder = Path(snapshot_download(self.repo, revision=self.revision, cache_dir=hub_cache(),
                                        allow_patterns=files))
        if self.present() is None:
            wanted = "; ".join(" or ".join(a) for a in self.required)
            raise FileNotFoundError(f"{self.repo}: the downloaded folder {folder} lacks one of: {wanted}")
        return folder


@dataclass(frozen=True)
class UrlFile:
    """A file at a URL, kept at ``path`` (torch.hub's checkpoints folder for torchvision and timm)."""

    url: str
    path: Path
    on_hub = False

    @property
    def location(self) -> str:
        """Where it is kept (the cache folder or file)."""
        return str(self.path)

    @property
    def host(self) -> str:
        """The URL of the server it comes from."""
        return self.url

    def describe(self) -> str:
        """What it is, for messages: the repository and files, or the URL."""
        return self.url

    def present(self) -> Path | None:
        """Its path in the local cache, None when absent (no network used)."""
        return self.path if self.path.is_file() else None

    def fetch(self) -> Path:
        """Download it into the cache its library reads; its path there."""
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(self.url, str(self.path), progress=False)  # a temporary file, then a rename
        return self.path
