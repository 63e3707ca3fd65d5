"""Local Dask workers start with the product's process environment (glibc malloc, zarr's threads) and settings (no profiler)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator

import dask
import numpy as np
import pytest

from flows.runners import (
    LOCAL_WORKER_CONFIG,
    WORKER_PROCESS_ENV,
    configure_local_workers,
    local_cluster_kwargs,
)


@pytest.fixture
def worker_process_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The product's pre-spawn environment and worker settings, Dask's config put back afterwards.

    Variables already in this process's environment win over Dask's config (Dask's precedence,
    so a user's own setting stays), and every Nanny started here copies its pre-spawn variables
    into this process's environment: an earlier test's cluster leaves Dask's defaults there.
    """
    import distributed  # noqa: F401  # its config defaults first: else None is saved, and "restored"

    for name in WORKER_PROCESS_ENV:
        monkeypatch.delenv(name, raising=False)
    keys = ["distributed.nanny.pre-spawn-environ", *LOCAL_WORKER_CONFIG]
    before = {key: dask.config.get(key, default=None) for key in keys}
    configure_local_workers()
    yield
    dask.config.set(before)


def _zarr_threads_after_a_write() -> tuple[int, dict[str, str]]:
    """Write a 16-chunk array (zarr encodes its chunks concurrently), then count zarr's threads."""
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        arr = zarr.create_array(f"{tmp}/a.zarr", shape=(16, 256, 256), chunks=(1, 256, 256), dtype="f4")
        arr[...] = np.random.default_rng(0).normal(size=arr.shape).astype("f4")
    names = [t.name for t in threading.enumerate() if t.name.startswith("zarr_pool")]
    env = {k: os.environ.get(k, "") for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    return len(names), env


def test_a_one_thread_worker_compresses_on_one_zarr_thread(worker_process_env: None) -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(**local_cluster_kwargs(1)) as cluster,
        Client(cluster) as client,
    ):
        n_threads, env = client.submit(_zarr_threads_after_a_write, pure=False).result()
    assert n_threads == 1
    assert env == {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}


def _profiler_running() -> bool:
    """Whether this worker runs Dask's statistical profiler (its periodic stack sampling)."""
    from distributed import get_worker

    return "profile" in get_worker().periodic_callbacks


def test_local_workers_run_without_the_profiler(worker_process_env: None) -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(**local_cluster_kwargs(1)) as cluster,
        Client(cluster) as client,
    ):
        assert client.submit(_profiler_running, pure=False).result() is False
    with (
        dask.config.set({"distributed.worker.profile.enabled": True}),  # the check can fail: Dask's default
        LocalCluster(**local_cluster_kwargs(1)) as cluster,
        Client(cluster) as client,
    ):
        assert client.submit(_profiler_running, pure=False).result() is True


def test_two_local_clusters_at_once_start_without_a_port_warning(worker_process_env: None) -> None:
    """The scheduler's HTTP endpoint takes a free port: a second local cluster (a bench's, another
    flow run's) starts quietly; with Dask's default port the second one warns (the check can fail)."""
    import warnings

    from distributed import LocalCluster

    def port_warnings(kwargs: dict[str, object]) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with LocalCluster(**kwargs) as one, LocalCluster(**kwargs) as two:  # type: ignore[arg-type]
                assert one.scheduler_address != two.scheduler_address
        return [str(w.message) for w in caught if "already in use" in str(w.message)]

    assert port_warnings(local_cluster_kwargs(1)) == []
    default_port = local_cluster_kwargs(1)
    del default_port["scheduler_kwargs"]
    assert port_warnings(default_port)
