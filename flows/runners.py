"""Task runners and cache keys for the flows: local threads, a local Dask cluster, or any cluster.

``make_task_runner(cluster, workers)`` is the single place that decides where
fanned-out tasks run:

* ``cluster=None, workers<=1``: Prefect's default thread pool, in the flow process;
* ``cluster=None, workers>=2``: a ``distributed.LocalCluster`` of ``workers`` processes
  (one thread each, no dashboard) started for the flow run and closed after it;
* ``cluster="tcp://host:8786"``: an existing Dask scheduler (its workers must be able to
  import this repository's packages and read the input files).

Inside a task, :func:`window_runner` fans one raster's window groups out further, and
:func:`unit_runner` a seismic curation's work units: as plain Dask futures on the whole
cluster when the task runs on a Dask worker (milliseconds per unit, against ~0.1–0.2 s per
Prefect task run); otherwise in the task (window groups by a thread pool, units in turn).

GPU work asks for a ``GPU`` worker resource with :func:`gpu_resources`; only workers
started with ``--resources GPU=1`` run it (see docs/orchestration.md).

Cache keys are built from input file checksums and parameters (never from the
task's in-memory arguments), so a re-run on unchanged inputs reuses the persisted
results, and any change to a file, a parameter or the code version recomputes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pipeline.checksums import array_digest, file_fingerprint
from pipeline.errors import EminError
from pipeline.version import code_version

if TYPE_CHECKING:
    import numpy as np

    from pipeline.io.raster import GroupRunner, WindowGroup
    from pipeline.seismic.batch import UnitHead, UnitJob
    from pipeline.seismic.curate import UnitRunner
    from pipeline.seismic.store import Placement, UnitWritten
    from pipeline.seismic.units import WorkUnit

#: Dask worker resource name that GPU tasks request (start GPU workers with ``--resources GPU=1``).
GPU_RESOURCE = "GPU"


def make_task_runner(cluster: str | None = None, workers: int = 1) -> TaskRunner[Any]:
    """A thread pool (``workers<=1``), a local Dask cluster (``workers>=2``) or an existing cluster."""
    if cluster is None and workers <= 1:
        return ThreadPoolTaskRunner()
    from flows.dask_runner import UnhashedDaskTaskRunner

    if cluster is not None:
        return UnhashedDaskTaskRunner(address=cluster)
    # the local scheduler and nannies live in this process: keep their INFO chatter out of flow logs
    logging.getLogger("distributed").setLevel(logging.WARNING)
    configure_local_workers()
    return UnhashedDaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs=local_cluster_kwargs(workers) | {"env": worker_env()},
    )


def local_cluster_kwargs(workers: int) -> dict[str, Any]:
    """``distributed.LocalCluster`` options of a flow's local cluster (benchmarks and tests start theirs so).

    ``workers`` processes of one thread each and no dashboard; the scheduler's HTTP endpoint
    (health checks, metrics) listens on a free port instead of 8787, so a second local cluster
    on the machine starts without distributed's "Port 8787 is already in use" warning. Call
    :func:`configure_local_workers` before starting it; a flow's workers also get
    :func:`worker_env`.
    """
    return {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "scheduler_kwargs": {"dashboard_address": ":0"},
    }


def worker_env() -> dict[str, str]:
    """Environment for local Dask workers: this process's Prefect API, so their task runs report to it.

    Without it, each worker process of a flow run on an ephemeral API would start its own
    temporary server (~10 s each) and its task runs would not appear in the parent's API.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return {
        "PREFECT_API_URL": api_url,
        "PREFECT_LOCAL_STORAGE_PATH": str(PREFECT_LOCAL_STORAGE_PATH.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


#: Environment of local worker processes, set before each starts (glibc and zarr read it once).
#:
#: * glibc malloc: Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` also freezes glibc's mmap
#:   threshold at 128 KiB, so every array of a work unit is a fresh mmap whose pages fault in anew
#:   (the seismic units ran 1.6-1.8x slower on a worker than in a plain process); with these,
#:   arrays under 32 MiB are reused from the heap and free heap beyond 64 MiB still goes back to
#:   the OS (bounded RSS).
#: * zarr's codec threads: one per worker thread (the workers run one each), as Dask holds
#:   OpenMP and BLAS to one thread. zarr's default pool (CPUs + 4 threads) let a 1-thread worker
#:   compress on every core: one worker kept 1.3 cores busy, two oversubscribed the machine, and
#:   both curated the demo network slower (6.0 and 4.6 s, against 5.7 and 3.8 s with one thread).
WORKER_PROCESS_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
    "ZARR_THREADING__MAX_WORKERS": "1",
}


