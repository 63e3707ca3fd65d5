"""Small hand-made HSI scenes for tests: few polygons, two or three rasters with known pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import yaml
from pyproj import Transformer
from rasterio.transform import from_origin

UTM = "EPSG:32611"
ORIGIN = (585_000.0, 4_118_000.0)  # UTM 11N, near 37.2 N 116.0 W


@dataclass
class TinyScene:
    root: Path
    polygons: Path
    rasters: dict[str, Path]
    transmission: Path
    polygons_utm: gpd.GeoDataFrame


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    origin: tuple[float, float],
    res: float,
    crs: str = UTM,
    wavelengths: np.ndarray | None = None,
    units: str = "Nanometers",
    driver: str = "GTiff",
    nodata: float | None = -9999.0,
    scale: float | None = None,
) -> Path:
    """Write a [bands, rows, cols] array with wavelength metadata as GeoTIFF (tiled) or ENVI."""
    bands, rows, cols = data.shape
    profile: dict[str, object] = {
        "driver": driver,
        "width": cols,
        "height": rows,
        "count": bands,
        "dtype": data.dtype,
        "crs": crs,
        "transform": from_origin(origin[0], origin[1], res, res),
        "nodata": nodata,
    }
    if driver == "GTiff":
        profile.update(tiled=True, blockxsize=16, blockysize=16, interleave="pixel")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if scale is not None:
            dst.scales = (scale,) * bands
        if wavelengths is not None:
            if driver == "ENVI":
                dst.update_tags(
                    ns="ENVI",
                    wavelength="{" + ", ".join(f"{w:.4f}" for w in wavelengths) + "}",
                    wavelength_units=units,
                )
            else:
                for i, w in enumerate(wavelengths, start=1):
                    dst.update_tags(i, wavelength=f"{w:.6f}", wavelength_units=units)
    return path


def make_tiny_scene(root: Path, *, seed: int = 0) -> TinyScene:
    """Three polygon classes in a 120 m square, a VNIR GeoTIFF and a SWIR ENVI raster.

    The VNIR raster covers the western 70 m, the SWIR raster the eastern 80 m, so
    the middle is seen by both and the edges by one.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x0, y0 = ORIGIN
    boxes = []
    classes = ["asphalt", "concrete", "metal"]
    for k in range(9):
        cx = x0 + 15 + (k % 3) * 40
        cy = y0 - 15 - (k // 3) * 40
        boxes.append(shapely.box(cx - 6, cy - 6, cx + 6, cy + 6))
    utm = gpd.GeoDataFrame(
        {"class_name": [classes[k % 3] for k in range(9)], "polygon_id": np.arange(9) + 100},
        geometry=boxes,
        crs=UTM,
    )
    polygons = root / "polygons.gpkg"
    utm.to_crs("EPSG:4326").to_file(polygons, layer="labels", engine="pyogrio")

    vnir_wl = np.linspace(380.0, 1000.0, 12)
    vnir = rng.uniform(0.0, 1.0, size=(12, 70, 70)).astype(np.float32)
    vnir[:, :2, :] = -9999.0  # nodata border
    vnir_path = write_raster(root / "vnir.tif", vnir, origin=(x0, y0), res=1.0, wavelengths=vnir_wl)

    swir_wl = np.linspace(0.9, 2.5, 20)  # micrometres
    swir = rng.integers(0, 16000, size=(20, 60, 40)).astype(np.int16)
    swir[:, :, -1] = -9999
    swir_path = write_raster(
        root / "swir.img",
        swir,
        origin=(x0 + 40.0, y0),
        res=2.0,
        wavelengths=swir_wl,
        units="Micrometers",
        driver="ENVI",
        scale=1e-4,
    )
    wl = np.arange(350.0, 2501.0, 5.0)
    tr = np.clip(
        1.0 - 0.95 * np.exp(-(((wl - 1400) / 40) ** 2)) - 0.95 * np.exp(-(((wl - 1900) / 50) ** 2)), 0, 1
    )
    transmission = root / "transmission.csv"
    pd.DataFrame({"wavelength_nm": wl, "transmission": tr}).to_csv(transmission, index=False)
    return TinyScene(
        root=root,
        polygons=polygons,
        rasters={"VNIR1": vnir_path, "SWIR1": swir_path},
        transmission=transmission,
        polygons_utm=utm,
    )


def to_utm(x: np.ndarray, y: np.ndarray, src: str) -> tuple[np.ndarray, np.ndarray]:
    t = Transformer.from_crs(src, UTM, always_xy=True)
    return t.transform(x, y)


def write_tiny_catalog(tmp_path: Path, scene: TinyScene, parameters: dict[str, object]) -> Path:
    """A catalog with the tiny scene (`tiny_scene`) and one hsi_dataset entry (`tiny`)."""
    entries = {
        "tiny_scene": {
            "type": "hsi_scene",
            "path": str(scene.root),
            "polygons": "polygons.gpkg",
            "class_column": "class_name",
            "transmission": "transmission.csv",
            "rasters": [
                {"name": "VNIR1", "path": "vnir.tif", "sensor": "VNIR"},
                {"name": "SWIR1", "path": "swir.img", "sensor": "SWIR"},
            ],
        },
        "tiny": {
            "type": "hsi_dataset",
            "path": "published/tiny.zarr",
            "inputs": "tiny_scene",
            "parameters": parameters,
        },
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path
