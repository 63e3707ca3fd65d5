"""Prefect flow ``curate-hsi``: labelled polygons + hyperspectral rasters -> published Zarr dataset.

Thin wiring of :mod:`pipeline.hsi.curate` steps into tasks: I/O tasks retry, and the run
ends with a Table-1 artifact. Prefect tasks stay coarse; the fine grain is plain Dask. The
per-raster work is fanned out on the run's task runner (threads, or a Dask cluster, see
:func:`flows.runners.make_task_runner`): one ``extract-<raster>`` task per raster, whose
window groups are Dask futures over the whole cluster (:func:`flows.runners.window_runner`),
then one Dask job per raster that compresses and writes its modality array into the new
store, on the worker that already holds the spectra. Only polygons, sampling, fold
assignment and the small arrays run in the flow process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import geopandas as gpd
import numpy as np
import xarray as xr
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.task_runners import TaskRunner

from flows.artifacts import ExtractionProgress, ProgressArtifact, publish_curation_artifacts, submit_figures
from flows.form import OptStr, ui
from flows.jobs import HSIJob, resolve_job
from flows.progress import logs_warnings, notify_stage
from flows.publishing import publish_version, publish_version_task
from flows.runners import (
    hsi_extract_key,
    hsi_polygons_key,
    io_task_options,
    make_task_runner,
    quiet_product_errors,
    window_runner,
)
from pipeline.errors import InputError
from pipeline.hsi import curate as hsi
from pipeline.hsi import extract as hsi_extract
from pipeline.hsi import sampling as hsi_sampling
from pipeline.hsi import store as hsi_store
from pipeline.hsi.polygons import PolygonReport
from pipeline.hsi.spectral import Transmission
from pipeline.io.raster import read_cost
from pipeline.publishing.contract import validate_hsi_store
from pipeline.publishing.zarr_io import check_target, target_lock, write_atomically
from schemas.hsi import HSICurationParams, HSIInputs, RasterSpec

#: I/O tasks whose results are persisted (PREFECT_LOCAL_STORAGE_PATH) and reused across runs,
#: keyed on input checksums + parameters + code version (see flows/runners.py).
CACHED: dict[str, Any] = io_task_options() | {"persist_result": True}


@task(name="load-polygons", cache_key_fn=hsi_polygons_key, **CACHED)
def load_polygons_task(
    inputs: HSIInputs, params: HSICurationParams
) -> tuple[gpd.GeoDataFrame, PolygonReport, Transmission | None]:
    """Read, repair and reproject polygons; read the transmission profile."""
    transmission = hsi.load_transmission(inputs, params)
    polygons, report = hsi.load_polygons(inputs, params)
    get_run_logger().info("%d polygons in %s", len(polygons), polygons.crs)
    return polygons, report, transmission


@task(name="sample-points", cache_policy=NO_CACHE)
def sample_points_task(
    polygons: gpd.GeoDataFrame, params: HSICurationParams, report: PolygonReport
) -> hsi_sampling.SampledPoints:
    """Buffer, pick the top classes and draw the seeded random points."""
    points = hsi.sample_points(polygons, params, report)
    get_run_logger().info("sampled %d points over classes %s", points.size, points.class_names)
    return points


@task(name="extract-raster", task_run_name="extract-{spec.name}", cache_key_fn=hsi_extract_key, **CACHED)
def extract_task(
    spec: RasterSpec,
    points: hsi_sampling.SampledPoints,
    params: HSICurationParams,
    transmission: Transmission | None,
) -> hsi_extract.ModalityExtraction:
    """Block-wise extraction, band mask and clip for one raster, with progress in the log.

    On a Dask worker the raster's window groups are Dask futures over the whole cluster
    (:func:`flows.runners.window_runner`); with threads they are read here, in turn.
    """
    logger = get_run_logger()
    workers, runner = window_runner()
    progress = ExtractionProgress(spec.name, logger=logger)
    result = hsi_extract.extract_modality(
        spec, points, params, transmission, workers=workers, runner=runner, on_group=progress
    )
    logger.info("%s: present at %d of %d points", spec.name, int(np.sum(result.status == 0)), points.size)
    return result


@task(name="split-and-assemble", cache_policy=NO_CACHE)
def assemble_task(
    points: hsi_sampling.SampledPoints,
    extractions: list[hsi_extract.ModalityExtraction],
    params: HSICurationParams,
    inputs: HSIInputs,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Drop points absent everywhere (to rejects), assign stratified folds, package."""
    return hsi_store.assemble_dataset(
        points, extractions, params, provenance=hsi_store.provenance_for(inputs, extractions)
    )


