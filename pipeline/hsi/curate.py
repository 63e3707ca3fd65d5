"""HSI curation (report section 3.2): labelled polygons + rasters -> multi-modality sample dataset.

The steps are separate functions so a flow can run each as a task; ``curate_hsi``
chains them for library use. Nothing here imports Prefect.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from pyproj import CRS, Transformer

from pipeline.checksums import input_checksums
from pipeline.errors import InputError, NoOverlapError
from pipeline.hsi.folds import stratified_folds
from pipeline.hsi.polygons import PolygonReport, interior_buffer, prepare_polygons, top_classes
from pipeline.hsi.sampling import capped_counts, points_in_polygons, points_outside
from pipeline.hsi.spectral import Transmission, band_mask, clip_reflectance, read_transmission
from pipeline.io.raster import footprint_bounds, open_raster_info, pixel_indices, read_pixels
from pipeline.io.vector import read_polygons
from pipeline.publishing.zarr_io import atomic_publish, fill_array, write_zarr
from pipeline.version import code_version
from schemas.hsi import HSICurationParams, HSIInputs, RasterSpec

SCHEMA_VERSION = "1.0"
KIND = "hsi_samples"

#: Why a modality is absent for a sample (``status`` codes of :class:`ModalityExtraction`).
PRESENT, OUTSIDE, NODATA, NONFINITE = 0, 1, 2, 3
STATUS_NAMES = {PRESENT: "present", OUTSIDE: "outside_footprint", NODATA: "nodata", NONFINITE: "nonfinite"}

ProgressFn = Callable[[str, int, int], None]


def _seed_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per step, so changing one step never shifts another's draws."""
    names = ("targets", "background", "cap", "folds")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, children, strict=True)}


@dataclass
class SampledPoints:
    """Every sampled point (after the per-class cap), in the working CRS."""

    x: np.ndarray
    y: np.ndarray
    label_name: np.ndarray
    polygon_id: np.ndarray
    crs: CRS
    class_names: list[str]
    generated_per_class: dict[str, int]
    report: PolygonReport
    region_bounds: tuple[float, float, float, float]

    @property
    def size(self) -> int:
        return int(self.x.size)


@dataclass
class ModalityExtraction:
    """One raster's spectra at every point: values after scale, band mask and clip."""

    name: str
    sensor: str
    values: np.ndarray  # float32 [n_points, kept_bands], NaN where absent
    status: np.ndarray  # int8 [n_points], see STATUS_NAMES
    wavelengths_nm: np.ndarray  # kept bands
    source_band: np.ndarray  # 1-based band numbers of kept bands
    info: dict[str, object] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)  # provenance of the raster (and its header)


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
    rngs = _seed_streams(params.seed)
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