#: Dask settings of local workers: no statistical profiler. It samples the running task's stack
#: every 10 ms for the dashboard's profile page, which a local cluster (started without a
#: dashboard) never shows; on 2 cores it cost each worker's reads ~5 % (the flight line's window
#: groups took 225-227 ms each on 2 workers without it, 234-248 ms with it; 1 worker: 215-230 ms).
LOCAL_WORKER_CONFIG: dict[str, Any] = {"distributed.worker.profile.enabled": False}


def configure_local_workers() -> None:
    """Give local Dask workers started from this process :data:`WORKER_PROCESS_ENV` and :data:`LOCAL_WORKER_CONFIG`.

    glibc and zarr read the variables once, at process start (zarr at import): they must be in
    Dask's ``distributed.nanny.pre-spawn-environ`` (set before a worker is spawned), not in a
    cluster's ``env`` (applied inside the already started worker, too late). A Nanny hands this
    process's Dask config to its worker, so the settings reach the workers it starts.
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    dask.config.set(
        {"distributed.nanny.pre-spawn-environ": {**env, **WORKER_PROCESS_ENV}, **LOCAL_WORKER_CONFIG}
    )


def _on_dask_worker() -> bool:
    """Whether the caller runs inside a task on a Dask worker."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def window_runner() -> tuple[int, GroupRunner]:
    """``(workers, runner)`` for a raster's window groups, from where the calling task runs.

    On a Dask worker: the cluster's thread count and :func:`run_on_cluster`; anywhere else
    (threads, ``--no-prefect``): ``(1, run_here)``, the units read by a thread pool in the task.
    """
    from pipeline.io.raster import run_here

    if not _on_dask_worker():
        return 1, run_here
    from distributed import get_client

    return max(1, sum(get_client().nthreads().values())), run_on_cluster


def run_on_cluster(
    read: Callable[[WindowGroup], np.ndarray], groups: Sequence[WindowGroup]
) -> Iterator[tuple[int, np.ndarray]]:
    """A :data:`~pipeline.io.raster.GroupRunner` for a task on a Dask worker: one future per group.

    The task secedes from its worker's thread pool while it waits (``worker_client``), so its
    own worker reads groups too; results come back as they finish. On an error (or when the
    caller stops early) the remaining futures are cancelled. A single group is read here.
    """
    from distributed import as_completed, worker_client

    from pipeline.io.raster import run_here

    if len(groups) <= 1:
        yield from run_here(read, groups)
        return

    with worker_client() as client:
        futures = client.map(read, groups, pure=False)
        position = {f.key: k for k, f in enumerate(futures)}
        try:
            for future, values in as_completed(futures, with_results=True):
                yield position[future.key], values
        except BaseException:
            client.cancel(futures)
            raise


def unit_runner() -> UnitRunner:
    """The runner of a seismic curation's work units, from where the calling task runs.

    On a Dask worker :func:`run_units_on_cluster` (units as futures over the whole cluster);
    anywhere else (threads, ``--no-prefect``) :func:`pipeline.seismic.curate.run_here`.
    """
    from pipeline.seismic.curate import run_here

    return run_units_on_cluster if _on_dask_worker() else run_here


def run_units_on_cluster(
    units: Sequence[WorkUnit], job: UnitJob, place: Callable[[UnitHead], Placement]
) -> Generator[UnitWritten, None, None]:
    """A :data:`~pipeline.seismic.curate.UnitRunner` for a task on a Dask worker.

    The job is scattered once; each unit is a ``process_unit`` future whose batch stays on the
    worker that computed it, a ``unit_head`` future (its small table, placed here in unit
    order) and a ``write_unit`` future on that same worker. At most ``2 x threads + 2`` units
    are processed ahead of the placement, so memory stays bounded. The task secedes while it
    waits (``worker_client``); on an error the remaining futures are cancelled.
    """
    from distributed import as_completed, worker_client

    from pipeline.seismic.batch import process_unit, unit_head
    from pipeline.seismic.store import write_unit

    with worker_client() as client:
        ahead = 2 * max(1, sum(client.nthreads().values())) + 2
        shared = client.scatter(job, broadcast=True)
        heads: dict[int, tuple[Any, Any]] = {}
        writes = as_completed()
        submitted = 0
        try:
            for k in range(len(units)):
                while submitted < len(units) and submitted <= k + ahead:
                    processed = client.submit(process_unit, units[submitted], shared, pure=False)
                    heads[submitted] = (processed, client.submit(unit_head, processed, submitted, pure=False))
                    submitted += 1
                processed, head = heads.pop(k)
                writes.add(client.submit(write_unit, processed, place(head.result()), pure=False))
                del processed, head
                while writes.has_ready():
                    for done in writes.next_batch(block=False):
                        yield done.result()
            for done in writes:
                yield done.result()
        except BaseException:
            client.cancel([f for pair in heads.values() for f in pair] + list(writes.futures))
            raise


