"""Score a folder of saved score maps: ``<maps>/<image_id>.npy`` (+ optional ``<image_id>.scores.npy``)."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tedloc.data.dataset import Split
from tedloc.eval.conventions import EvalProtocol, eval_protocol
from tedloc.eval.evaluator import WSOLEvaluator
from tedloc.eval.scoremaps import ScoreMapError, check_class_scores
from tedloc.utils.io import NpyBuffer, read_npy
from tedloc.utils.progress import progress

__all__ = ["evaluate_map_folder", "map_path"]


def map_path(maps: Path, image_id: str, suffix: str = ".npy") -> Path:
    """Where the map of ``image_id`` lives: the full id, extension included, plus ``.npy``."""
    return maps / f"{image_id}{suffix}"


def _load(path: str, image_id: str, what: str, buffer: NpyBuffer | None = None) -> np.ndarray:
    try:
        return read_npy(path, buffer)
    except FileNotFoundError:
        raise ScoreMapError(f"missing {what} for {image_id!r}: {path}") from None
    except ValueError as e:  # read_npy's message starts with the path
        raise ScoreMapError(f"cannot read {what} {e}") from None
    except OSError as e:
        raise ScoreMapError(f"cannot read {what} {path}: {e.strerror or e}") from None


def _load_scores(path: str, image_id: str, num_classes: int | None) -> np.ndarray:
    return check_class_scores(_load(path, image_id, "class scores"), num_classes, f" in {path}")


_WORKER: dict = {}


def _init_worker(split: Split, maps: Path, with_scores: bool, kwargs: dict) -> None:
    _WORKER.update(split=split, maps=maps, with_scores=with_scores, kwargs=kwargs)


def _evaluate_shard(ids: list[str]) -> dict:
    split, maps, with_scores = _WORKER["split"], _WORKER["maps"], _WORKER["with_scores"]
    evaluator = WSOLEvaluator(split, **_WORKER["kwargs"])
    root = os.path.join(maps, "")  # plain strings: Path objects cost more than a small map's evaluation here
    buffer = NpyBuffer()  # maps are read into it, reused while nothing holds the previous map
    for image_id in ids:
        path = f"{root}{image_id}.scores.npy"
        scores = _load_scores(path, image_id, evaluator.num_classes) if with_scores else None
        # no name holds the map: once accumulate() returns (it keeps nothing of it) its bytes are free
        evaluator.accumulate(image_id, _load(f"{root}{image_id}.npy", image_id, "score map", buffer), scores)
    return evaluator.state()


def _npy_files(maps: Path) -> set[str]:
    """The relative POSIX paths of every ``.npy`` file under ``maps`` (one walk, no stat per image). Linked
    folders are followed; a link back to a folder above it (a loop, endless to walk) is a :class:`ScoreMapError`
    naming it."""
    root = os.fspath(maps)
    found: set[str] = set()
    above = {root: _with(root, {})}  # folder -> (device, inode) -> path, of it and the folders above it
    for folder, dirs, files in os.walk(root, followlinks=True):
        chain = above.pop(folder, {})
        dirs.sort()  # the same loop named first on every file system
        for name in dirs:
            path = os.path.join(folder, name)
            identity = _identity(path)
            if identity in chain:
                raise ScoreMapError(f"{path}: a symlink loop (it leads back to {chain[identity]}); remove it or "
                                    f"give a folder without one")
            above[path] = _with(path, chain, identity)
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found.update(prefix + name for name in files if name.endswith(".npy"))
    return found


def _identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the folder ``path`` leads to; None where it cannot be read (the walk skips it)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _with(path: str, chain: dict, identity: tuple[int, int] | None = None) -> dict:
    """``chain`` and the folder ``path``."""
    identity = identity or _identity(path)
    return chain if identity is None else {**chain, identity: path}


def evaluate_map_folder(split: Split, maps: str | os.PathLike, protocol: EvalProtocol | str = "standard",
                        workers: int = 1, num_classes: int | None = None, **changes) -> dict:
    """Evaluate every image of ``split`` from its ``.npy`` map in ``maps``.

    Rules: every image of the split needs a map (a missing one is an error naming it); class scores are used
    when ``<id>.scores.npy`` exists for every image, and a partial set is an error; each is a vector of one
    score per class (pass ``num_classes`` to have every length checked); ``protocol`` (a record or a preset
    name, with ``changes``) sets the thresholds; a ``.npy`` file in the folder for an image that is not in
    the split is an error (it usually means the maps belong to another split). With ``workers > 1`` shards
    of the split are evaluated in parallel processes and their sums added: the result is identical.
    """
    maps = Path(maps)
    if not maps.is_dir():
        raise ScoreMapError(f"score map folder not found: {maps}")
    present = _npy_files(maps)
    for image_id in split.image_ids:
        if f"{image_id}.npy" not in present:
            raise ScoreMapError(f"missing score map for {image_id!r}: {map_path(maps, image_id)}")
    score_files = [f"{i}.scores.npy" in present for i in split.image_ids]
    with_scores = all(score_files)
    if any(score_files) and not with_scores:
        first = split.image_ids[score_files.index(False)]
        raise ScoreMapError(f"class scores exist for {sum(score_files)} of {len(split)} images "
                            f"(missing e.g. {map_path(maps, first, '.scores.npy')}); give all or none")
    known = {f"{i}.npy" for i in split.image_ids} | {f"{i}.scores.npy" for i in split.image_ids}
    unknown = sorted(present - known)
    if unknown:
        raise ScoreMapError(f"{maps / unknown[0]}: a map for an image that is not in split {split.name!r}"
                            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    ids = list(split.image_ids)
    evaluator_kwargs = {"protocol": eval_protocol(protocol, **changes), "num_classes": num_classes}
    evaluator = WSOLEvaluator(split, **evaluator_kwargs)
    # chunks small enough that the processes finish together, large enough to cost nothing to send
    size = min(256, max(16, len(ids) // (max(workers, 1) * 32)))
    chunks = [ids[k:k + size] for k in range(0, len(ids), size)]
    if workers <= 1 or len(chunks) < 2:
        _init_worker(split, maps, with_scores, evaluator_kwargs)
        for chunk in progress(chunks, desc="evaluating maps", unit="chunk"):
            evaluator.merge(_evaluate_shard(chunk))
        return evaluator.compute()
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                             initargs=(split, maps, with_scores, evaluator_kwargs)) as pool:
        for state in progress(pool.map(_evaluate_shard, chunks), desc="evaluating maps", total=len(chunks),
                              unit="chunk"):
            evaluator.merge(state)
    return evaluator.compute()
