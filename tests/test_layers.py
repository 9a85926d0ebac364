"""The package layout is the architecture: a package imports only packages below it (docs/ARCHITECTURE.md)."""
from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tedloc"
ORDER = ["utils", "errors", "weights", "data", "models", "text", "engine", "eval", "pseudolabels", "viz", "methods",
         "inference", "protocol", "report", "recipes", "cli"]
_IMPORT = re.compile(r"from tedloc\.(\w+)|import tedloc\.(\w+)")


def _violations(src: Path) -> set[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(ORDER)}
    rank["errors"] = rank["utils"]
    found = set()
    for path in src.rglob("*.py"):
        rel = path.relative_to(src)
        package = rel.parts[0].removesuffix(".py")
        if package not in rank:
            continue
        for dep in _IMPORT.findall(path.read_text()):
            dep = dep[0] or dep[1]
            if dep in rank and rank[dep] > rank[package]:
                found.add((rel.as_posix(), dep))
    return found


def test_no_package_imports_a_higher_one():
    assert _violations(SRC) == set()


def test_every_package_has_a_layer():
    packages = {p.name.removesuffix(".py") for p in SRC.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert packages - set(ORDER) <= {"__main__"}, packages - set(ORDER)


def test_the_check_catches_an_upward_import(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "x.py").write_text("from tedloc.methods import load_model\n")
    assert _violations(tmp_path) == {("eval/x.py", "methods")}