@contextmanager
def gpu_resources(count: int = 1) -> Iterator[None]:
    """Tasks submitted inside this block run only on Dask workers that have a ``GPU`` resource.

    >>> with gpu_resources():                       # doctest: +SKIP
    ...     futures = [train_trial.submit(cfg) for cfg in trials]

    Works with :class:`prefect_dask.DaskTaskRunner` (the annotation reaches the scheduler);
    with a thread pool it is a no-op. A cluster with no GPU worker never runs these tasks.
    """
    import dask

    with dask.annotate(resources={GPU_RESOURCE: count}):
        yield


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry I/O hiccups only (``OSError`` other than a missing/forbidden path).

    Bad input fails the same way again (an :class:`EminError`, a ``ValueError``, a pydantic
    error, any bug), and an interrupt (Ctrl-C, a cancelled or crashed run) must stop the run:
    neither is retried.
    """
    try:
        state.result()
    except EminError:
        return False
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
        return False
    except OSError:
        return True
    except BaseException:
        return False
    return False


class _ProductErrorFilter(logging.Filter):
    """Log a product error (:class:`EminError`) as its one-line message, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, EminError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_product_errors() -> None:
    """Keep task/flow-run logs of a bad input to their one line (call after Prefect set up logging).

    A product error already says what, where and the fix; its traceback (printed once per
    task and once per flow by Prefect's console handler) is noise to the user. Bugs keep theirs.
    """
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, _ProductErrorFilter) for f in handler.filters):
                handler.addFilter(_ProductErrorFilter())


def io_task_options(retries: int = 2) -> dict[str, Any]:
    """``@task`` options of every I/O task: a few retries, skipped for bad input."""
    return {"retries": retries, "retry_delay_seconds": 2, "retry_condition_fn": retry_transient}


def gpu_task_options() -> dict[str, Any]:
    """``task.with_options(**gpu_task_options())``: tag GPU tasks (the UI filter and concurrency limits)."""
    return {"tags": {"gpu"}}


# --- cache keys -----------------------------------------------------------------------------


def cache_key(name: str, *, files: list[str | Path | None], models: list[Any]) -> str:
    """A stable key: task name, code version, file checksums, and JSON dumps of pydantic models."""
    payload = {
        "task": name,
        "code": code_version(),
        "files": [file_fingerprint(f) for f in files],
        "models": [m.model_dump_json() if hasattr(m, "model_dump_json") else json.dumps(m) for m in models],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def hsi_polygons_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key of ``load-polygons``: polygon and transmission files + inputs + params."""
    inputs, params = parameters["inputs"], parameters["params"]
    return cache_key(
        "load-polygons",
        files=[inputs.polygons, inputs.transmission],
        models=[inputs.model_dump(mode="json", exclude={"rasters"}), params],
    )


def hsi_extract_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key of ``extract-raster``: raster file checksum, spec, params, and the points' content.

    The sampled points and the transmission profile are hashed by value (coordinates,
    labels, CRS; wavelengths and transmission), so no file outside the raster is needed.
    """
    spec, params, points = parameters["spec"], parameters["params"], parameters["points"]
    transmission = parameters.get("transmission")
    content = array_digest(points.x, points.y, points.label_name, points.polygon_id)
    profile = (
        None if transmission is None else array_digest(transmission.wavelength_nm, transmission.transmission)
    )
    return cache_key(
        "extract-raster",
        files=[spec.path],
        models=[spec, params, [content, points.crs.to_wkt(), profile]],
    )


CacheKeyFn = Callable[[TaskRunContext, dict[str, Any]], str]
