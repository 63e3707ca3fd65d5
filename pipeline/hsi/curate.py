"""HSI curation (report section 3.2): labelled polygons + rasters -> multi-modality sample dataset.

The steps are separate functions so a flow can run each as a task; ``curate_hsi``
chains them for library use. Nothing here imports Prefect.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from pipeline.errors import InputError
from pipeline.hsi.extract import ProgressFn, extract_modality
from pipeline.hsi.polygons import PolygonReport, interior_buffer, prepare_polygons, top_classes
from pipeline.hsi.sampling import (
    SampledPoints,
    capped_counts,
    points_in_polygons,
    points_outside,
    seed_streams,
)
from pipeline.hsi.spectral import Transmission, read_transmission
from pipeline.hsi.store import KIND, assemble_dataset, provenance_for, write_hsi_store
from pipeline.io.raster import open_raster_info
from pipeline.io.vector import read_polygons
from pipeline.publishing.zarr_io import check_target, target_lock
from schemas.hsi import HSICurationParams, HSIInputs


def load_polygons(inputs: HSIInputs, params: HSICurationParams) -> tuple[gpd.GeoDataFrame, PolygonReport]:
    """Step 1: read, validate, repair and reproject the labelled polygons."""
    report = PolygonReport()
    raw = read_polygons(
        inputs.polygons, class_column=inputs.class_column, layer=inputs.layer, assume_crs=inputs.polygons_crs
    )
    if params.background_class in set(raw[inputs.class_column].astype(str)):
        raise InputError(
            f"a polygon class is named {params.background_class!r}, the name reserved for background points",
            path=inputs.polygons,
            fix="rename that class or set background_class to another name",
        )
    polygons = prepare_polygons(
        raw,
        class_column=inputs.class_column,
        working_crs=params.working_crs,
        path=str(inputs.polygons),
        report=report,
    )
    return polygons, report


def sample_points(
    polygons: gpd.GeoDataFrame, params: HSICurationParams, report: PolygonReport
) -> SampledPoints:
    """Steps 2–4: interior buffer, top-N classes, density sampling, per-class cap.

    The cap is applied to the per-polygon counts before any point is drawn (see
    :func:`pipeline.hsi.sampling.capped_counts`), so large scenes never materialise the points
    the cap would discard.
    """
    rngs = seed_streams(params.seed)
    buffered = interior_buffer(polygons, params.interior_buffer_m, report=report)
    use_background = params.background_density_per_m2 > 0
    n_targets = params.n_classes - (1 if use_background else 0)
    kept = top_classes(buffered, n_targets, rank_by=params.class_rank_by) if n_targets > 0 else []
    report.kept_classes = kept
    class_names = sorted([*kept, params.background_class] if use_background else kept)
    targets = buffered.loc[buffered["class_name"].isin(kept)].reset_index(drop=True)
    geoms = targets.geometry.to_numpy()
    counts = np.rint(shapely.area(geoms) * params.target_density_per_m2).astype(np.int64)
    classes = targets["class_name"].to_numpy().astype(str)
    generated = {c: int(counts[classes == c].sum()) for c in kept}
    kept_counts = capped_counts(counts, classes, params.max_points_per_class, rngs["cap"])
    x, y, owner = points_in_polygons(geoms, kept_counts, rngs["targets"])
    names = targets["class_name"].to_numpy()[owner]
    pids = targets["polygon_id"].to_numpy(np.int64)[owner]
    minx, miny, maxx, maxy = polygons.total_bounds
    if use_background:
        region = shapely.box(minx, miny, maxx, maxy)
        everything = shapely.union_all(polygons.geometry.to_numpy())
        outside_area = region.area - shapely.intersection(region, everything).area
        n_bg = int(np.rint(outside_area * params.background_density_per_m2))
        generated[params.background_class] = n_bg
        n_keep = min(n_bg, params.max_points_per_class)  # a uniform subset of uniform points
        bx, by = points_outside(region, everything, n_keep, rngs["background"])
        x, y = np.concatenate([x, bx]), np.concatenate([y, by])
        names = np.concatenate([names, np.full(bx.size, params.background_class, dtype=object)])
        pids = np.concatenate([pids, np.full(bx.size, -1, dtype=np.int64)])
    names = names.astype(str)
    # order by label (alphabetical class name), keeping draw order within a class
    order = np.argsort(np.searchsorted(class_names, names), kind="stable")
    return SampledPoints(
        x=x[order],
        y=y[order],
        label_name=names[order],
        polygon_id=pids[order],
        crs=CRS.from_user_input(polygons.crs),
        class_names=class_names,
        generated_per_class={c: generated[c] for c in class_names},
        report=report,
        region_bounds=(float(minx), float(miny), float(maxx), float(maxy)),
    )


def load_transmission(inputs: HSIInputs, params: HSICurationParams) -> Transmission | None:
    """The transmission profile, required when a SWIR raster is masked by transmission."""
    if inputs.transmission is not None:
        return read_transmission(inputs.transmission)
    if params.min_transmission > 0 and any(r.sensor == "SWIR" for r in inputs.rasters):
        raise InputError(
            "SWIR rasters are masked by atmospheric transmission but no profile was given",
            fix="give `transmission:` in the catalog / --transmission FILE, or set min_transmission: 0",
        )
    return None


def preflight(inputs: HSIInputs, params: HSICurationParams) -> None:
    """Cheap checks of every input before any work (or any Prefect task) starts.

    Reads the transmission profile, the polygon layer and every raster's header, so that a
    deterministic input error is reported once, as one clear message, instead of from inside
    a task run. Raises the same :class:`~pipeline.errors.InputError` the full run would.
    """
    load_transmission(inputs, params)
    load_polygons(inputs, params)
    for spec in inputs.rasters:
        open_raster_info(
            spec.path,
            wavelengths_nm=spec.wavelengths_nm,
            wavelength_units=spec.wavelength_units,
            scale_factor=spec.scale_factor,
            offset=spec.offset,
            nodata=spec.nodata,
        )


def curate_hsi(
    inputs: HSIInputs,
    params: HSICurationParams,
    *,
    out: str | Path,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
    root: str | Path | None = None,
) -> Path:
    """Run every step in order and write the store at ``out``; the library equivalent of the
    ``curate-hsi`` flow (which also publishes a version when asked).

    ``out`` must not exist, be an empty folder, or (with ``overwrite``) hold an HSI store;
    it is checked before any work and written last, atomically (see ``check_target``).
    """
    check_target(Path(out), kind=KIND, overwrite=overwrite, root=root)

    def tick(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    transmission = load_transmission(inputs, params)
    tick("polygons", 0, 1)
    polygons, report = load_polygons(inputs, params)
    points = sample_points(polygons, params, report)
    tick("polygons", 1, 1)
    extractions = [
        extract_modality(spec, points, params, transmission, on_group=partial(tick, f"extract {spec.name}"))
        for spec in inputs.rasters
    ]
    ds, rejects = assemble_dataset(
        points, extractions, params, provenance=provenance_for(inputs, extractions)
    )
    with target_lock(out):
        path = write_hsi_store(ds, rejects, out, chunk=params.sample_chunk, overwrite=overwrite, root=root)
    tick("publish", 1, 1)
    return path
