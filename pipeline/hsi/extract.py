"""Step 5 of report 3.2: each point's spectrum from one raster; the one place that reads raster pixels.

A point outside the raster's footprint, on nodata or non-finite is *absent* for that
modality (a status code per point), never dropped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pyproj import Transformer

from pipeline.checksums import input_checksums
from pipeline.errors import InputError, NoOverlapError
from pipeline.hsi.sampling import SampledPoints
from pipeline.hsi.spectral import Transmission, band_mask, clip_reflectance
from pipeline.io.raster import (
    GroupRunner,
    footprint_bounds,
    open_raster_info,
    pixel_indices,
    read_pixels,
    run_here,
)
from schemas.hsi import HSICurationParams, RasterSpec

#: Why a modality is absent for a sample (``status`` codes of :class:`ModalityExtraction`).
PRESENT, OUTSIDE, NODATA, NONFINITE, CLIPPED_CONSTANT = 0, 1, 2, 3, 4


STATUS_NAMES = {
    PRESENT: "present",
    OUTSIDE: "outside_footprint",
    NODATA: "nodata",
    NONFINITE: "nonfinite",
    CLIPPED_CONSTANT: "clipped_constant",  # every band at the clip floor or ceiling: no spectrum left
}


ProgressFn = Callable[[str, int, int], None]


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


def extract_modality(
    spec: RasterSpec,
    points: SampledPoints,
    params: HSICurationParams,
    transmission: Transmission | None,
    *,
    workers: int = 1,
    runner: GroupRunner = run_here,
    on_group: Callable[[int, int], None] | None = None,
) -> ModalityExtraction:
    """Steps 5–7 for one raster: block-wise extraction, absent flags, band mask, clip.

    The raster's reads are split into work units for ``workers`` and run by ``runner``
    (in this process by default; a flow passes a Dask runner), see
    :func:`pipeline.io.raster.read_pixels`; the result does not depend on either.
    """
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
    pixels = read_pixels(info, rows, cols, workers=workers, runner=runner, on_group=on_group)
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
    lo, hi = params.clip_range
    present = status == PRESENT
    flat = present & ((values == np.float32(lo)).all(axis=1) | (values == np.float32(hi)).all(axis=1))
    status[flat] = CLIPPED_CONSTANT
    values[flat] = np.nan
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
