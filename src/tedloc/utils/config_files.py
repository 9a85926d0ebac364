"""YAML config files: option values by name (``--config FILE.yaml`` of the training commands, the recipes of
``tedloc bench``), read from a path or from the configs shipped in ``tedloc/configs/``."""
from __future__ import annotations

from pathlib import Path

from tedloc.errors import TedlocError

__all__ = ["CONFIG_DIR", "config_path", "read_config_file", "shipped_configs"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # the shipped configs (``--config NAME``)


def config_path(name: str) -> Path:
    """``name`` as a file, or a shipped config (``cub_tedloc`` -> ``tedloc/configs/cub_tedloc.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if shipped.is_file():
        return shipped
    known = ", ".join(shipped_configs())
    raise TedlocError(f"config {name}: no such file, nor a shipped config ({known})")


def read_config_file(name: str) -> dict:
    """The options of a YAML config file (a mapping of option names, ``-`` or ``_``, to values)."""
    import yaml

    path = config_path(name)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise TedlocError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise TedlocError(f"{path}: a config file is a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def shipped_configs() -> list[str]:
    """The names of the shipped configs (``cub_tedloc``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
