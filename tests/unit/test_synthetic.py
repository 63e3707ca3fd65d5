"""Unit tests for the synthetic UNESE-like HSI scene generator (pipeline.synthetic.hsi_scene)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import Transformer

from pipeline.synthetic.hsi_scene import (
    CLASS_NAMES,
    SITE_CRS,
    HSIScene,
    generate_hsi_scene,
    site_bounds,
)

SCALE = 0.3
N_POLYGONS = 30


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> HSIScene:
    return generate_hsi_scene(tmp_path_factory.mktemp("scene_a"), seed=3, n_polygons=N_POLYGONS, scale=SCALE)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wavelengths_nm(src: rasterio.DatasetReader) -> np.ndarray:
    """Band wavelengths from the file's metadata, converted to nm."""
    if src.driver == "ENVI":
        tags = src.tags(ns="ENVI")
        values = [float(v) for v in tags["wavelength"].strip("{} ").split(",")]
        units = tags["wavelength_units"]
    else:
        values = [float(src.tags(i)["wavelength"]) for i in range(1, src.count + 1)]
        units = src.tags(1)["wavelength_units"]
    factor = {"nanometers": 1.0, "micrometers": 1000.0}[units.lower()]
    return np.asarray(values) * factor


def test_layout_and_files(scene: HSIScene) -> None:
    assert scene.polygons == scene.root / "polygons.gpkg"
    assert scene.transmission == scene.root / "transmission.csv"
    assert scene.class_column == "class_name"
    assert [r.name for r in scene.rasters] == ["VNIR1", "VNIR2", "VNIR3", "SWIR1", "SWIR2", "SWIR3"]
    assert [r.sensor for r in scene.rasters] == ["VNIR"] * 3 + ["SWIR"] * 3
    names = {r.name: r.path.name for r in scene.rasters}
    assert names == {
        "VNIR1": "vnir1.tif",
        "VNIR2": "vnir2.img",
        "VNIR3": "vnir3.tif",
        "SWIR1": "swir1.tif",
        "SWIR2": "swir2.img",
        "SWIR3": "swir3.tif",
    }
    for extra in ("vnir2.hdr", "swir2.hdr", "README.md"):
        assert (scene.root / extra).is_file()
    assert "synthetic" in (scene.root / "README.md").read_text().lower()
    drivers = set()
    for r in scene.rasters:
        with rasterio.open(r.path) as src:
            drivers.add(src.driver)
            assert src.crs is not None and src.crs.is_projected
            assert src.nodata == -9999.0
    assert drivers == {"GTiff", "ENVI"}


def test_polygons(scene: HSIScene) -> None:
    info = pyogrio.read_info(scene.polygons, layer="labels")
    assert info["crs"] == "EPSG:4326"
    gdf = pyogrio.read_dataframe(scene.polygons, layer="labels")
    assert len(gdf) == N_POLYGONS
    assert set(gdf["class_name"]) <= set(CLASS_NAMES)
    assert gdf["polygon_id"].is_unique and np.issubdtype(gdf["polygon_id"].dtype, np.integer)
    counts = gdf["class_name"].value_counts()
    assert counts.nunique() > 2  # class frequencies differ
    geoms = gdf.geometry.to_numpy()
    assert 1 <= (~shapely.is_valid(geoms)).sum() <= 2
    assert (shapely.get_num_geometries(geoms) > 1).sum() >= 1  # some MultiPolygons
    # in metres: repaired polygons do not overlap and mostly survive a 1.5 m interior buffer
    metric = gdf.to_crs(SITE_CRS).geometry.to_numpy()
    repaired = shapely.make_valid(metric)
    left, right = shapely.STRtree(repaired).query(repaired, predicate="intersects")
    assert (left != right).sum() == 0
    inner = shapely.buffer(repaired, -1.5)
    assert (~shapely.is_empty(inner)).mean() >= 0.9
    x0, y0, x1, y1 = site_bounds(SCALE)
    bx0, by0, bx1, by1 = shapely.total_bounds(repaired)
    assert x0 - 1 <= bx0 and bx1 <= x1 + 1 and y0 - 1 <= by0 and by1 <= y1 + 1


def test_wavelengths_units_scales(scene: HSIScene) -> None:
    units_seen = set()
    for r in scene.rasters:
        with rasterio.open(r.path) as src:
            wl = _wavelengths_nm(src)
            assert len(wl) == src.count and np.all(np.diff(wl) > 0)
            lo, hi = (380.0, 1020.0) if r.sensor == "VNIR" else (880.0, 2520.0)
            assert lo <= wl.min() and wl.max() <= hi, (r.name, wl.min(), wl.max())
            if r.sensor == "VNIR":
                assert 60 <= src.count <= 100
            else:
                assert 100 <= src.count <= 150
            tags = src.tags(ns="ENVI") if src.driver == "ENVI" else src.tags(1)
            units_seen.add(tags["wavelength_units"])
            if src.dtypes[0] == "int16":
                assert np.allclose(src.scales, 1e-4)
            else:
                assert src.dtypes[0] == "float32"
            if src.driver == "GTiff":
                assert src.block_shapes[0] == (256, 256)
                assert src.compression is not None and src.compression.name == "deflate"
    assert units_seen == {"Nanometers", "Micrometers"}
    dtypes = []
    for r in scene.rasters:
        with rasterio.open(r.path) as src:
            dtypes.append(src.dtypes[0])
    assert dtypes.count("int16") == 1