def extract_modality(
    spec: RasterSpec,
    points: SampledPoints,
    params: HSICurationParams,
    transmission: Transmission | None,
    *,
    on_window: Callable[[int, int], None] | None = None,
) -> ModalityExtraction:
    """Steps 5–7 for one raster: block-wise extraction, absent flags, band mask, clip."""
    info = open_raster_info(
        spec.path,
        wavelengths_nm=spec.wavelengths_nm,
        wavelength_units=spec.wavelength_units,
        scale_factor=spec.scale_factor,
        offset=spec.offset,
        nodata=spec.nodata,
    )
    to_raster = Transformer.from_crs(points.crs, info.crs, always_xy=True)
    rx, ry = to_raster.transform(points.x, points.y)
    rows, cols = pixel_indices(info, np.asarray(rx), np.asarray(ry))
    pixels = read_pixels(info, rows, cols, on_window=on_window)
    if not pixels.inside.any():
        raise NoOverlapError(
            f"raster {spec.name!r} covers none of the {points.size} sampled points "
            f"(raster bounds {footprint_bounds(info)} in {info.crs.to_string()}; "
            f"polygon bounds {points.region_bounds} in {points.crs.to_string()})",
            path=spec.path,
            fix="check the raster's CRS/georeferencing, or leave this raster out",
        )
    assert info.wavelengths_nm is not None
    keep = band_mask(info.wavelengths_nm, spec.sensor, params, transmission)
    if not keep.any():
        raise InputError(
            f"no band of raster {spec.name!r} survives the {spec.sensor} band mask "
            f"(wavelengths {info.wavelengths_nm.min():.0f}–{info.wavelengths_nm.max():.0f} nm)",
            path=spec.path,
            fix="check the sensor type and wavelength units, or the mask ranges",
        )
    raw = pixels.values[:, keep]
    status = np.where(pixels.inside, PRESENT, OUTSIDE).astype(np.int8)
    if info.nodata is not None:
        is_nodata = np.isnan(raw) if math.isnan(info.nodata) else raw == np.asarray(info.nodata, raw.dtype)
        status[pixels.inside & is_nodata.any(axis=1)] = NODATA
    scale = np.asarray(info.scales, dtype=np.float64)[keep]
    offset = np.asarray(info.offsets, dtype=np.float64)[keep]
    values = (raw.astype(np.float64) * scale + offset).astype(np.float32)
    nonfinite = ~np.isfinite(values).all(axis=1)
    status[(status == PRESENT) & nonfinite] = NONFINITE
    values[status != PRESENT] = np.nan
    clip_reflectance(values, *params.clip_range)
    res_x, res_y = abs(info.transform.a), abs(info.transform.e)
    return ModalityExtraction(
        name=spec.name,
        sensor=spec.sensor,
        values=values,
        status=status,
        wavelengths_nm=info.wavelengths_nm[keep],
        source_band=np.flatnonzero(keep) + 1,
        info={
            "path": str(spec.path),
            "driver": info.driver,
            "crs": info.crs.to_string(),
            "resolution": [res_x, res_y],
            "dtype": info.dtype,
            "nodata": None if info.nodata is None else float(info.nodata),
            "scale": sorted(set(info.scales)),
            "offset": sorted(set(info.offsets)),
            "wavelength_source": info.wavelength_source,
            "n_bands": info.count,
            "n_bands_kept": int(keep.sum()),
        },
        checksums=input_checksums({f"raster:{spec.name}": spec.path}),
    )


def _table1(
    labels: np.ndarray, present: np.ndarray, class_names: list[str], modalities: list[str]
) -> dict[str, dict[str, int]]:
    """Samples per class and modality (the report's Table 1)."""
    counts = np.zeros((len(class_names), len(modalities)), dtype=np.int64)
    np.add.at(counts, labels, present.astype(np.int64))
    return {c: {m: int(counts[i, j]) for j, m in enumerate(modalities)} for i, c in enumerate(class_names)}


