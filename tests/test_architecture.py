"""The architecture as counts that cannot drift (docs/ARCHITECTURE.md): no import circle, one place that joins a
torchrun job, no runtime made behind the caller's back, the evaluation's defaults written once, and a
command line that uses only the library's public packages."""
from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tedloc"


def _modules(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for path in src.rglob("*.py"):
        parts = path.relative_to(src.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _runtime_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The tedloc modules ``name`` imports when it runs (imports under ``if TYPE_CHECKING:`` are for type
    checkers only), at any depth (imports inside functions count: a circle through them is still a circle)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in known and m != name}


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """tedloc module -> the tedloc modules it imports."""
    modules = _modules(src)
    return {name: _runtime_imports(name, path, set(modules)) for name, path in modules.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return circles


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text() for p in SRC.rglob("*.py")}


def test_no_import_circle():
    assert import_circles(import_graph()) == []


def test_the_circle_check_finds_a_circle(tmp_path):
    (tmp_path / "tedloc" / "a").mkdir(parents=True)
    (tmp_path / "tedloc" / "a" / "__init__.py").write_text("")
    (tmp_path / "tedloc" / "a" / "x.py").write_text("def f():\n    from tedloc.a.y import g\n")
    (tmp_path / "tedloc" / "a" / "y.py").write_text("from tedloc.a import x\n")
    (tmp_path / "tedloc" / "a" / "z.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                   "    from tedloc.a import y\n")
    assert import_circles(import_graph(tmp_path / "tedloc")) == [["tedloc.a.x", "tedloc.a.y"]]


def test_one_place_joins_a_torchrun_job():
    calls = {path for path, text in _sources().items() if re.search(r"Distributed\.from_env\(", text)
             and not text.count("def from_env")}
    assert calls == {"utils/device.py"}


def test_no_runtime_is_made_behind_the_callers_back():
    for path, text in _sources().items():
        assert "= Runtime()" not in text and "or Runtime()" not in text, path
        assert not re.search(r"runtime\s*(:\s*[\w |.]+)?=\s*None\b", text) or path == "inference/__init__.py", path


def test_the_evaluation_defaults_are_written_once():
    """The threshold interval and the other conventions have their values in the presets only."""
    literal = re.compile(r"interval\s*(:\s*float\s*)?=\s*0\.0*1\b|default=0\.0*1\b|interval=0\.0*1\b")
    found = {path for path, text in _sources().items() if literal.search(text) and path != "eval/conventions.py"}
    assert found == set(), found
    presets = _sources()["eval/conventions.py"]
    assert presets.count("interval=0.001") == 1 and presets.count("interval=0.01") == 1


def test_the_command_line_uses_the_public_packages_only():
    """Commands import tedloc's packages (``tedloc.methods``, ``tedloc.eval``, ...), never a module inside the
    engine, the models or the pseudo-labels, and no command module imports another (the entry point,
    ``tedloc.cli``, loads them all)."""
    graph = import_graph()
    commands = {name for name, path in _modules().items() if name.startswith("tedloc.cli.")
                and "@command(" in path.read_text()}
    for name in sorted(m for m in graph if m.startswith("tedloc.cli")):
        for dep in graph[name]:
            parts = dep.split(".")
            if len(parts) > 1:
                assert parts[1] not in ("engine", "models"), (name, dep)
                assert not (parts[1] == "pseudolabels" and len(parts) > 2), (name, dep)
            assert name == "tedloc.cli" or dep not in commands, (name, dep)  # the entry point loads them


def test_every_built_in_map_source_exists_without_importing_anything_else():
    """``compute_map_cache(method="clip")`` from the library: the CLIP sources are registered where the
    registry is, not by a module that only the command line imports."""
    import subprocess
    import sys

    code = ("from tedloc.pseudolabels import MAP_SOURCES; "
            "print(' '.join(MAP_SOURCES.names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cam", "clip", "clip-es", "clipseg", "eigencam", "gradcam", "gradcam++", "layercam", "map", "naclip",
                   "sclip", "scorecam", "smoothgradcam++", "xgradcam"]
