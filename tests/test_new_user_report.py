"""What a new user reads before running anything: the documents' references, and the setup's output."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
# a document of the repository named in the text: docs/X.md, docs/zoo/x.md, or an upper-case X.md (README.md,
# BENCHMARKS.md); lower-case names outside docs/ are files the commands write (OUT/report.md)
NAMED = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*(?:docs/(?:[\w.-]+/)*[\w.-]+|[A-Z][A-Z0-9_-]*)\.md)\b")


def missing_references(root: Path) -> list[str]:
    """``FILE: TARGET`` for each relative link and each document named in README.md and docs/**/*.md of ``root``
    that the repository does not have (a name resolves from the naming file's folder, the root or docs/)."""
    missing: list[str] = []
    for path in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        text = path.read_text()
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor of the same page
            if not (path.parent / target.split("#")[0]).exists():
                missing.append(f"{path.relative_to(root)}: {target}")
        for name in NAMED.findall(text):
            if not any((folder / name).exists() for folder in (path.parent, root, root / "docs")):
                missing.append(f"{path.relative_to(root)}: {name}")
    return list(dict.fromkeys(missing))  # a link that names the file is one reference


def test_every_document_named_or_linked_in_the_docs_exists():
    assert missing_references(ROOT) == []


def test_the_check_finds_a_missing_document(tmp_path):
    (tmp_path / "docs" / "zoo").mkdir(parents=True)
    (tmp_path / "docs" / "A.md").write_text("See [B](B.md), [zoo](zoo/x.md), [web](https://x.org/C.md), [top](#a); "
                                            "DESIGN.md's notes; `docs/GONE.md`; OUT/report.md is written\n")
    (tmp_path / "docs" / "B.md").write_text("README.md, docs/A.md and [up](../README.md)\n")
    (tmp_path / "README.md").write_text("docs/B.md, A.md, [missing](docs/C.md)\n")
    assert missing_references(tmp_path) == ["README.md: docs/C.md", "docs/A.md: zoo/x.md", "docs/A.md: DESIGN.md",
                                            "docs/A.md: docs/GONE.md"]


def test_the_package_metadata_uses_the_spdx_license_and_ships_its_text():
    """setuptools >= 77 deprecates ``license = {text = ...}``: an SPDX string, and the text as license-files."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] and all((ROOT / f).is_file() for f in project["project"]["license-files"])
    assert "setuptools>=77" in project["build-system"]["requires"]


def _make(root: Path, recipe: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``make probe`` of a makefile that includes ``root``'s Makefile and runs ``recipe`` through its filter."""
    probe = tmp_path / "probe.mk"
    probe.write_text(f"include {root / 'Makefile'}\nprobe:\n\t{recipe} $(QUIET_INDEXES)\n")
    return subprocess.run(["make", "-s", "-f", str(probe), "probe"], capture_output=True, text=True, cwd=tmp_path)


@pytest.mark.skipif(not (shutil.which("make") and shutil.which("bash")) or sys.platform == "win32",
                    reason="make and bash needed")
def test_make_setup_leaves_out_pips_lines_about_missing_local_index_folders(tmp_path):
    noise = ("WARNING: Location 'file:///opt/pypi-more/simple/pyyaml/' is ignored: it is neither a file nor a "
             "directory.")
    lines = f"printf '%s\\n' \"{noise}\" 'ERROR: a real problem' 'WARNING: another warning'"
    done = _make(ROOT, f"{{ {lines}; exit 3; }}", tmp_path)
    assert done.returncode != 0  # pip's failure stays a failure
    assert done.stdout.splitlines() == ["ERROR: a real problem", "WARNING: another warning"]
    done = _make(ROOT, f"{{ printf '%s\\n' \"{noise}\"; }}", tmp_path)  # nothing left to show: no failure
    assert done.returncode == 0 and done.stdout == ""
