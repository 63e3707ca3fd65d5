"""HSI curation end to end on a small scene, each property checked by an independent route."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from conftest import tiny_inputs
from pyproj import Transformer
from scenes import TinyScene

from pipeline.hsi.curate import curate_hsi
from pipeline.publishing.codes import strings
from pipeline.publishing.contract import validate_store
from pipeline.publishing.zarr_io import open_store
from schemas.hsi import HSICurationParams

PARAMS = HSICurationParams(max_points_per_class=900, interior_buffer_m=1.5)


@pytest.fixture(scope="module")
def curated(
    tiny_scene: TinyScene, tmp_path_factory: pytest.TempPathFactory
) -> tuple[xr.Dataset, xr.Dataset, Path]:
    out = tmp_path_factory.mktemp("curated") / "tiny.zarr"
    path = curate_hsi(tiny_inputs(tiny_scene), PARAMS, out=out)
    return open_store(path).load(), open_store(path, group="rejects").load(), path


def _raster_values(
    path: Path, x: np.ndarray, y: np.ndarray, crs: str
) -> tuple[np.ndarray, np.ndarray, rasterio.DatasetReader]:
    """Pixel values at points read with rasterio's own sample() (the independent route)."""
    with rasterio.open(path) as src:
        rx, ry = Transformer.from_crs(crs, src.crs, always_xy=True).transform(x, y)
        rows, cols = rasterio.transform.rowcol(src.transform, rx, ry)
        inside = (
            (np.asarray(rows) >= 0)
            & (np.asarray(rows) < src.height)
            & (np.asarray(cols) >= 0)
            & (np.asarray(cols) < src.width)
        )
        vals = np.full((x.size, src.count), np.nan)
        vals[inside] = np.array(
            list(src.sample(zip(np.asarray(rx)[inside], np.asarray(ry)[inside], strict=True)))
        )
        return vals, inside, src


def test_store_satisfies_contract(curated: tuple[xr.Dataset, xr.Dataset, Path]) -> None:
    assert validate_store(curated[2]) == []


def test_stored_spectra_equal_raster_values(
    curated: tuple[xr.Dataset, xr.Dataset, Path], tiny_scene: TinyScene
) -> None:
    ds, _, _ = curated
    x, y = ds["x"].values, ds["y"].values
    for name in ("VNIR1", "SWIR1"):
        vals, inside, _ = _raster_values(tiny_scene.rasters[name], x, y, ds.attrs["crs"])
        bands = ds[f"source_band_{name}"].values - 1
        scale = 1e-4 if name == "SWIR1" else 1.0
        expected = np.clip(vals[:, bands] * scale, 0.0, 1.5)
        # names on the coded modality coord, as docs/format.md says an xarray user does it
        present = ds["present"].assign_coords(modality=ds.attrs["modalities"]).sel(modality=name).values
        nodata = (vals[:, bands] == -9999).any(axis=1)
        assert np.array_equal(present, inside & ~nodata)
        np.testing.assert_allclose(ds[name].values[present], expected[present], rtol=1e-6)
        assert np.isnan(ds[name].values[~present]).all()


def test_band_masks_applied(curated: tuple[xr.Dataset, xr.Dataset, Path], tiny_scene: TinyScene) -> None:
    import pandas as pd

    ds, _, _ = curated
    vnir = ds["wavelength_VNIR1"].values
    assert vnir.min() >= 400 and vnir.max() <= 900
    assert vnir.size == int(
        np.sum((np.linspace(380.0, 1000.0, 12) >= 400) & (np.linspace(380.0, 1000.0, 12) <= 900))
    )
    # the scene's SWIR header holds micrometres with 4 decimals
    full = np.round(np.linspace(0.9, 2.5, 20), 4) * 1000.0
    profile = pd.read_csv(tiny_scene.transmission)
    trans = np.interp(full, profile["wavelength_nm"], profile["transmission"])
    windows = ((full >= 1880) & (full <= 1920)) | ((full >= 2030) & (full <= 2070))
    expected = full[(full >= 900) & (full <= 2500) & (trans >= 0.25) & ~windows]
    assert (trans[(full > 1350) & (full < 1450)] < 0.25).all()  # the scene really has a 1400 nm water band
    np.testing.assert_allclose(ds["wavelength_SWIR1"].values, expected)