@task(name="create-store", cache_policy=NO_CACHE, **io_task_options(retries=1))
def create_store_task(ds: xr.Dataset, rejects: xr.Dataset, path: Path, chunk: int) -> None:
    """The new store's metadata, coordinates, ``present`` and rejects; modality chunks come later."""
    hsi_store.create_hsi_store(ds, rejects, path, chunk=chunk, defer_modalities=True)


def longest_first(rasters: list[RasterSpec]) -> list[RasterSpec]:
    """Rasters by estimated extraction cost, longest first (ties keep catalog order).

    Workers take queued tasks in submission order; starting the longest ones first
    keeps one worker from being left with a big raster at the end (LPT scheduling).
    """
    return sorted(rasters, key=lambda spec: read_cost(spec.path), reverse=True)


def _fill_from_state(store: str, state: State[hsi_extract.ModalityExtraction], sample_ids: np.ndarray) -> str:
    """Dask job: one modality array of the new store, from the extract task's state held on this worker."""
    extraction = state.result()
    hsi_store.fill_modality(store, extraction, sample_ids)
    return extraction.name


def fill_modalities(
    runner: TaskRunner[Any],
    store: Path,
    extractions: list[PrefectFuture[hsi_extract.ModalityExtraction]],
    sample_ids: np.ndarray,
) -> None:
    """Compress and write every modality array of ``store``, each where its spectra are.

    On Dask, each array is a plain Dask job on the worker that holds the extract task's
    result: it uses the spectra already there (nothing is sent back to the workers) and
    costs no Prefect task run (~0.2 s of CPU each on 2 cores, more than the job itself).
    With threads the arrays are written here, zarr compressing chunks in parallel.
    """
    from prefect_dask.task_runners import DaskTaskRunner, PrefectDaskFuture

    logger = get_run_logger()
    if isinstance(runner, DaskTaskRunner):
        held = [
            cast(PrefectDaskFuture[hsi_extract.ModalityExtraction], f).wrapped_future for f in extractions
        ]
        jobs = [runner.client.submit(_fill_from_state, str(store), h, sample_ids, pure=False) for h in held]
        failed = [e for e in (job.exception() for job in jobs) if e is not None]  # waits for every job
        if failed:  # raised only once no job still writes into the store that is about to be removed
            raise failed[0]
        for job in jobs:
            logger.info("wrote modality %s", job.result())
        return
    for f in extractions:
        extraction = f.result()
        hsi_store.fill_modality(store, extraction, sample_ids)
        logger.info("wrote modality %s", extraction.name)


def publish_store(
    runner: TaskRunner[Any],
    ds: xr.Dataset,
    rejects: xr.Dataset,
    extractions: list[PrefectFuture[hsi_extract.ModalityExtraction]],
    target: Path,
    chunk: int,
    *,
    overwrite: bool = False,
    root: str | None = None,
) -> Path:
    """Write the store atomically at ``target``: small arrays by a task here, modality arrays fanned out."""
    with write_atomically(
        target, kind=hsi_store.KIND, overwrite=overwrite, root=root, validate=validate_hsi_store
    ) as tmp:
        create_store_task(ds, rejects, tmp, chunk)
        fill_modalities(runner, tmp, extractions, ds["sample_id"].values)
    return target


