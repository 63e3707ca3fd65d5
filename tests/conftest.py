"""Shared fixtures: small scenes written to disk in real formats, and one Prefect harness."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# the registry of temporaries (pipeline.publishing.paths.state_dir) stays out of the user's home
os.environ.setdefault("EMIN_STATE_DIR", tempfile.mkdtemp(prefix="emin-state-"))
sys.path.insert(0, str(Path(__file__).parent))

from scenes import TinyScene, make_tiny_scene

from schemas.hsi import HSIInputs, RasterSpec


@pytest.fixture(autouse=True)
def _log_handlers_on_open_streams() -> Iterator[None]:
    """After each test, point log handlers left on a closed stream back at ``sys.stderr``.

    typer's ``CliRunner`` swaps ``sys.stderr`` for a stream it closes after the call; a handler
    Prefect builds meanwhile keeps that stream, and every later log of the session fails
    (``ValueError: I/O operation on closed file``, then a RecursionError in logging).
    """
    yield
    for logger in [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
                handler.stream = sys.stderr  # not setStream: it flushes the closed stream first
                if hasattr(handler, "console"):  # Prefect's handler writes through a rich Console
                    handler.console.file = sys.stderr


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory) -> TinyScene:
    return make_tiny_scene(tmp_path_factory.mktemp("tiny"))


def tiny_inputs(scene: TinyScene) -> HSIInputs:
    return HSIInputs(
        polygons=scene.polygons,
        class_column="class_name",
        transmission=scene.transmission,
        rasters=[
            RasterSpec(name="VNIR1", path=scene.rasters["VNIR1"], sensor="VNIR"),
            RasterSpec(name="SWIR1", path=scene.rasters["SWIR1"], sensor="SWIR"),
        ],
    )


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for every flow test in the session (start-up costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