def assemble_dataset(
    points: SampledPoints,
    extractions: list[ModalityExtraction],
    params: HSICurationParams,
    *,
    provenance: dict[str, object],
) -> tuple[xr.Dataset, xr.Dataset]:
    """Step 8 and packaging: drop points absent everywhere (to rejects), assign folds, build the store."""
    rngs = _seed_streams(params.seed)
    modalities = [e.name for e in extractions]
    status = np.stack([e.status for e in extractions], axis=1)  # [n, M]
    present_all = status == PRESENT
    kept = present_all.any(axis=1)
    labels_all = np.searchsorted(points.class_names, points.label_name).astype(np.int16)
    labels = labels_all[kept]
    folds = stratified_folds(labels, params.n_folds, rngs["folds"])
    present = present_all[kept]
    sample_ids = np.arange(points.size, dtype=np.int64)

    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]] = {}
    coords: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]] = {
        "sample_id": (("sample",), sample_ids[kept], {"description": "id of the sampled point"}),
        "x": (("sample",), points.x[kept], {"units": "m", "description": "easting, working CRS"}),
        "y": (("sample",), points.y[kept], {"units": "m", "description": "northing, working CRS"}),
        "label": (("sample",), labels, {"description": "index into attrs['class_names']"}),
        "label_name": (("sample",), points.label_name[kept].astype(str), {}),
        "fold": (
            ("sample",),
            folds,
            {"description": f"1..{params.n_folds}; {params.n_folds} is the test fold"},
        ),
        "polygon_id": (("sample",), points.polygon_id[kept], {"description": "-1 for background"}),
        "modality": (("modality",), np.array(modalities, dtype=str), {}),
    }
    for e in extractions:
        band = f"band_{e.name}"
        data_vars[e.name] = (
            ("sample", band),
            e.values[kept],
            {"units": "reflectance", "sensor": e.sensor, "description": "NaN where absent"},
        )
        coords[f"wavelength_{e.name}"] = ((band,), e.wavelengths_nm.astype(np.float64), {"units": "nm"})
        coords[f"source_band_{e.name}"] = (
            (band,),
            e.source_band.astype(np.int32),
            {"description": "1-based"},
        )
    data_vars["present"] = (("sample", "modality"), present, {"description": "modality observed the sample"})

    counts_hist = np.bincount(present_all.sum(axis=1), minlength=len(modalities) + 1)
    table1 = _table1(labels, present, points.class_names, modalities)
    totals = {m: int(present[:, j].sum()) for j, m in enumerate(modalities)}
    n_kept = int(kept.sum())
    absent = {
        e.name: {STATUS_NAMES[s]: int(np.sum(e.status == s)) for s in (OUTSIDE, NODATA, NONFINITE)}
        for e in extractions
    }
    attrs: dict[str, object] = {
        "emin_kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "crs": points.crs.to_string(),
        "crs_wkt": points.crs.to_wkt(),
        "class_names": points.class_names,
        "modalities": modalities,
        "sensor_types": {e.name: e.sensor for e in extractions},
        "parameters": params.model_dump(mode="json"),
        "code_version": code_version(),
        "n_samples": n_kept,
        "n_rejected": int(points.size - n_kept),
        "table1_counts": table1,
        "modality_totals": totals,
        "modality_percent_missing": {
            m: round(100.0 * (1 - totals[m] / n_kept), 1) if n_kept else 100.0 for m in modalities
        },
        "modality_count_histogram": counts_hist.tolist(),
        "absent_counts": absent,
        "points_generated_per_class": points.generated_per_class,
        "points_sampled_per_class": {c: int(np.sum(points.label_name == c)) for c in points.class_names},
        "rasters": {e.name: e.info for e in extractions},
        "polygons": points.report.as_attrs(),
        **provenance,
    }
    variables = {k: xr.Variable(*v) for k, v in data_vars.items()}
    ds = xr.Dataset(variables, coords={k: xr.Variable(*v) for k, v in coords.items()}, attrs=attrs)
    rejects = _rejects_table(points, status, labels_all, modalities, kept)
    return ds, rejects


def _rejects_table(
    points: SampledPoints, status: np.ndarray, labels: np.ndarray, modalities: list[str], kept: np.ndarray
) -> xr.Dataset:
    """Every sampled point that is not in the dataset, with the reason per modality."""
    gone = np.flatnonzero(~kept)
    st = status[gone]
    reason = np.where((st == OUTSIDE).all(axis=1), "outside_all_footprints", "no_valid_pixel")
    names = np.array([STATUS_NAMES[s] for s in range(4)], dtype=object)
    detail = np.full(gone.size, "", dtype=object)
    for j, m in enumerate(modalities):  # a loop over modalities, vectorised over points
        detail = detail + (";" if j else "") + m + "=" + names[st[:, j]]
    return xr.Dataset(
        {
            "sample_id": ("reject", gone.astype(np.int64)),
            "x": ("reject", points.x[gone]),
            "y": ("reject", points.y[gone]),
            "label": ("reject", labels[gone]),
            "label_name": ("reject", points.label_name[gone].astype(str)),
            "polygon_id": ("reject", points.polygon_id[gone]),
            "reason": ("reject", reason.astype(str)),
            "detail": ("reject", detail.astype(str)),
        },
        attrs={"description": "sampled points absent from every modality, with the reason per modality"},
    )


