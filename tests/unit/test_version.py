"""The code version changes with uncommitted source edits, and only with them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.version import tree_version


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_dirty_source_tree_gets_its_own_version(tmp_path: Path) -> None:
    assert tree_version(tmp_path, "1.0") == "1.0"  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "pipeline").mkdir()
    source = tmp_path / "pipeline" / "step.py"
    source.write_text("SCALE = 1\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    commit = _git(tmp_path, "rev-parse", "--short=12", "HEAD")
    clean = tree_version(tmp_path, "1.0")
    assert clean == f"1.0+g{commit}"
    (tmp_path / "notes.txt").write_text("edited, still not code\n")
    assert tree_version(tmp_path, "1.0") == clean
    source.write_text("SCALE = 2\n")
    edited = tree_version(tmp_path, "1.0")
    assert edited.startswith(f"1.0+g{commit}.dirty") and edited != clean
    source.write_text("SCALE = 3\n")
    assert tree_version(tmp_path, "1.0") not in (clean, edited)
    source.write_text("SCALE = 1\n")
    assert tree_version(tmp_path, "1.0") == clean
    (tmp_path / "pipeline" / "new.py").write_text("X = 1\n")  # untracked source counts too
    assert tree_version(tmp_path, "1.0").startswith(f"1.0+g{commit}.dirty")
