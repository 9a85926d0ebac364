"""Every public function, class and public method of the library says what it does."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tedloc"


def _undocumented(src: Path) -> list[str]:
    missing = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            members = [node] + [m for m in getattr(node, "body", []) if isinstance(node, ast.ClassDef)
                                and isinstance(m, ast.FunctionDef) and not m.name.startswith("_")]
            for m in members:
                if not ast.get_docstring(m):
                    missing.append(f"{path.relative_to(src)}:{m.lineno} {m.name}")
    return missing


def test_public_functions_have_docstrings():
    assert _undocumented(SRC) == []


def test_the_check_finds_a_missing_docstring(tmp_path):
    (tmp_path / "m.py").write_text('def f():\n    """Doc."""\n\n\nclass C:\n    def g(self):\n        pass\n')
    assert _undocumented(tmp_path) == ["m.py:5 C", "m.py:6 g"]