def provenance_for(inputs: HSIInputs, extractions: list[ModalityExtraction]) -> dict[str, object]:
    """Input paths and checksums recorded in the dataset attrs.

    Raster checksums come from the extractions (computed where each raster was read, so a
    flow's fan-out does that work on its workers); polygons and transmission are summed here.
    """
    paths = {"polygons": inputs.polygons, **{f"raster:{r.name}": r.path for r in inputs.rasters}}
    local: dict[str, Path] = {"polygons": inputs.polygons}
    if inputs.transmission is not None:
        paths["transmission"] = local["transmission"] = inputs.transmission
    checksums = input_checksums(local)
    for e in extractions:
        checksums.update(e.checksums)
    return {
        "inputs": {k: str(v) for k, v in paths.items()},
        "input_checksums": dict(sorted(checksums.items())),
    }


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


def write_hsi_store(ds: xr.Dataset, rejects: xr.Dataset, out: str | Path, *, chunk: int) -> Path:
    """Publish the dataset and its rejects group atomically at ``out``."""
    target = Path(out)
    with atomic_publish(target) as tmp:
        create_hsi_store(ds, rejects, tmp, chunk=chunk)
    return target


def create_hsi_store(
    ds: xr.Dataset, rejects: xr.Dataset, path: str | Path, *, chunk: int, defer_modalities: bool = False
) -> None:
    """Write the dataset and its rejects group at ``path`` (no atomicity here).

    With ``defer_modalities`` the modality arrays get their metadata only; fill each
    with :func:`fill_modality` (a flow does that on the workers that extracted them).
    """
    deferred = list(ds.attrs["modalities"]) if defer_modalities else []
    write_zarr(ds, path, chunks={"sample": chunk}, deferred=deferred)
    write_zarr(rejects, path, chunks={"reject": chunk}, group="rejects")


def fill_modality(path: str | Path, extraction: ModalityExtraction, sample_ids: np.ndarray) -> None:
    """Write one deferred modality array: the extraction's values at the dataset's ``sample_id``s."""
    fill_array(path, extraction.name, extraction.values[sample_ids])


def table1_frame(ds: xr.Dataset) -> pd.DataFrame:
    """Table 1 (samples per class and modality) with totals and % missing, from store attrs."""
    table = pd.DataFrame(ds.attrs["table1_counts"]).T
    table = table[list(ds.attrs["modalities"])].astype(np.float64)
    table.loc["Total"] = table.sum()
    missing = pd.Series(ds.attrs["modality_percent_missing"])[table.columns]
    table.loc["% Missing"] = missing
    return table


def curate_hsi(
    inputs: HSIInputs, params: HSICurationParams, *, out: str | Path, progress: ProgressFn | None = None
) -> Path:
    """Run every step in order and publish; the library equivalent of the ``curate-hsi`` flow."""

    def tick(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    transmission = load_transmission(inputs, params)
    tick("polygons", 0, 1)
    polygons, report = load_polygons(inputs, params)
    points = sample_points(polygons, params, report)
    tick("polygons", 1, 1)
    extractions = [
        extract_modality(spec, points, params, transmission, on_window=partial(tick, f"extract {spec.name}"))
        for spec in inputs.rasters
    ]
    ds, rejects = assemble_dataset(
        points, extractions, params, provenance=provenance_for(inputs, extractions)
    )
    path = write_hsi_store(ds, rejects, out, chunk=params.sample_chunk)
    tick("publish", 1, 1)
    return path


def summary_json(ds: xr.Dataset) -> str:
    """A compact JSON summary (counts, histogram) for logs and artifacts."""
    return json.dumps(
        {
            "n_samples": ds.attrs["n_samples"],
            "n_rejected": ds.attrs["n_rejected"],
            "modality_count_histogram": ds.attrs["modality_count_histogram"],
        }
    )


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index as the first column)."""
    header = "| " + " | ".join(["", *map(str, table.columns)]) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    body = [
        "| " + " | ".join([str(idx), *(f"{v:g}" if isinstance(v, float) else str(v) for v in row)]) + " |"
        for idx, row in zip(table.index, table.itertuples(index=False), strict=True)
    ]
    return "\n".join([header, rule, *body])
