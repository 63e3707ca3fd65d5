"""Bad HSI inputs: a clear error naming the file/field and the fix, and nothing published."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from conftest import tiny_inputs
from scenes import ORIGIN, UTM, TinyScene, write_raster

from pipeline.errors import (
    CRSError,
    EminWarning,
    MissingInputError,
    NoOverlapError,
    SchemaError,
    WavelengthError,
)
from pipeline.hsi.curate import curate_hsi
from pipeline.publishing.codes import strings
from pipeline.publishing.zarr_io import open_store
from schemas.hsi import HSICurationParams, HSIInputs, RasterSpec

PARAMS = HSICurationParams(max_points_per_class=300)


def _assert_nothing_published(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def _with(scene: TinyScene, **changes: object) -> HSIInputs:
    return tiny_inputs(scene).model_copy(update=changes)


def _polygons(tmp_path: Path, scene: TinyScene, edit: object, name: str = "p.gpkg") -> Path:
    gdf = gpd.read_file(scene.polygons)
    gdf = edit(gdf)  # type: ignore[operator]
    path = tmp_path / name
    gdf.to_file(path, engine="pyogrio")
    return path


def test_missing_polygon_file(tiny_scene: TinyScene, tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    with pytest.raises(MissingInputError, match=r"nope\.gpkg: polygon file not found"):
        curate_hsi(_with(tiny_scene, polygons=tmp_path / "nope.gpkg"), PARAMS, out=out)
    _assert_nothing_published(out)


def test_missing_raster_file(tiny_scene: TinyScene, tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    inputs = tiny_inputs(tiny_scene)
    inputs.rasters[1] = inputs.rasters[1].model_copy(update={"path": tmp_path / "gone.img"})
    with pytest.raises(MissingInputError, match=r"gone\.img: raster file not found"):
        curate_hsi(inputs, PARAMS, out=out)
    _assert_nothing_published(out)


def test_polygons_without_crs(tiny_scene: TinyScene, tmp_path: Path) -> None:
    gdf = gpd.read_file(tiny_scene.polygons)
    path = tmp_path / "nocrs.shp"
    gdf.set_crs(None, allow_override=True).to_file(path, engine="pyogrio")
    out = tmp_path / "o.zarr"
    with pytest.raises(CRSError, match=r"nocrs\.shp: polygon layer has no CRS\n.*fix: .*polygons_crs"):
        curate_hsi(_with(tiny_scene, polygons=path), PARAMS, out=out)
    _assert_nothing_published(out)
    # the documented fix works
    done = curate_hsi(_with(tiny_scene, polygons=path, polygons_crs="EPSG:4326"), PARAMS, out=out)
    assert open_store(done).sizes["sample"] > 0


def test_class_column_missing(tiny_scene: TinyScene, tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    with pytest.raises(
        SchemaError, match=r"class column 'klass' not found; columns are \['class_name', 'polygon_id'\]"
    ):
        curate_hsi(_with(tiny_scene, class_column="klass"), PARAMS, out=out)
    _assert_nothing_published(out)


def test_class_column_with_empty_or_fractional_values(tiny_scene: TinyScene, tmp_path: Path) -> None:
    def blank(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        gdf.loc[2, "class_name"] = None
        return gdf

    def fractional(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        gdf["code"] = np.linspace(0.5, 3.5, len(gdf))
        return gdf

    out = tmp_path / "o.zarr"
    with pytest.raises(SchemaError, match="1 empty values"):
        curate_hsi(_with(tiny_scene, polygons=_polygons(tmp_path, tiny_scene, blank)), PARAMS, out=out)
    with pytest.raises(SchemaError, match="non-integer numbers"):
        curate_hsi(
            _with(
                tiny_scene,
                polygons=_polygons(tmp_path, tiny_scene, fractional, "f.gpkg"),
                class_column="code",
            ),
            PARAMS,
            out=out,
        )
    _assert_nothing_published(out)


def test_integer_class_codes_become_names(tiny_scene: TinyScene, tmp_path: Path) -> None:
    def codes(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        gdf["code"] = gdf["class_name"].map({"asphalt": 11, "concrete": 12, "metal": 13})
        return gdf

    path = curate_hsi(
        _with(tiny_scene, polygons=_polygons(tmp_path, tiny_scene, codes), class_column="code"),
        PARAMS,
        out=tmp_path / "o.zarr",
    )
    assert open_store(path).attrs["class_names"] == ["11", "12", "13", "background"]


def test_raster_without_wavelengths(tiny_scene: TinyScene, tmp_path: Path) -> None:
    bare = write_raster(tmp_path / "bare.tif", np.ones((4, 30, 30), np.float32) * 0.3, origin=ORIGIN, res=1.0)
    out = tmp_path / "o.zarr"
    inputs = _with(tiny_scene, rasters=[RasterSpec(name="V", path=bare, sensor="VNIR")])
    with pytest.raises(WavelengthError, match=r"bare\.tif: raster has no band wavelength metadata"):
        curate_hsi(inputs, PARAMS, out=out)
    _assert_nothing_published(out)
    given = RasterSpec(name="V", path=bare, sensor="VNIR", wavelengths_nm=[450.0, 550.0, 650.0, 750.0])
    curate_hsi(_with(tiny_scene, rasters=[given]), PARAMS, out=out)  # the documented fix works
    assert open_store(out)["wavelength_V"].values.tolist() == [450.0, 550.0, 650.0, 750.0]


def test_wavelengths_do_not_match_band_count(tiny_scene: TinyScene, tmp_path: Path) -> None:
    spec = RasterSpec(
        name="VNIR1", path=tiny_scene.rasters["VNIR1"], sensor="VNIR", wavelengths_nm=[500.0, 600.0]
    )
    out = tmp_path / "o.zarr"
    with pytest.raises(WavelengthError, match=r"vnir\.tif: 2 wavelengths for 12 bands"):
        curate_hsi(_with(tiny_scene, rasters=[spec]), PARAMS, out=out)
    _assert_nothing_published(out)


def test_raster_that_does_not_overlap(tiny_scene: TinyScene, tmp_path: Path) -> None:
    far = write_raster(
        tmp_path / "far.tif",
        np.ones((3, 20, 20), np.float32) * 0.2,
        origin=(ORIGIN[0] + 50_000, ORIGIN[1]),
        res=1.0,
        wavelengths=np.array([500.0, 600.0, 700.0]),
    )
    inputs = tiny_inputs(tiny_scene)
    inputs.rasters.append(RasterSpec(name="FAR", path=far, sensor="VNIR"))
    out = tmp_path / "o.zarr"
    with pytest.raises(NoOverlapError, match=r"far\.tif: raster 'FAR' covers none of the"):
        curate_hsi(inputs, PARAMS, out=out)
    _assert_nothing_published(out)


def test_class_emptied_by_buffer_is_warned_recorded_and_skipped(
    tiny_scene: TinyScene, tmp_path: Path
) -> None:
    def tiny_metal(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        utm = gdf.to_crs(UTM)
        small = utm["class_name"] == "metal"
        utm.loc[small, "geometry"] = utm.loc[small, "geometry"].centroid.buffer(1.0)
        return utm.to_crs("EPSG:4326")

    path_in = _polygons(tmp_path, tiny_scene, tiny_metal)
    with pytest.warns(EminWarning, match=r"classes \['metal'\] have no polygon left"):
        path = curate_hsi(_with(tiny_scene, polygons=path_in), PARAMS, out=tmp_path / "o.zarr")
    ds = open_store(path)
    assert ds.attrs["polygons"]["classes_emptied_by_buffer"] == ["metal"]
    assert len(ds.attrs["polygons"]["emptied_by_buffer_polygon_ids"]) == 3
    assert "metal" not in ds.attrs["class_names"]


def test_invalid_polygon_repaired_with_warning_not_dropped(tiny_scene: TinyScene, tmp_path: Path) -> None:
    def bowtie(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        utm = gdf.to_crs(UTM)
        x0, y0, x1, y1 = utm.geometry.iloc[0].bounds
        utm.loc[0, "geometry"] = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
        return utm.to_crs("EPSG:4326")

    path_in = _polygons(tmp_path, tiny_scene, bowtie)
    assert not shapely.is_valid(gpd.read_file(path_in).geometry.iloc[0])
    with pytest.warns(EminWarning, match=r"repaired 1 invalid polygons.*ids \[100\]"):
        path = curate_hsi(_with(tiny_scene, polygons=path_in), PARAMS, out=tmp_path / "o.zarr")
    ds = open_store(path)
    assert ds.attrs["polygons"]["repaired_polygon_ids"] == [100]
    assert 100 in set(ds["polygon_id"].values.tolist()) | set(
        open_store(path, group="rejects")["polygon_id"].values.tolist()
    )


def test_nan_and_inf_pixels_are_absent_and_counted(tiny_scene: TinyScene, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.uniform(0.1, 0.9, size=(5, 70, 70)).astype(np.float32)
    data[2, :35, :] = np.nan  # northern half: NaN in one band
    data[0, 35:, :35] = np.inf  # south-west quarter: inf
    path = write_raster(
        tmp_path / "nan.tif", data, origin=ORIGIN, res=1.0, wavelengths=np.linspace(450, 850, 5)
    )
    inputs = _with(tiny_scene, rasters=[RasterSpec(name="V", path=path, sensor="VNIR")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = curate_hsi(inputs, PARAMS, out=tmp_path / "o.zarr")
    ds = open_store(out).load()
    rejects = open_store(out, group="rejects").load()
    assert np.isfinite(ds["V"].values).all()
    row = (ORIGIN[1] - rejects["y"].values).astype(int)
    col = (rejects["x"].values - ORIGIN[0]).astype(int)
    inside = (row >= 0) & (row < 70) & (col >= 0) & (col < 70)
    bad_pixel = inside & ((row < 35) | (col < 35))
    assert bad_pixel.sum() == ds.attrs["absent_counts"]["V"]["nonfinite"] > 0
    assert set(strings(rejects, "reason")[bad_pixel].tolist()) == {"no_valid_pixel"}
    assert set(strings(rejects, "status")[bad_pixel, 0].tolist()) == {"nonfinite"}
