"""Labelled polygons of the synthetic HSI scene: shapes, placement, the GeoPackage writer."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyogrio
import shapely
from pyproj import Transformer
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box

from pipeline.errors import InputError
from pipeline.synthetic.hsi_layout import (
    CLASS_NAMES,
    CLASSES,
    GAP_M,
    GPKG_TIMESTAMP,
    MIN_DIM_M,
    SITE_CRS,
    SITE_LAT,
    SITE_LON,
    SITE_SIZE_M,
    ClassSpec,
)

FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# --------------------------------------------------------------------------- geometry


@lru_cache(maxsize=1)
def site_centre() -> tuple[float, float]:
    tr = Transformer.from_crs("EPSG:4326", SITE_CRS, always_xy=True)
    x, y = tr.transform(SITE_LON, SITE_LAT)
    return (float(round(x)), float(round(y)))


def site_bounds(scale: float = 1.0) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of the site in :data:`SITE_CRS` metres."""
    cx, cy = site_centre()
    hw, hh = SITE_SIZE_M[0] * scale / 2.0, SITE_SIZE_M[1] * scale / 2.0
    return (cx - hw, cy - hh, cx + hw, cy + hh)


@dataclass(frozen=True)
class ScenePolygons:
    geoms: list[Polygon | MultiPolygon]  # as written (bow-ties invalid), SITE_CRS
    valid: list[Polygon | MultiPolygon]  # repaired, for rendering
    classes: IntArray  # index into CLASS_NAMES
    ids: IntArray  # polygon_id written to the file


def _class_counts(n: int) -> IntArray:
    """Polygons per class: largest-remainder rounding of the class weights."""
    w = np.array([c.weight for c in CLASSES])
    raw = w / w.sum() * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def _local_shape(spec: ClassSpec, rng: np.random.Generator, f: float) -> Polygon:
    """One polygon of a class, centred on the origin, not yet rotated."""
    (a0, a1), (b0, b1) = spec.dims
    if spec.shape == "rect":
        w = max(rng.uniform(a0, a1) * f, MIN_DIM_M)
        length = max(rng.uniform(b0, b1) * f, w)
        return box(-length / 2, -w / 2, length / 2, w / 2)
    radius = max(rng.uniform(a0, a1) * f, MIN_DIM_M / 2)
    theta = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)
    k = np.arange(2, 5)[:, None]
    amp = rng.uniform(0.0, 0.12, 3)[:, None]
    phase = rng.uniform(0.0, 2 * np.pi, 3)[:, None]
    r = radius * (1.0 + (amp * np.cos(k * theta + phase)).sum(axis=0))
    return Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))


def _nominal_area(spec: ClassSpec) -> float:
    (a0, a1), (b0, b1) = spec.dims
    if spec.shape == "rect":
        return (a0 + a1) * (b0 + b1) / 4.0
    return float(np.pi * ((a0 + a1) / 2.0) ** 2)


def _bowtie(rng: np.random.Generator, f: float) -> Polygon:
    """A self-intersecting quadrilateral (two triangles touching at the origin)."""
    a = max(rng.uniform(10.0, 18.0) * f, MIN_DIM_M)
    b = max(rng.uniform(8.0, 14.0) * f, MIN_DIM_M)
    return Polygon([(-a, -b), (a, b), (a, -b), (-a, b)])