def test_target_samples_clear_of_polygon_edges(
    curated: tuple[xr.Dataset, xr.Dataset, Path], tiny_scene: TinyScene
) -> None:
    ds, _, _ = curated
    polys = tiny_scene.polygons_utm.set_index("polygon_id").geometry
    target = ds["polygon_id"].values >= 0
    pts = shapely.points(ds["x"].values[target], ds["y"].values[target])
    owners = polys.loc[ds["polygon_id"].values[target]].to_numpy()
    assert shapely.contains(owners, pts).all()
    # distance to the boundary ≥ buffer (a hair of tolerance for reprojection round trips)
    assert shapely.distance(shapely.boundary(owners), pts).min() >= PARAMS.interior_buffer_m - 1e-6


def test_background_outside_every_polygon(
    curated: tuple[xr.Dataset, xr.Dataset, Path], tiny_scene: TinyScene
) -> None:
    ds, rejects, _ = curated
    union = shapely.union_all(tiny_scene.polygons_utm.geometry.to_numpy())
    for table in (ds, rejects):
        bg = table["polygon_id"].values == -1
        assert bg.any()
        assert not shapely.intersects(
            union, shapely.points(table["x"].values[bg], table["y"].values[bg])
        ).any()


def test_caps_and_rejects_account_for_every_point(curated: tuple[xr.Dataset, xr.Dataset, Path]) -> None:
    ds, rejects, _ = curated
    ids = np.concatenate([ds["sample_id"].values, rejects["sample_id"].values])
    assert np.array_equal(np.sort(ids), np.arange(ids.size))
    names = np.concatenate([strings(ds, "label"), strings(rejects, "label")])
    cls, counts = np.unique(names, return_counts=True)
    assert counts.max() <= PARAMS.max_points_per_class
    assert dict(zip(cls.tolist(), counts.tolist(), strict=True)) == ds.attrs["points_sampled_per_class"]
    generated = ds.attrs["points_generated_per_class"]
    assert generated["asphalt"] > PARAMS.max_points_per_class  # the cap did bite on a big class
    assert set(strings(rejects, "reason").tolist()) <= {"outside_all_footprints", "no_valid_pixel"}


def test_folds_stratified(curated: tuple[xr.Dataset, xr.Dataset, Path]) -> None:
    ds, _, _ = curated
    label, fold = ds["label"].values, ds["fold"].values
    for c in np.unique(label):
        counts = np.bincount(fold[label == c], minlength=6)[1:]
        assert counts.max() - counts.min() <= 1


def test_same_seed_identical_other_seed_different(
    tiny_scene: TinyScene, tmp_path: Path, curated: tuple[xr.Dataset, xr.Dataset, Path]
) -> None:
    ds, _, _ = curated
    again = open_store(curate_hsi(tiny_inputs(tiny_scene), PARAMS, out=tmp_path / "again.zarr")).load()
    for name in [*ds.data_vars, *ds.coords]:
        assert np.array_equal(ds[name].values, again[name].values, equal_nan=ds[name].dtype.kind == "f"), name
    other = curate_hsi(
        tiny_inputs(tiny_scene), PARAMS.model_copy(update={"seed": 1}), out=tmp_path / "other.zarr"
    )
    assert not np.array_equal(open_store(other)["x"].values[:50], ds["x"].values[:50])


def test_table1_and_histogram_match_data(curated: tuple[xr.Dataset, xr.Dataset, Path]) -> None:
    ds, rejects, _ = curated
    present = ds["present"].values
    hist = np.bincount(present.sum(axis=1), minlength=3)
    hist[0] = rejects.sizes["reject"]
    assert hist.tolist() == ds.attrs["modality_count_histogram"]
    for c_idx, c in enumerate(ds.attrs["class_names"]):
        for j, m in enumerate(ds.attrs["modalities"]):
            assert ds.attrs["table1_counts"][c][m] == int(present[ds["label"].values == c_idx, j].sum())


def test_validator_catches_tampering(curated: tuple[xr.Dataset, xr.Dataset, Path], tmp_path: Path) -> None:
    from pipeline.publishing.contract import validate_hsi

    ds, rejects, _ = curated
    bad = ds.copy(deep=True)
    bad["VNIR1"].values[np.argmax(bad["present"].values[:, 0]), 0] = 7.0
    bad["fold"].values[:] = 1
    problems = validate_hsi(bad, rejects)
    assert any("clip range" in p for p in problems)
    assert any("stratified" in p for p in problems)
