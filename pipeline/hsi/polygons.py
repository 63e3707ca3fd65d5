"""Polygon preparation: validation and repair, class names, reprojection, interior buffer, top-N."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pipeline.errors import EminWarning, SchemaError


@dataclass
class PolygonReport:
    """What polygon preparation changed, for the dataset's provenance attrs."""

    n_input: int = 0
    repaired_ids: list[int] = field(default_factory=list)
    null_geometry_ids: list[int] = field(default_factory=list)
    emptied_by_buffer_ids: list[int] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    kept_classes: list[str] = field(default_factory=list)

    def as_attrs(self) -> dict[str, object]:
        return {
            "n_input_polygons": self.n_input,
            "repaired_polygon_ids": self.repaired_ids,
            "null_geometry_polygon_ids": self.null_geometry_ids,
            "emptied_by_buffer_polygon_ids": self.emptied_by_buffer_ids,
            "classes_emptied_by_buffer": self.empty_classes,
        }


def class_names(gdf: gpd.GeoDataFrame, class_column: str, *, path: str) -> pd.Series:
    """Class names as strings; integer codes become their decimal text, nulls are an error."""
    col = gdf[class_column]
    missing = col.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)[:10].tolist()
        raise SchemaError(
            f"class column {class_column!r} has {int(missing.sum())} empty values (rows {rows}...)",
            path=path,
            fix="label every polygon or delete the unlabelled ones",
        )
    if pd.api.types.is_float_dtype(col):
        if not np.all(np.mod(col.to_numpy(), 1) == 0):
            raise SchemaError(
                f"class column {class_column!r} holds non-integer numbers; class labels must be names or codes",
                path=path,
                fix="use a text column of class names (or integer class codes)",
            )
        col = col.astype(np.int64)
    if not (pd.api.types.is_integer_dtype(col) or pd.api.types.is_string_dtype(col) or col.dtype == object):
        raise SchemaError(
            f"class column {class_column!r} has dtype {col.dtype}; expected text names or integer codes",
            path=path,
            fix="point class_column at the column that holds the class names",
        )
    names = col.astype(str).str.strip()
    if (names == "").any():
        raise SchemaError(
            f"class column {class_column!r} has blank names", path=path, fix="label every polygon"
        )
    return names


def prepare_polygons(
    gdf: gpd.GeoDataFrame, *, class_column: str, working_crs: str | None, path: str, report: PolygonReport
) -> gpd.GeoDataFrame:
    """Repair invalid geometries (warning, never dropping), reproject to a metric CRS.

    Returns columns ``polygon_id``, ``class_name``, ``geometry`` in the working CRS.
    """
    report.n_input = len(gdf)
    ids = gdf["polygon_id"].to_numpy(np.int64) if "polygon_id" in gdf.columns else np.arange(len(gdf))
    out = gpd.GeoDataFrame(
        {"polygon_id": ids, "class_name": class_names(gdf, class_column, path=path).to_numpy()},
        geometry=gdf.geometry.to_numpy(),
        crs=gdf.crs,
    )
    null = out.geometry.isna().to_numpy() | shapely.is_empty(out.geometry.to_numpy())
    if null.any():
        report.null_geometry_ids = ids[null].tolist()
        warnings.warn(
            f"{path}: {int(null.sum())} polygons have no geometry (ids {report.null_geometry_ids[:10]}); "
            "they cannot be sampled and are listed in the dataset attrs",
            EminWarning,
            stacklevel=2,
        )
        out = out.loc[~null]
    invalid = ~shapely.is_valid(out.geometry.to_numpy())
    if invalid.any():
        report.repaired_ids = out["polygon_id"].to_numpy()[invalid].tolist()
        reasons = shapely.is_valid_reason(out.geometry.to_numpy()[invalid])
        warnings.warn(
            f"{path}: repaired {int(invalid.sum())} invalid polygons with make_valid "
            f"(ids {report.repaired_ids[:10]}: {list(reasons[:3])})",
            EminWarning,
            stacklevel=2,
        )
        repaired = shapely.make_valid(out.geometry.to_numpy()[invalid])
        out.loc[invalid, "geometry"] = _polygonal_part(repaired)
    crs = working_crs or out.estimate_utm_crs()
    out = out.to_crs(crs)
    if not out.crs.is_projected:
        raise SchemaError(
            f"working CRS {out.crs} is not projected (metres are needed for densities and buffers)",
            path=path,
            fix="set working_crs to a metric CRS such as a UTM zone",
        )
    return out.reset_index(drop=True)


def _polygonal_part(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygonal parts of repaired geometries (make_valid may add lines/points)."""
    parts, index = shapely.get_parts(geoms, return_index=True)
    keep = np.isin(shapely.get_type_id(parts), (3, 6))
    merged = [shapely.union_all(parts[keep & (index == i)]) for i in range(len(geoms))]
    return np.array(merged, dtype=object)


def interior_buffer(
    polygons: gpd.GeoDataFrame, distance_m: float, *, report: PolygonReport
) -> gpd.GeoDataFrame:
    """Shrink each polygon by ``distance_m``; polygons that vanish are recorded, not silently lost."""
    buffered = polygons.copy()
    if distance_m > 0:
        buffered["geometry"] = shapely.buffer(polygons.geometry.to_numpy(), -distance_m)
    empty = shapely.is_empty(buffered.geometry.to_numpy())
    report.emptied_by_buffer_ids = buffered.loc[empty, "polygon_id"].tolist()
    before = set(polygons["class_name"])
    buffered = buffered.loc[~empty].reset_index(drop=True)
    emptied = sorted(before - set(buffered["class_name"]))
    if emptied:
        report.empty_classes = emptied
        warnings.warn(
            f"classes {emptied} have no polygon left after a {distance_m} m interior buffer; "
            "they are left out (recorded in attrs `classes_emptied_by_buffer`)",
            EminWarning,
            stacklevel=2,
        )
    return buffered


def top_classes(polygons: gpd.GeoDataFrame, n: int, *, rank_by: str) -> list[str]:
    """The ``n`` most populous classes by polygon count or area (ties broken by name)."""
    areas = polygons.geometry.area.groupby(polygons["class_name"]).sum()
    counts = polygons.groupby("class_name").size()
    table = pd.DataFrame({"count": counts, "area": areas})
    primary, secondary = ("count", "area") if rank_by == "count" else ("area", "count")
    table = table.reset_index().sort_values(
        [primary, secondary, "class_name"], ascending=[False, False, True], kind="stable"
    )
    return table["class_name"].head(n).tolist()
