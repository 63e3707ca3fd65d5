"""curate-hsi with rasters fanned out on a 2-worker Dask LocalCluster equals the serial run, byte for byte."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_inputs
from scenes import TinyScene

from pipeline.store import open_store
from schemas.contract import validate_store
from schemas.hsi import HSICurationParams

PARAMS = HSICurationParams(max_points_per_class=900, seed=5)


def _same_arrays(a: xr.Dataset, b: xr.Dataset) -> None:
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind in "fc":
            assert x.tobytes() == y.tobytes(), f"{name} differs"
        else:
            assert np.array_equal(x, y), f"{name} differs"
        assert a[name].attrs == b[name].attrs, name
    assert a.attrs == b.attrs  # every dataset attr is deterministic (no timestamps, same inputs)


async def _extract_task_states() -> list[str]:
    """State names of the extract tasks run inside the Dask subflow (Completed, not Cached)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["extract-rasters"]))
        )
        assert runs, "the Dask subflow did not run"
        latest = max(runs, key=lambda r: r.created or 0)
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest.id]))
        )
        return [t.state.name for t in tasks if t.state is not None and t.name.startswith("extract-")]


@pytest.mark.integration
def test_two_dask_workers_equal_serial(prefect_harness: None, tiny_scene: TinyScene, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    from flows.curate_hsi import curate_hsi_flow

    inputs = tiny_inputs(tiny_scene)
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):  # really extract, twice
        serial = curate_hsi_flow(inputs=inputs, params=PARAMS, out=str(tmp_path / "serial.zarr"))
        dask = curate_hsi_flow(inputs=inputs, params=PARAMS, out=str(tmp_path / "dask.zarr"), workers=2)
    assert validate_store(dask) == []
    assert sorted(asyncio.run(_extract_task_states())) == ["Completed", "Completed"]
    _same_arrays(open_store(serial).load(), open_store(dask).load())
    _same_arrays(open_store(serial, group="rejects").load(), open_store(dask, group="rejects").load())