def _curate_run_name() -> str:
    """``curate-<entry>`` (or ``curate-<out stem>`` without an entry)."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    return f"curate-{p.get('entry') or Path(str(p.get('out') or 'hsi')).stem}"


@flow(name="curate-hsi", log_prints=True, flow_run_name=_curate_run_name)
@logs_warnings
def curate_hsi_flow(
    entry: Annotated[OptStr, ui("Catalog entry")] = None,
    catalog: Annotated[str, ui("Catalog file")] = "data_catalog.yaml",
    inputs: Annotated[HSIInputs | None, ui("Inputs (without an entry)")] = None,
    params: Annotated[HSICurationParams, ui("Curation parameters")] = HSICurationParams(),
    out: Annotated[OptStr, ui("Output store")] = None,
    cluster: Annotated[OptStr, ui("Dask cluster address")] = None,
    workers: Annotated[int, ui("Workers", ge=1)] = 1,
    publish: Annotated[OptStr, ui("Publish as dataset")] = None,
    root: Annotated[OptStr, ui("Dataset root")] = None,
    overwrite: Annotated[bool, ui("Replace an existing HSI store at the output")] = False,
) -> str:
    """Curate an HSI multi-modality sample dataset; returns the path of the store.

    The store is written atomically at ``out`` (a catalog entry's ``path``); with ``publish``
    (a catalog entry publishes under its own name) it is also published as an immutable
    version in the dataset ``root``, and that version's store path is returned. Rasters are
    extracted, and their modality arrays compressed and written, concurrently: in threads,
    or on Dask with ``workers >= 2`` (a local cluster) or ``cluster="tcp://host:8786"`` (an
    existing one, whose workers must see the inputs and ``out`` at the same paths).

    ``out`` is checked first (it must not exist, be an empty folder, or hold an HSI store to
    replace with ``overwrite``); the store is written, and published, last and under a lock on
    ``out``, so two runs with the same ``out`` never publish each other's content. The run's
    artifacts (``curate-hsi-summary``, ``curate-hsi-table1``) are written after publishing and
    name the version; the dataset report is written beside the version.

    Args:
        entry: Name of a data_catalog.yaml entry (inputs, parameters, output, publication). `inputs`, `params` (when changed from the defaults), `out`, `publish` and `root` override it.
        catalog: Path of the catalog file that holds `entry`.
        inputs: Polygons, class column, rasters and transmission; needed without `entry`, overrides the entry's inputs.
        params: Every curation parameter (report section 3.2 defaults); left at the defaults, an entry's own parameters are used.
        out: Path of the curated Zarr store; default: the entry's `path`.
        cluster: Address of an existing Dask scheduler (tcp://host:8786); empty = threads or a local cluster.
        workers: Extraction workers: 1 = threads in the flow process, >= 2 = a local Dask cluster of that many processes.
        publish: Dataset name to publish the store as (a new immutable version); default: the entry's name, none without an entry.
        root: Dataset root for publishing (folder or fsspec URL); default: the catalog's, else $EMIN_DATA_ROOT or data/published.
        overwrite: Replace an existing HSI store at `out` (never anything else; a catalog entry replaces its own store).
    """
    entry, cluster = entry or None, cluster or None
    params_given: HSICurationParams | None = None if params == HSICurationParams() else params
    job = resolve_job(
        "hsi", entry, catalog, inputs, params_given, out or None, publish or None, root or None, overwrite
    )
    inputs, params, target, publish, root = job.inputs, job.params, job.target, job.publish, job.root
    overwrite = job.overwrite
    check_target(target, kind=hsi_store.KIND, overwrite=overwrite, root=root)
    polygons, report, transmission = load_polygons_task(inputs, params)
    points = sample_points_task(polygons, params, report)
    with make_task_runner(cluster, workers) as runner:
        shared = {"points": points, "params": params, "transmission": transmission}
        futures = {
            s.name: runner.submit(extract_task, {"spec": s, **shared}) for s in longest_first(inputs.rasters)
        }
        in_order = [futures[spec.name] for spec in inputs.rasters]
        progress = ProgressArtifact("curate-hsi-progress", "rasters extracted")
        done = []
        for f in in_order:
            done.append(f.result())
            progress.update(
                100.0 * len(done) / len(in_order), f"rasters extracted: {len(done)}/{len(in_order)}"
            )
        ds, rejects = assemble_task(points, done, params, inputs)
        with target_lock(target):
            path = publish_store(
                runner, ds, rejects, in_order, target, params.sample_chunk, overwrite=overwrite, root=root
            )
            get_run_logger().info("wrote %s", path)
            figures = submit_figures(runner, path)  # drawn over the cluster while the version is published
            version = None if publish is None else publish_version_task(str(path), name=publish, root=root)
        drawn = figures()
    publish_curation_artifacts(
        "hsi", path, version, root=root, figures=drawn
    )  # after publishing: names the version
    return str(path) if version is None else version.store


def curate_hsi_job(job: HSIJob, *, prefect: bool = True, workers: int = 1, cluster: str | None = None) -> str:
    """Run one resolved job: as the ``curate-hsi`` flow, or (``prefect=False``) in this process.

    Both routes write the same store and, when ``job.publish`` is set, publish it with the same
    :func:`flows.publishing.publish_version`; returns the store path (the version's when published).
    """
    if prefect:
        quiet_product_errors()
        return curate_hsi_flow(
            inputs=job.inputs, params=job.params, out=str(job.target), publish=job.publish,
            root=job.root, workers=workers, cluster=cluster, overwrite=job.overwrite,
        )  # fmt: skip
    if workers > 1 or cluster is not None:
        raise InputError(
            "Dask workers/cluster need the Prefect flow",
            fix="--workers/--cluster fan rasters out through the flow: drop --no-prefect, or drop them",
        )
    with target_lock(job.target):
        path = hsi.curate_hsi(
            job.inputs,
            job.params,
            out=job.target,
            overwrite=job.overwrite,
            root=job.root,
            progress=notify_stage,
        )
        if job.publish is None:
            return str(path)
        return publish_version(str(path), name=job.publish, root=job.root).store
