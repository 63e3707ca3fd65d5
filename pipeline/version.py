"""Code version recorded in every published dataset's provenance and in every task cache key."""

from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("emin-fusion")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: Folders whose uncommitted edits make a different code version (the code that computes data).
SOURCE_DIRS = ("pipeline", "flows", "schemas", "models", "experiments")


def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def tree_version(root: Path, base: str = __version__) -> str:
    """``base+g<commit>``, plus ``.dirty<digest>`` when the source folders have uncommitted edits.

    The digest covers tracked edits (staged or not) and untracked source files, so cached
    task results computed by edited code are never reused as if the commit had made them,
    and a store written by edited code says so. Outside a git checkout: ``base``.
    """
    commit = (_git(root, "rev-parse", "--short=12", "HEAD") or "").strip()
    if not commit:
        return base
    edits = _git(root, "diff", "HEAD", "--", *SOURCE_DIRS) or ""
    untracked = (
        _git(root, "ls-files", "--others", "--exclude-standard", "--", *SOURCE_DIRS) or ""
    ).splitlines()
    if not edits and not untracked:
        return f"{base}+g{commit}"
    digest = hashlib.sha256(edits.encode())
    for name in sorted(untracked):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return f"{base}+g{commit}.dirty{digest.hexdigest()[:8]}"


@lru_cache(maxsize=1)
def code_version() -> str:
    """:func:`tree_version` of this package's source tree (computed once per process)."""
    return tree_version(Path(__file__).resolve().parent.parent)
