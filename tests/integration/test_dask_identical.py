"""curate-hsi with rasters fanned out on a 2-worker Dask LocalCluster equals the serial run, byte for byte."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_inputs
from scenes import TinyScene

from pipeline.publishing.contract import validate_store
from pipeline.publishing.zarr_io import open_store
from schemas.hsi import HSICurationParams

PARAMS = HSICurationParams(max_points_per_class=900, seed=5)


def _same_arrays(a: xr.Dataset, b: xr.Dataset) -> None:
    assert sorted(map(str, a.variables)) == sorted(map(str, b.variables))
    for name in a.variables:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind in "fc":
            assert x.tobytes() == y.tobytes(), f"{name} differs"
        else:
            assert np.array_equal(x, y), f"{name} differs"
        assert a[name].attrs == b[name].attrs, name
    assert a.attrs == b.attrs  # every dataset attr is deterministic (no timestamps, same inputs)


def _extract_states(state: Any) -> dict[str, str]:
    """State names of the extract tasks of a finished curate-hsi run."""
    assert state.state_details.flow_run_id is not None
    states = asyncio.run(_task_states(state.state_details.flow_run_id))
    return {k: v for k, v in states.items() if k.startswith("extract-")}


def _same_files(a: Path, b: Path) -> None:
    """Every file of two stores (chunks, array and group metadata) is byte-identical."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"


@pytest.mark.integration
def test_two_dask_workers_equal_serial(prefect_harness: None, tiny_scene: TinyScene, tmp_path: Path) -> None:
    """One raster's window groups fan out as Dask futures over 2 workers; the store equals the library's."""
    from distributed import Client, LocalCluster, get_task_stream
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    from flows.curate_hsi import curate_hsi_flow
    from flows.runners import local_cluster_kwargs, worker_env
    from pipeline.hsi.curate import curate_hsi

    inputs = tiny_inputs(tiny_scene)
    library = curate_hsi(inputs, PARAMS, out=tmp_path / "library.zarr")  # no Prefect, one-go write
    cluster = LocalCluster(**local_cluster_kwargs(2), env=worker_env())
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):  # really extract, twice
        threads = curate_hsi_flow(inputs=inputs, params=PARAMS, out=str(tmp_path / "threads.zarr"))
        with cluster, Client(cluster, set_as_default=False) as client, get_task_stream(client) as stream:
            state = curate_hsi_flow(
                inputs=inputs, params=PARAMS, out=str(tmp_path / "dask.zarr"),
                cluster=cluster.scheduler_address, return_state=True,
            )  # fmt: skip
    # a re-run reuses the persisted extractions on the workers: the store is filled from cached states
    again = curate_hsi_flow(
        inputs=inputs, params=PARAMS, out=str(tmp_path / "cached.zarr"), workers=2, return_state=True
    )
    assert _extract_states(state) == {"extract-VNIR1": "Completed", "extract-SWIR1": "Completed"}
    assert _extract_states(again) == {"extract-VNIR1": "Cached", "extract-SWIR1": "Cached"}
    units = [t for t in stream.data if str(t["key"]).startswith("read_window_group")]
    tasks = {str(t["key"]) for t in stream.data if str(t["key"]).startswith("extract")}
    assert len(tasks) == 2 and all(UUID(k[-36:]) for k in tasks)  # keys from UUIDs: arguments not hashed
    assert len(units) == 8  # VNIR1 (25 tiles of 16 x 16 px) in 4 units per worker; SWIR1 is one window
    assert _progress(state, "curate-hsi-extract-vnir1") == 100.0
    dask, cached = state.result(), again.result()
    assert validate_store(dask) == []
    for other in (threads, dask, cached):
        _same_files(library, Path(other))
    _same_arrays(open_store(library).load(), open_store(dask).load())
    _same_arrays(open_store(library, group="rejects").load(), open_store(dask, group="rejects").load())


