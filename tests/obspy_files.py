"""obspy's bundled test files of one format, as the references of the lean readers' tests."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import obspy


def obspy_test_files(package: str, read: Callable[[str], Any]) -> list[Path]:
    """The ``*.xml`` files under ``obspy/io/<package>/tests/data`` that ``read`` (obspy's own
    reader of that format) reads without an error."""
    files = []
    for f in sorted((Path(obspy.__file__).parent / "io" / package / "tests" / "data").glob("*.xml")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read(str(f))
        except Exception:
            continue
        files.append(f)
    return files
