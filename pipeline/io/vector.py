"""Vector I/O: read labelled polygons from any OGR file with clear errors."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio

from pipeline.errors import CRSError, InputError, MissingInputError, SchemaError


def read_polygons(
    path: str | Path, *, class_column: str, layer: str | None = None, assume_crs: str | None = None
) -> gpd.GeoDataFrame:
    """Read labelled polygons; the class column must exist and the layer must have a CRS."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError("polygon file not found", path=path, fix="check the `polygons` path")
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise InputError(f"cannot read polygons ({exc})", path=path, fix="give any OGR vector file") from exc
    if len(gdf) == 0:
        raise SchemaError(
            "polygon layer has no features",
            path=path,
            fix="give a file (or --layer) holding the labelled polygons",
        )
    kinds = sorted(set(gdf.geometry.geom_type.dropna().astype(str)) - {"Polygon", "MultiPolygon"})
    if kinds:
        raise SchemaError(
            f"polygon layer holds {kinds} geometries; labelled areas must be Polygon/MultiPolygon",
            path=path,
            fix="give the polygon layer (buffer points/lines into polygons first, e.g. with ogr2ogr)",
        )
    if class_column not in gdf.columns:
        columns = [c for c in gdf.columns if c != gdf.geometry.name]
        raise SchemaError(
            f"class column {class_column!r} not found; columns are {columns}",
            path=path,
            fix="pass the right --class-column / `class_column` in the catalog",
        )
    if gdf.crs is None:
        if assume_crs is None:
            raise CRSError(
                "polygon layer has no CRS",
                path=path,
                fix="write one into the file (e.g. `ogr2ogr -a_srs EPSG:4326 out.gpkg in.gpkg`) "
                "or set `polygons_crs` in the catalog entry",
            )
        gdf = gdf.set_crs(assume_crs)
    return gdf