def test_reflectance_values(scene: HSIScene) -> None:
    nan_rasters = 0
    for r in scene.rasters:
        with rasterio.open(r.path) as src:
            data = src.read().astype(np.float64)
            valid = data[0] != src.nodata
            assert 0.1 < valid.mean() < 0.95  # nodata border and outside the strip
            assert not valid[0].any() and not valid[-1].any()
            assert not valid[:, 0].any() and not valid[:, -1].any()
            pix = data[:, valid] * src.scales[0]
            nan_pixels = np.isnan(pix).all(axis=0)
            nan_rasters += bool(nan_pixels.any())
            assert nan_pixels.mean() < 0.01
            med = np.nanmedian(pix[:, ~nan_pixels], axis=1)
            assert 0.02 < np.median(med) < 0.8, r.name
    assert nan_rasters == 1


def test_modality_counts(scene: HSIScene) -> None:
    x0, y0, x1, y1 = site_bounds(SCALE)
    xx, yy = np.meshgrid(np.linspace(x0 + 1, x1 - 1, 60), np.linspace(y0 + 1, y1 - 1, 45))
    xx, yy = xx.ravel(), yy.ravel()
    count = np.zeros(xx.size, dtype=int)
    for r in scene.rasters:
        with rasterio.open(r.path) as src:
            rx, ry = Transformer.from_crs(SITE_CRS, src.crs, always_xy=True).transform(xx, yy)
            col, row = ~src.transform * (np.asarray(rx), np.asarray(ry))
            col, row = np.floor(col).astype(int), np.floor(row).astype(int)
            inside = (row >= 0) & (row < src.height) & (col >= 0) & (col < src.width)
            band = src.read(src.count // 2)
            values = band[row[inside], col[inside]].astype(np.float64)
            seen = np.zeros(xx.size, dtype=bool)
            seen[inside] = (values != src.nodata) & ~np.isnan(values)
            count += seen
    hist = np.bincount(count, minlength=7) / count.size
    assert count.max() <= 4
    assert hist[1:5].sum() >= 0.6
    assert hist[2:5].sum() >= 0.4


def test_transmission(scene: HSIScene) -> None:
    t = pd.read_csv(scene.transmission)
    assert list(t.columns) == ["wavelength_nm", "transmission"]
    assert t["wavelength_nm"].min() <= 350 and t["wavelength_nm"].max() >= 2500
    assert t["transmission"].between(0, 1).all()

    def at(lo: float, hi: float) -> pd.Series:
        return t.loc[t["wavelength_nm"].between(lo, hi), "transmission"]

    assert at(1880, 1920).max() < 0.25
    assert at(1370, 1410).max() < 0.25
    assert 0.25 < at(930, 950).min() < at(1040, 1060).min()
    assert at(2040, 2070).min() < at(2100, 2200).min()


def test_deterministic(scene: HSIScene, tmp_path: Path) -> None:
    again = generate_hsi_scene(tmp_path / "again", seed=3, n_polygons=N_POLYGONS, scale=SCALE)
    files = sorted(p.name for p in scene.root.iterdir())
    assert files == sorted(p.name for p in again.root.iterdir())
    for name in files:
        assert _sha(scene.root / name) == _sha(again.root / name), name
    other = generate_hsi_scene(tmp_path / "other", seed=4, n_polygons=N_POLYGONS, scale=SCALE)
    for a, b in zip(scene.rasters, other.rasters, strict=True):
        assert _sha(a.path) != _sha(b.path), a.name
    assert _sha(scene.polygons) != _sha(other.polygons)


def test_streamed_rasters_keep_the_grid_and_strip(scene: HSIScene, tmp_path: Path) -> None:
    """``window_rows`` renders window by window: same grid and strip as in memory, own noise draws."""
    kwargs = {"seed": 3, "n_polygons": N_POLYGONS, "scale": SCALE, "rasters": ("VNIR2", "SWIR3")}
    streamed = generate_hsi_scene(tmp_path / "a", window_rows=7, **kwargs)
    assert [r.name for r in streamed.rasters] == ["VNIR2", "SWIR3"]
    assert sorted(p.name for p in streamed.root.glob("*.tif")) == ["swir3.tif"]
    whole = {r.name: r.path for r in scene.rasters}
    for r in streamed.rasters:
        with rasterio.open(r.path) as a, rasterio.open(whole[r.name]) as b:
            assert (a.width, a.height, a.count, a.crs, a.res) == (b.width, b.height, b.count, b.crs, b.res)
            x, y = a.read(), b.read()
            np.testing.assert_array_equal(x == -9999, y == -9999)  # the same ragged strip
            values = x[(x != -9999) & np.isfinite(x)]
            assert 0.1 < values.mean() < 0.9 and np.mean((values > -0.1) & (values < 1.5)) > 0.99
            assert not np.array_equal(x, y)
    again = generate_hsi_scene(tmp_path / "b", window_rows=7, **kwargs)
    for a, b in zip(streamed.rasters, again.rasters, strict=True):
        assert _sha(a.path) == _sha(b.path), a.name
