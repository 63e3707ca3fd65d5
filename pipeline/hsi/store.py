"""The HSI sample dataset: assembly of the per-modality extractions, Table 1, rejects, provenance,
and the Zarr working-copy writes (docs/format.md).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from pipeline.checksums import input_checksums
from pipeline.errors import EminWarning, NoOverlapError
from pipeline.hsi.extract import (
    CLIPPED_CONSTANT,
    NODATA,
    NONFINITE,
    OUTSIDE,
    PRESENT,
    STATUS_NAMES,
    ModalityExtraction,
)
from pipeline.hsi.folds import stratified_folds
from pipeline.hsi.sampling import SampledPoints, seed_streams
from pipeline.publishing.codes import FORMAT_VERSIONS, category_attrs, code_dtype, coded
from pipeline.publishing.contract import HSI_REJECT_REASONS, validate_hsi_store
from pipeline.publishing.zarr_io import fill_array, write_atomically, write_files, write_zarr
from pipeline.version import code_version
from schemas.hsi import HSICurationParams, HSIInputs

SCHEMA_VERSION = FORMAT_VERSIONS[-1]


KIND = "hsi_samples"


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
    """Step 8 and packaging: drop points absent everywhere (to rejects), assign folds, build the store.

    A little over 80 lines: it is one straight sequence of array assemblies (one per store
    variable, in the order of docs/format.md), which reads best in one place.
    """
    rngs = seed_streams(params.seed)
    modalities = [e.name for e in extractions]
    status = np.stack([e.status for e in extractions], axis=1)  # [n, M]
    present_all = status == PRESENT
    kept = present_all.any(axis=1)
    labels_all = np.searchsorted(points.class_names, points.label_name).astype(np.int16)
    labels = labels_all[kept]
    folds = stratified_folds(labels, params.n_folds, rngs["folds"])
    present = present_all[kept]
    sample_ids = np.arange(points.size, dtype=np.int64)
    label_attrs = {"description": "index into attrs['class_names']", **category_attrs(points.class_names)}

    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, object]]] = {}
    coords: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, object]]] = {
        "sample_id": (("sample",), sample_ids[kept], {"description": "id of the sampled point"}),
        "x": (("sample",), points.x[kept], {"units": "m", "description": "easting, working CRS"}),
        "y": (("sample",), points.y[kept], {"units": "m", "description": "northing, working CRS"}),
        "label": (("sample",), labels, label_attrs),
        "fold": (
            ("sample",),
            folds,
            {"description": f"1..{params.n_folds}; {params.n_folds} is the test fold"},
        ),
        "polygon_id": (("sample",), points.polygon_id[kept], {"description": "-1 for background"}),
        "modality": _modality_coord(modalities),
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
        e.name: {
            STATUS_NAMES[s]: int(np.sum(e.status == s))
            for s in (OUTSIDE, NODATA, NONFINITE, CLIPPED_CONSTANT)
        }
        for e in extractions
    }
    quality = _quality_warnings(extractions)
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
        "quality_warnings": quality,
        **provenance,
    }
    if n_kept == 0:
        reasons = {m: {k: v for k, v in a.items() if v} for m, a in absent.items()}
        raise NoOverlapError(
            f"none of the {points.size} sampled points has a valid pixel in any raster "
            f"(absent per modality: {reasons}); refusing to write a dataset with 0 samples",
            path=", ".join(str(e.info.get("path", e.name)) for e in extractions),
            fix="check that the rasters cover the polygons and hold valid (non-nodata) reflectances",
        )
    variables = {k: xr.Variable(*v) for k, v in data_vars.items()}
    ds = xr.Dataset(variables, coords={k: xr.Variable(*v) for k, v in coords.items()}, attrs=attrs)
    rejects = _rejects_table(
        points, status, xr.Variable(("reject",), labels_all, label_attrs), modalities, kept
    )
    return ds, rejects


def _modality_coord(modalities: list[str]) -> tuple[tuple[str, ...], np.ndarray, dict[str, object]]:
    """The ``modality`` coordinate: codes 0..M-1 naming the modalities in catalog order."""
    return (
        ("modality",),
        np.arange(len(modalities), dtype=code_dtype(len(modalities))),
        category_attrs(modalities),
    )


#: A modality with more than this share of its in-footprint points clipped to a constant is warned about.
CLIPPED_WARN_SHARE = 0.05


def _quality_warnings(extractions: list[ModalityExtraction]) -> list[str]:
    """EminWarnings for suspicious modalities (also returned, for the store attrs)."""
    found: list[str] = []
    for e in extractions:
        inside = int(np.sum(e.status != OUTSIDE))
        flat = int(np.sum(e.status == CLIPPED_CONSTANT))
        if inside and flat / inside > CLIPPED_WARN_SHARE:
            msg = (
                f"{e.info.get('path', e.name)}: {flat} of {inside} in-footprint spectra of modality {e.name!r} "
                f"are constant after clipping to the reflectance range (all at the floor or ceiling) and were "
                "marked absent (status clipped_constant); check the raster's scale factor/offset and units"
            )
            warnings.warn(msg, EminWarning, stacklevel=3)
            found.append(msg)
    return found


def _rejects_table(
    points: SampledPoints, status: np.ndarray, labels: xr.Variable, modalities: list[str], kept: np.ndarray
) -> xr.Dataset:
    """Every sampled point that is not in the dataset, with why (overall, and per modality)."""
    gone = np.flatnonzero(~kept)
    st = status[gone]
    reason, reason_attrs = coded(
        np.where((st == OUTSIDE).all(axis=1), "outside_all_footprints", "no_valid_pixel"), HSI_REJECT_REASONS
    )
    status_names = [STATUS_NAMES[s] for s in range(len(STATUS_NAMES))]
    return xr.Dataset(
        {
            "sample_id": ("reject", gone.astype(np.int64)),
            "x": ("reject", points.x[gone]),
            "y": ("reject", points.y[gone]),
            "label": labels[gone],
            "polygon_id": ("reject", points.polygon_id[gone]),
            "reason": ("reject", reason, reason_attrs),
            "status": (
                ("reject", "modality"),
                st.astype(code_dtype(len(status_names))),
                {"description": "per modality: present or why absent", **category_attrs(status_names)},
            ),
        },
        coords={"modality": _modality_coord(modalities)},
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


def write_hsi_store(
    ds: xr.Dataset,
    rejects: xr.Dataset,
    out: str | Path,
    *,
    chunk: int,
    overwrite: bool = False,
    root: str | Path | None = None,
) -> Path:
    """Write the dataset and its rejects group atomically at ``out`` (see ``write_atomically``)."""
    target = Path(out)
    with write_atomically(
        target, kind=KIND, overwrite=overwrite, root=root, validate=validate_hsi_store
    ) as tmp:
        create_hsi_store(ds, rejects, tmp, chunk=chunk)
    return target


def create_hsi_store(
    ds: xr.Dataset, rejects: xr.Dataset, path: str | Path, *, chunk: int, defer_modalities: bool = False
) -> None:
    """Write the dataset and its rejects group at ``path`` (no atomicity here).

    With ``defer_modalities`` the modality arrays get their metadata only; fill each
    with :func:`fill_modality` (a flow does that on the workers that extracted them).
    """
    if not defer_modalities:
        write_zarr(ds, path, chunks={"sample": chunk})
        write_zarr(rejects, path, chunks={"reject": chunk}, group="rejects")
        return
    # only metadata and small arrays: written in memory, then the files at once (write_files)
    files: dict[str, Any] = {}
    memory = zarr.storage.MemoryStore(files)
    write_zarr(ds, memory, chunks={"sample": chunk}, deferred=list(ds.attrs["modalities"]))
    write_zarr(rejects, memory, chunks={"reject": chunk}, group="rejects")
    Path(path).mkdir(parents=True, exist_ok=True)
    write_files(files, Path(path))


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


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index as the first column)."""
    header = "| " + " | ".join(["", *map(str, table.columns)]) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    body = [
        "| " + " | ".join([str(idx), *(f"{v:g}" if isinstance(v, float) else str(v) for v in row)]) + " |"
        for idx, row in zip(table.index, table.itertuples(index=False), strict=True)
    ]
    return "\n".join([header, rule, *body])
