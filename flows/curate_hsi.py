"""Prefect flow ``curate-hsi``: labelled polygons + hyperspectral rasters -> published Zarr dataset.

Thin wiring of :mod:`pipeline.hsi` steps into tasks: I/O tasks retry, each
raster is extracted by its own task (concurrently), and the run ends with a
Table-1 artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import xarray as xr
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.publishing import publish_version_task
from flows.runners import hsi_extract_key, hsi_polygons_key, io_task_options, make_task_runner, uses_dask
from pipeline import hsi
from pipeline.spectral import Transmission
from pipeline.vector import PolygonReport
from schemas.catalog import load_catalog
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
) -> hsi.SampledPoints:
    """Buffer, pick the top classes and draw the seeded random points."""
    points = hsi.sample_points(polygons, params, report)
    get_run_logger().info("sampled %d points over classes %s", points.size, points.class_names)
    return points


@task(name="extract-raster", task_run_name="extract-{spec.name}", cache_key_fn=hsi_extract_key, **CACHED)
def extract_task(
    spec: RasterSpec,
    points: hsi.SampledPoints,
    params: HSICurationParams,
    transmission: Transmission | None,
) -> hsi.ModalityExtraction:
    """Block-wise extraction, band mask and clip for one raster, with progress in the log."""
    logger = get_run_logger()
    step = {"next": 0.0}

    def on_window(done: int, total: int) -> None:
        if done / total >= step["next"] or done == total:
            logger.info("%s: %d/%d windows read (%.0f%%)", spec.name, done, total, 100 * done / total)
            step["next"] = done / total + 0.25

    result = hsi.extract_modality(spec, points, params, transmission, on_window=on_window)
    logger.info("%s: present at %d of %d points", spec.name, int(np.sum(result.status == 0)), points.size)
    return result


@task(name="split-and-assemble", cache_policy=NO_CACHE)
def assemble_task(
    points: hsi.SampledPoints,
    extractions: list[hsi.ModalityExtraction],
    params: HSICurationParams,
    inputs: HSIInputs,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Drop points absent everywhere (to rejects), assign stratified folds, package."""
    return hsi.assemble_dataset(points, extractions, params, provenance=hsi.provenance_for(inputs))


@task(name="publish", cache_policy=NO_CACHE, **io_task_options(retries=1))
def publish_task(ds: xr.Dataset, rejects: xr.Dataset, out: Path, chunk: int) -> Path:
    """Atomic write of the store and its rejects group."""
    return hsi.write_hsi_store(ds, rejects, out, chunk=chunk)


def _artifacts(ds: xr.Dataset, path: Path) -> None:
    table = hsi.table1_frame(ds)
    rows: list[dict[str, Any]] = [
        {"class": str(k), **{str(c): float(v) for c, v in row.items()}} for k, row in table.iterrows()
    ]
    create_table_artifact(key="curate-hsi-table1", table=rows, description=f"Table 1 of {path}")
    hist = ds.attrs["modality_count_histogram"]
    lines = "\n".join(f"| {k} | {v} |" for k, v in enumerate(hist))
    create_markdown_artifact(
        key="curate-hsi-summary",
        markdown=(
            f"# curate-hsi\n\nPublished `{path}`: {ds.attrs['n_samples']} samples, "
            f"{ds.attrs['n_rejected']} rejected.\n\n## Table 1\n\n{hsi.markdown_table(table)}\n\n"
            f"## Modalities per sampled point\n\n| modalities | points |\n|---|---|\n{lines}\n"
        ),
    )


@flow(name="extract-rasters", validate_parameters=False)
def extract_rasters_flow(
    inputs: HSIInputs, points: hsi.SampledPoints, params: HSICurationParams, transmission: Transmission | None
) -> list[hsi.ModalityExtraction]:
    """The per-raster fan-out as a subflow, so it can run on its own (Dask) task runner."""
    futures = [extract_task.submit(spec, points, params, transmission) for spec in inputs.rasters]
    return [f.result() for f in futures]


class HSIJob(NamedTuple):
    """Everything one curate-hsi run needs, whether it came from the catalog or from arguments."""

    inputs: HSIInputs
    params: HSICurationParams
    target: Path
    publish: str | None
    root: str | None


def resolve_job(
    entry: str | None,
    catalog: str,
    inputs: HSIInputs | None,
    params: HSICurationParams | None,
    out: str | None,
    publish: str | None = None,
    root: str | None = None,
) -> HSIJob:
    """Inputs/params/output/publication from a catalog entry, or from direct arguments."""
    if entry is not None:
        cat = load_catalog(catalog)
        cat_inputs, cat_params, cat_out = cat.hsi_job(entry)
        cat_publish, cat_root = cat.publication(entry)
        return HSIJob(
            cat_inputs,
            params or cat_params,
            Path(out) if out else cat_out,
            publish or cat_publish,
            root or cat_root,
        )
    if inputs is None or out is None:
        raise ValueError("give either `entry` (a catalog name) or both `inputs` and `out`")
    return HSIJob(inputs, params or HSICurationParams(), Path(out), publish, root)


@flow(name="curate-hsi", log_prints=True)
def curate_hsi_flow(
    entry: str | None = None,
    catalog: str = "data_catalog.yaml",
    inputs: HSIInputs | None = None,
    params: HSICurationParams | None = None,
    out: str | None = None,
    cluster: str | None = None,
    workers: int = 1,
    publish: str | None = None,
    root: str | None = None,
) -> str:
    """Curate an HSI multi-modality sample dataset; returns the path of the store.

    The store is written atomically at ``out`` (a catalog entry's ``path``); with ``publish``
    (a catalog entry publishes under its own name) it is also published as an immutable
    version in the dataset ``root``, and that version's store path is returned. Rasters are
    extracted concurrently: in threads, or on Dask with ``workers >= 2`` (a local cluster) or
    ``cluster="tcp://host:8786"`` (an existing one).
    """
    inputs, params, target, publish, root = resolve_job(entry, catalog, inputs, params, out, publish, root)
    polygons, report, transmission = load_polygons_task(inputs, params)
    points = sample_points_task(polygons, params, report)
    if uses_dask(cluster, workers):
        extractions = extract_rasters_flow.with_options(task_runner=make_task_runner(cluster, workers))(
            inputs, points, params, transmission
        )
    else:
        futures = [extract_task.submit(spec, points, params, transmission) for spec in inputs.rasters]
        extractions = [f.result() for f in futures]
    ds, rejects = assemble_task(points, extractions, params, inputs)
    path = publish_task(ds, rejects, target, params.sample_chunk)
    _artifacts(ds, path)
    get_run_logger().info("wrote %s", path)
    if publish is None:
        return str(path)
    return publish_version_task(str(path), name=publish, root=root).store