def _progress(state: Any, key: str) -> float:
    """The latest value of a progress artifact written by the run of ``state``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    async def read() -> float:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                )
            )
        return float(found[0].data)  # type: ignore[arg-type]

    return asyncio.run(read())


def test_task_runner_factory_and_gpu_annotation() -> None:
    import dask
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import gpu_resources, make_task_runner

    assert isinstance(make_task_runner(None, 1), ThreadPoolTaskRunner)
    remote = make_task_runner("tcp://10.0.0.5:8786", 1)
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    with gpu_resources():
        assert dask.get_annotations() == {"resources": {"GPU": 1}}
    assert dask.get_annotations() == {}


@pytest.mark.integration
def test_gpu_tasks_run_only_on_gpu_workers() -> None:
    from distributed import Client, LocalCluster

    from flows.runners import gpu_resources

    kwargs: dict[str, Any] = {
        "n_workers": 1,
        "threads_per_worker": 1,
        "processes": False,
        "dashboard_address": None,
    }
    with LocalCluster(**kwargs) as cpu_only, Client(cpu_only) as client:
        with gpu_resources():
            waiting = client.submit(sum, [1, 2], pure=False)
        time.sleep(1.0)
        assert waiting.status == "pending"
    gpu = LocalCluster(**kwargs, resources={"GPU": 1})
    with gpu, Client(gpu) as client, gpu_resources():
        assert client.submit(sum, [1, 2], pure=False).result(timeout=30) == 3


async def _task_states(flow_run_id: UUID) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    # default run names carry a random suffix ("load-polygons-b34"); extract runs are named per raster
    return {
        t.name if t.name.startswith("extract-") else t.name.rsplit("-", 1)[0]: str(t.state.name)
        for t in runs
        if t.state is not None
    }


@pytest.mark.integration
def test_rerun_reuses_persisted_results_keyed_on_checksums(
    prefect_harness: None, tiny_scene: TinyScene, tmp_path: Path
) -> None:
    import shutil

    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.curate_hsi import curate_hsi_flow

    scene = tmp_path / "scene"
    shutil.copytree(tiny_scene.root, scene)
    inputs = tiny_inputs(tiny_scene).model_copy(
        update={
            "polygons": scene / "polygons.gpkg",
            "transmission": scene / "transmission.csv",
            "rasters": [
                r.model_copy(update={"path": scene / Path(r.path).name})
                for r in tiny_inputs(tiny_scene).rasters
            ],
        }
    )

    def run(name: str) -> tuple[dict[str, str], Path]:
        out = tmp_path / f"{name}.zarr"
        state = curate_hsi_flow(inputs=inputs, params=PARAMS, out=str(out), return_state=True)
        run_id = state.state_details.flow_run_id
        assert state.is_completed() and run_id is not None
        return asyncio.run(_task_states(run_id)), out

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "results"}):
        first, a = run("first")
        again, b = run("again")
        swir = scene / "swir.img"
        raw = bytearray(swir.read_bytes())
        raw[-2:] = (1234).to_bytes(2, "little")  # one SWIR pixel changes: only SWIR1 recomputes
        swir.write_bytes(bytes(raw))
        changed, _ = run("changed")
    assert first["extract-VNIR1"] == first["extract-SWIR1"] == "Completed"
    assert again["load-polygons"] == again["extract-VNIR1"] == again["extract-SWIR1"] == "Cached"
    assert changed["extract-VNIR1"] == "Cached" and changed["extract-SWIR1"] == "Completed"
    _same_arrays(open_store(a).load(), open_store(b).load())


@pytest.mark.integration
def test_a_fill_failing_on_a_worker_publishes_nothing(
    prefect_harness: None, tiny_scene: TinyScene, tmp_path: Path
) -> None:
    from prefect import flow

    from flows.curate_hsi import extract_task, publish_store
    from flows.runners import make_task_runner
    from pipeline.hsi import curate as hsi
    from pipeline.hsi import store as hsi_store

    inputs = tiny_inputs(tiny_scene)
    out = tmp_path / "out" / "store.zarr"

    @flow
    def broken_publish() -> None:
        transmission = hsi.load_transmission(inputs, PARAMS)
        polygons, report = hsi.load_polygons(inputs, PARAMS)
        points = hsi.sample_points(polygons, PARAMS, report)
        shared = {"points": points, "params": PARAMS, "transmission": transmission}
        with make_task_runner(None, 2) as runner:
            futures = [runner.submit(extract_task, {"spec": s, **shared}) for s in inputs.rasters]
            ds, rejects = hsi_store.assemble_dataset(
                points, [f.result() for f in futures], PARAMS, provenance={}
            )
            ds = ds.assign_coords(sample_id=ds["sample_id"] + points.size)  # rows no extraction has
            publish_store(runner, ds, rejects, futures, out, PARAMS.sample_chunk)

    with pytest.raises(IndexError):
        broken_publish()
    assert list(out.parent.iterdir()) == []  # neither the store nor its temporary sibling