def make_polygons(rng: np.random.Generator, n: int, scale: float) -> ScenePolygons:
    """Place ``n`` labelled polygons in the site, largest first, by rejection sampling."""
    counts = _class_counts(n)
    classes = np.repeat(np.arange(len(CLASSES)), counts)
    n_invalid = 1 if n < 100 else 2
    n_multi = min(max(2, round(0.06 * n)), max(n - n_invalid, 0))
    blob_like = [i for i, k in enumerate(classes) if CLASSES[k].name in ("pad muck", "tailings")]
    pool = blob_like if len(blob_like) >= n_invalid else list(range(n))
    bowtie = set(rng.choice(pool, size=min(n_invalid, len(pool)), replace=False).tolist())
    multi_ok = [i for i, k in enumerate(classes) if CLASSES[k].multi and i not in bowtie]
    multi = set(rng.choice(multi_ok, size=min(n_multi, len(multi_ok)), replace=False).tolist())

    x0, y0, x1, y1 = site_bounds(scale)
    area_per_poly = (x1 - x0) * (y1 - y0) / n
    f0 = float(np.clip((area_per_poly / 1350.0) ** 0.75, 0.3, 1.0))  # 1 at the default density
    nominal = np.array(
        [_nominal_area(CLASSES[k]) * (1.5 if i in multi else 1.0) for i, k in enumerate(classes)]
    )
    order = np.argsort(-nominal, kind="stable")

    placed: list[Polygon | MultiPolygon | None] = [None] * n
    valid: list[Polygon | MultiPolygon | None] = [None] * n
    hulls = np.empty(n, dtype=object)
    bounds = np.full((n, 4), np.nan)
    for i in order:
        spec = CLASSES[classes[i]]
        f = f0
        for attempt in range(2000):
            if attempt and attempt % 150 == 0:
                f *= 0.9
            if i in bowtie:
                shape: Polygon | MultiPolygon = _bowtie(rng, f)
            else:
                shape = _local_shape(spec, rng, f)
                if i in multi and attempt < 1000:
                    part = affinity.scale(_local_shape(spec, rng, f), 0.65, 0.65, origin=(0, 0))
                    ra = float(shapely.minimum_bounding_radius(shape))
                    rb = float(shapely.minimum_bounding_radius(part))
                    ang = rng.uniform(0.0, 2 * np.pi)
                    dist = ra + rb + rng.uniform(3.0, 6.0)
                    part = affinity.translate(part, dist * np.cos(ang), dist * np.sin(ang))
                    shape = MultiPolygon([shape, part])
            shape = affinity.rotate(shape, rng.uniform(0.0, 180.0), origin=(0, 0))
            bx0, by0, bx1, by1 = shape.bounds
            lo_x, hi_x = x0 - bx0 + 1.0, x1 - bx1 - 1.0
            lo_y, hi_y = y0 - by0 + 1.0, y1 - by1 - 1.0
            if lo_x >= hi_x or lo_y >= hi_y:
                continue
            shape = affinity.translate(shape, rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y))
            hull = shapely.convex_hull(shape) if i in bowtie else shape
            b = np.asarray(hull.bounds)
            near = (
                (bounds[:, 0] <= b[2] + GAP_M)
                & (bounds[:, 2] >= b[0] - GAP_M)
                & (bounds[:, 1] <= b[3] + GAP_M)
                & (bounds[:, 3] >= b[1] - GAP_M)
            )
            if near.any() and shapely.dwithin(hulls[near], hull, GAP_M).any():
                continue
            placed[i] = shape
            valid[i] = shapely.make_valid(shape) if i in bowtie else shape
            hulls[i] = hull
            bounds[i] = b
            break
        else:
            raise InputError(
                f"could not place {n} non-overlapping polygons in a site of scale {scale}",
                fix="use fewer polygons or a larger scale (the default is 200 polygons at scale 1.0; "
                "about 200 polygons need scale >= 0.5)",
            )
    perm = rng.permutation(n)
    return ScenePolygons(
        geoms=[g for g in (placed[j] for j in perm) if g is not None],
        valid=[g for g in (valid[j] for j in perm) if g is not None],
        classes=classes[perm],
        ids=np.arange(1, n + 1, dtype=np.int64),
    )


def write_polygons(path: Path, polys: ScenePolygons) -> None:
    """Write the labels layer in EPSG:4326 with pinned GeoPackage timestamps."""
    import geopandas as gpd

    tr = Transformer.from_crs(SITE_CRS, "EPSG:4326", always_xy=True)
    geoms = shapely.transform(
        np.asarray(polys.geoms, dtype=object), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    gdf = gpd.GeoDataFrame(
        {
            "class_name": [CLASS_NAMES[k] for k in polys.classes],
            "polygon_id": polys.ids,
        },
        geometry=list(geoms),
        crs="EPSG:4326",
    )
    path.unlink(missing_ok=True)
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_TIMESTAMP})
    try:
        pyogrio.write_dataframe(gdf, path, layer="labels", driver="GPKG", promote_to_multi=False)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})
