"""Shared fixtures: small scenes written to disk in real formats, and one Prefect harness."""

from __future__ import annotations

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
