"""Benchmark: block-wise extraction vs rasterio's per-point sample(), and curation peak memory.

One run, same raster, same points:
1. writes a 256x256-tiled, pixel-interleaved multi-band GeoTIFF larger than 2 GB (int16);
2. times ``pipeline.io.raster.read_pixels`` and ``DatasetReader.sample()`` on the same
   random points, checks they return identical values, and prints the ratio;
3. curates an HSI dataset from that raster in a child process and prints its peak RSS.

Usage: ``python bench/extract.py [--points 20000] [--bands 120] [--size 3000] [--keep]``.
Absolute times depend on the machine; the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.io.raster import open_raster_info, pixel_indices, read_pixels  # noqa: E402

ORIGIN = (585_000.0, 4_118_000.0)
CRS = "EPSG:32611"


def write_big_raster(path: Path, *, bands: int, size: int, seed: int) -> None:
    """A tiled int16 reflectance raster (scale 1e-4) with wavelength tags, written 256 rows at a time."""
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "int16",
        "crs": CRS,
        "transform": from_origin(ORIGIN[0], ORIGIN[1], 1.0, 1.0),
        "nodata": -9999,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "interleave": "pixel",
        "BIGTIFF": "YES",
    }
    wavelengths = np.linspace(400.0, 900.0, bands)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 256):
            h = min(256, size - r0)
            block = rng.integers(0, 10000, size=(bands, h, size), dtype=np.int16)
            dst.write(block, window=rasterio.windows.Window(0, r0, size, h))
        dst.scales = (1e-4,) * bands
        for i, w in enumerate(wavelengths, start=1):
            dst.update_tags(i, wavelength=f"{w:.3f}", wavelength_units="Nanometers")


def time_extraction(path: Path, n_points: int, seed: int) -> dict[str, float]:
    """Block-wise vs sample() on the same points; values must agree exactly."""
    rng = np.random.default_rng(seed)
    info = open_raster_info(path)
    x = ORIGIN[0] + rng.uniform(0, info.width, n_points)
    y = ORIGIN[1] - rng.uniform(0, info.height, n_points)
    start = time.perf_counter()
    rows, cols = pixel_indices(info, x, y)
    blockwise = read_pixels(info, rows, cols)
    t_block = time.perf_counter() - start
    start = time.perf_counter()
    with rasterio.open(path) as src:
        sampled = np.array(list(src.sample(zip(x, y, strict=True))))
    t_sample = time.perf_counter() - start
    if not np.array_equal(blockwise.values, sampled):
        raise SystemExit("block-wise values differ from rasterio sample(): benchmark invalid")
    return {"blockwise_s": t_block, "sample_s": t_sample, "ratio": t_sample / t_block}


def write_polygons(path: Path, size: int, seed: int) -> None:
    """Nine classes of 20 m boxes spread over the raster, in EPSG:4326."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(40, size - 40, size=(90, 2))
    boxes = [
        shapely.box(ORIGIN[0] + cx - 10, ORIGIN[1] - cy - 10, ORIGIN[0] + cx + 10, ORIGIN[1] - cy + 10)
        for cx, cy in centres
    ]
    gdf = gpd.GeoDataFrame({"class_name": [f"class{k % 9}" for k in range(90)]}, geometry=boxes, crs=CRS)
    gdf = gdf.loc[~gdf.geometry.duplicated()]
    gdf.to_crs("EPSG:4326").to_file(path, engine="pyogrio")


def curate_child(raster: str, polygons: str, out: str) -> None:
    """Run in a child process: curate one big raster; report peak RSS on stdout."""
    from pipeline.hsi.curate import curate_hsi
    from schemas.hsi import HSICurationParams, HSIInputs, RasterSpec

    inputs = HSIInputs(
        polygons=Path(polygons),
        class_column="class_name",
        rasters=[RasterSpec(name="BIG", path=Path(raster), sensor="VNIR")],
    )
    start = time.perf_counter()
    curate_hsi(inputs, HSICurationParams(), out=out)
    print(json.dumps({"curate_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM), in MiB.

    Not ``getrusage().ru_maxrss``: Linux keeps that across fork+exec, so a child started by
    a parent holding 1.4 GB (rasterio's block cache after ``sample()``) would report the
    parent's peak. VmHWM belongs to the address space that ``exec`` creates afresh.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--bands", type=int, default=120)
    parser.add_argument("--size", type=int, default=3000, help="raster width = height (pixels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=3, metavar=("RASTER", "POLYGONS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        curate_child(*args.child)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        raster = work / "big.tif"
        start = time.perf_counter()
        write_big_raster(raster, bands=args.bands, size=args.size, seed=args.seed)
        size_gb = raster.stat().st_size / 1e9
        print(
            f"raster: {args.size}x{args.size} px, {args.bands} bands int16, 256x256 tiles, pixel-interleaved, "
            f"{size_gb:.2f} GB (written in {time.perf_counter() - start:.0f} s)"
        )
        result = time_extraction(raster, args.points, args.seed)
        print(
            f"extraction of {args.points} points: block-wise {result['blockwise_s']:.2f} s, "
            f"rasterio sample() {result['sample_s']:.2f} s -> block-wise is {result['ratio']:.1f}x faster "
            f"(target >= 30x); values identical"
        )
        polygons = work / "polygons.gpkg"
        write_polygons(polygons, args.size, args.seed)
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(raster), str(polygons), str(work / "out.zarr")],
            capture_output=True,
            text=True,
            check=True,
        )
        stats = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"curation of the {size_gb:.2f} GB raster: {stats['curate_s']:.1f} s, "
            f"peak RSS {stats['peak_rss_mb']:.0f} MB (target < 1024 MB)"
        )


if __name__ == "__main__":
    main()
