"""Raster I/O: band metadata and block-wise point extraction (GeoTIFF, ENVI, any GDAL raster).

Extraction never calls ``DatasetReader.sample`` per point: points are grouped by
the read window (one or more native blocks) that holds them, each window that
holds at least one point is read once, and values are gathered by numpy
indexing. Windows are capped in bytes so memory stays bounded whatever the
raster size, and GDAL's block cache is capped for the same reason.

Consecutive windows form the work units of one raster (:class:`WindowGroup`, sized
by the bytes they read): :func:`read_window_group` reads one unit anywhere (in this
process, or as a Dask job on any worker), and :func:`read_pixels` scatters the units'
values back into point order, so the result never depends on how the units ran.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio.crs import CRS
from rasterio.windows import Window

from pipeline import interrupt
from pipeline.cpus import local_threads
from pipeline.errors import InputError, MissingInputError, WavelengthError

#: Largest window read at once (bytes); bounds peak memory during extraction.
WINDOW_BUDGET_BYTES = 64 * 1024 * 1024
#: GDAL block cache cap (bytes). Each block is read once, so a large cache only costs memory.
GDAL_CACHE_BYTES = 64 * 1024 * 1024
#: Most bytes one work unit (a group of windows) reads; smaller when a raster has to spread over workers.
UNIT_BUDGET_BYTES = 64 * 1024 * 1024
#: Work units per worker a raster is split into, at most (a few each keeps the workers evenly busy).
UNITS_PER_WORKER = 4

#: How much longer a compressed raster takes to read per uncompressed byte (see :func:`read_cost`).
COMPRESSED_READ_FACTOR = 4.0

_NM_UNITS = {"nm", "nanometer", "nanometers", "nanometre", "nanometres"}
_UM_UNITS = {"um", "µm", "μm", "micrometer", "micrometers", "micrometre", "micrometres", "micron", "microns"}


@dataclass(frozen=True)
class RasterInfo:
    """What curation needs to know about one raster, read from its metadata."""

    path: Path
    crs: CRS
    transform: rasterio.Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    wavelengths_nm: np.ndarray | None
    wavelength_source: str
    block_shape: tuple[int, int]
    driver: str


def to_nanometres(values: np.ndarray, units: str | None, *, path: Path | str, field: str) -> np.ndarray:
    """Convert wavelengths to nm; units missing means nm unless every value is < 30 (then µm)."""
    unit = (units or "").strip().lower()
    if unit in _NM_UNITS:
        return values.astype(np.float64)
    if unit in _UM_UNITS:
        return values.astype(np.float64) * 1000.0
    if unit == "":
        return values.astype(np.float64) * (1000.0 if np.nanmax(values) < 30.0 else 1.0)
    raise WavelengthError(
        f"unknown wavelength units {units!r} in {field}",
        path=path,
        fix="use Nanometers or Micrometers, or give wavelength_units in the catalog entry",
    )


def _parse_number_list(text: str) -> np.ndarray:
    """Parse ENVI-style ``{1.0, 2.0}`` or comma/space separated numbers."""
    parts = [p for p in re.split(r"[,\s{}]+", text.strip()) if p]
    return np.array([float(p) for p in parts], dtype=np.float64)


def read_wavelengths(src: rasterio.DatasetReader) -> tuple[np.ndarray | None, str]:
    """Band wavelengths (nm) from a raster's own metadata, and where they came from.

    Looks in the ENVI header domain, then per-band ``wavelength`` tags (GeoTIFF),
    then GDAL's ``IMAGERY`` domain ``CENTRAL_WAVELENGTH_UM`` (rounded to 1 nm).
    """
    path = src.name
    envi = src.tags(ns="ENVI")
    if "wavelength" in envi:
        values = _parse_number_list(envi["wavelength"])
        units = envi.get("wavelength_units")
        return to_nanometres(values, units, path=path, field="ENVI header 'wavelength'"), "envi_header"
    band_tags = [src.tags(i) for i in range(1, src.count + 1)]
    if all("wavelength" in t for t in band_tags):
        values = np.array([float(t["wavelength"]) for t in band_tags])
        units = band_tags[0].get("wavelength_units")
        return to_nanometres(values, units, path=path, field="band tag 'wavelength'"), "band_tags"
    imagery = [src.tags(i, ns="IMAGERY") for i in range(1, src.count + 1)]
    if all("CENTRAL_WAVELENGTH_UM" in t for t in imagery):
        values = np.array([float(t["CENTRAL_WAVELENGTH_UM"]) for t in imagery]) * 1000.0
        return values, "gdal_imagery"
    return None, "none"


#: Raw (headered binary) drivers whose data file size is fixed by the header.
RAW_DRIVERS = {"ENVI", "EHdr", "BIL", "BSQ", "BIP"}


def _check_raw_size(src: rasterio.DatasetReader, path: Path) -> None:
    """Reject a raw raster whose data file is shorter than its header says (GDAL would read zeros).

    Expected bytes: header offset + samples × lines × bands × bytes per sample.
    """
    if src.driver not in RAW_DRIVERS:
        return
    try:
        offset = int(src.tags(ns="ENVI").get("header_offset", "0") or 0)
    except ValueError:
        offset = 0
    expected = offset + src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(
            f"raster data file is truncated: {actual} bytes, but its header declares "
            f"{src.width} samples x {src.height} lines x {src.count} bands x "
            f"{np.dtype(src.dtypes[0]).itemsize} bytes + {offset} header offset = {expected} bytes "
            f"({100 * actual / expected:.0f}% present); GDAL would read the missing part as zeros",
            path=path,
            fix="copy the complete .img file again (check its size against the source), or fix the .hdr",
        )


def open_raster_info(
    path: str | Path,
    *,
    wavelengths_nm: list[float] | None = None,
    wavelength_units: str | None = None,
    scale_factor: float | None = None,
    offset: float | None = None,
    nodata: float | None = None,
) -> RasterInfo:
    """Read a raster's metadata; explicit arguments (from the catalog) override the file's."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(
            "raster file not found", path=path, fix="check the path in the catalog/--raster"
        )
    try:
        src_ctx = rasterio.open(path)
    except rasterio.RasterioIOError as exc:
        raise InputError(
            f"not a readable raster ({exc})", path=path, fix="give a GeoTIFF or ENVI file"
        ) from exc
    with src_ctx as src:
        _check_raw_size(src, path)
        if src.crs is None:
            raise InputError(
                "raster has no CRS", path=path, fix="assign one, e.g. `gdal_edit.py -a_srs EPSG:32611 FILE`"
            )
        wl: np.ndarray | None
        if wavelengths_nm is not None:
            wl = to_nanometres(
                np.asarray(wavelengths_nm, dtype=np.float64), wavelength_units, path=path, field="catalog"
            )
            source = "catalog"
        else:
            wl, source = read_wavelengths(src)
        if wl is None:
            raise WavelengthError(
                "raster has no band wavelength metadata and none were given",
                path=path,
                fix="add `wavelengths_nm: [...]` (and `wavelength_units`) to the raster's catalog entry, "
                "or write per-band 'wavelength' tags / an ENVI 'wavelength' header field",
            )
        if wl.shape != (src.count,):
            raise WavelengthError(
                f"{wl.size} wavelengths for {src.count} bands (source: {source})",
                path=path,
                fix="give exactly one wavelength per band",
            )
        scales = tuple(float(s) for s in src.scales) if scale_factor is None else (scale_factor,) * src.count
        offsets = tuple(float(o) for o in src.offsets) if offset is None else (offset,) * src.count
        return RasterInfo(
            path=path,
            crs=src.crs,
            transform=src.transform,
            width=src.width,
            height=src.height,
            count=src.count,
            dtype=src.dtypes[0],
            nodata=src.nodata if nodata is None else nodata,
            scales=scales,
            offsets=offsets,
            wavelengths_nm=wl,
            wavelength_source=source,
            block_shape=(int(src.block_shapes[0][0]), int(src.block_shapes[0][1])),
            driver=src.driver,
        )


def read_cost(path: str | Path) -> float:
    """Relative cost of extracting from a raster: its uncompressed bytes, times 4 when compressed.

    For ordering work only (longest first). Decoding dominates compressed reads: on the
    synthetic scenes a deflate GeoTIFF takes 3–4x as long per uncompressed byte as ENVI.
    A file that cannot be opened costs 0 here and fails, with its name, where it is read.
    """
    try:
        with rasterio.open(path) as src:
            raw = src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
            return float(raw) * (COMPRESSED_READ_FACTOR if src.compression is not None else 1.0)
    except (rasterio.errors.RasterioIOError, OSError):
        return 0.0


def footprint_bounds(info: RasterInfo) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the raster grid in its own CRS."""
    west, south, east, north = rasterio.transform.array_bounds(info.height, info.width, info.transform)
    return float(west), float(south), float(east), float(north)


def window_shape(info: RasterInfo, budget_bytes: int = WINDOW_BUDGET_BYTES) -> tuple[int, int]:
    """Read-window size in pixels: whole native blocks, stacked row-wise up to the byte budget.

    Tiled rasters read tile by tile; striped ones (ENVI lines, GeoTIFF strips)
    read many lines at once, since a one-line read per point would be slow.
    """
    block_h, block_w = info.block_shape
    pixel_bytes = info.count * np.dtype(info.dtype).itemsize
    block_bytes = max(block_h * block_w * pixel_bytes, 1)
    stack = max(1, budget_bytes // block_bytes)
    if block_w >= info.width:  # striped: stack lines up to the budget
        return min(info.height, block_h * stack), info.width
    return block_h, block_w


@dataclass(frozen=True)
class PixelValues:
    """Raw band values at points that fall inside the raster grid."""

    inside: np.ndarray  # bool [n_points]: point lies on the raster grid
    values: np.ndarray  # [n_points, bands] raw dtype, zero where not inside


def pixel_indices(info: RasterInfo, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (row, col) of points given in the raster's CRS (may be out of range)."""
    inverse = ~info.transform
    col_f = inverse.a * x + inverse.b * y + inverse.c
    row_f = inverse.d * x + inverse.e * y + inverse.f
    with np.errstate(invalid="ignore"):
        return np.floor(row_f).astype(np.int64), np.floor(col_f).astype(np.int64)


def on_grid(info: RasterInfo, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Which (row, col) pixels lie on the raster grid."""
    return (rows >= 0) & (rows < info.height) & (cols >= 0) & (cols < info.width)


@dataclass(frozen=True)
class WindowGroup:
    """One work unit of a raster's extraction: consecutive read windows and the points they hold.

    Window ``j`` (``windows[j]`` = row offset, column offset, height, width) holds the
    points ``members[bounds[j]:bounds[j + 1]]`` (indices into the caller's points), at
    pixels ``rows``/``cols`` (aligned with ``members``). Self-contained, so it runs anywhere.
    """

    path: Path
    windows: np.ndarray  # int64 [k, 4]
    bounds: np.ndarray  # int64 [k + 1]
    members: np.ndarray  # int64 [m]
    rows: np.ndarray  # int64 [m]
    cols: np.ndarray  # int64 [m]


#: A group's values are read by ``read_window_group``; a runner yields ``(group index, values)``
#: for every group, in any order (one after the other here, or as Dask futures, see flows/runners.py).
GroupRunner = Callable[
    [Callable[[WindowGroup], np.ndarray], Sequence[WindowGroup]], Iterable[tuple[int, np.ndarray]]
]


def run_here(
    read: Callable[[WindowGroup], np.ndarray], groups: Sequence[WindowGroup]
) -> Iterator[tuple[int, np.ndarray]]:
    """The in-process :data:`GroupRunner`: groups read by one thread per CPU (:func:`local_threads`), yielded as they finish.

    GDAL decodes with the GIL released and each group opens its own dataset, so the threads
    read in parallel (2.1x on 2 cores for the 2.26 GB bench raster). On an error, a Ctrl-C or
    an early stop, groups not yet started are cancelled and running ones stop at their next
    window (:func:`pipeline.interrupt.check`); nothing reads on after this returns.
    """
    threads = min(local_threads(), len(groups))
    if threads <= 1:
        for k, group in enumerate(groups):
            yield k, read(group)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="emin-read")
    try:
        futures = {pool.submit(read, group): k for k, group in enumerate(groups)}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def plan_window_groups(
    info: RasterInfo,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    workers: int = 1,
    budget_bytes: int = WINDOW_BUDGET_BYTES,
) -> list[WindowGroup]:
    """Split the reads of the windows that hold in-grid points into work units, in window order.

    A unit takes consecutive windows up to ``min(UNIT_BUDGET_BYTES, reads / (UNITS_PER_WORKER *
    workers))`` bytes (at least one window), so a big raster spreads over every worker with
    a few units each and a small one is not cut into pieces smaller than a window.
    """
    idx = np.flatnonzero(on_grid(info, rows, cols))
    if idx.size == 0:
        return []
    win_h, win_w = window_shape(info, budget_bytes)
    n_win_cols = math.ceil(info.width / win_w)
    win_id = (rows[idx] // win_h) * n_win_cols + cols[idx] // win_w
    order = np.argsort(win_id, kind="stable")
    idx, win_id = idx[order], win_id[order]
    uniq, starts = np.unique(win_id, return_index=True)
    r0, c0 = (uniq // n_win_cols) * win_h, (uniq % n_win_cols) * win_w
    windows = np.column_stack(
        [r0, c0, np.minimum(win_h, info.height - r0), np.minimum(win_w, info.width - c0)]
    )
    nbytes = windows[:, 2] * windows[:, 3] * (info.count * np.dtype(info.dtype).itemsize)
    target = min(UNIT_BUDGET_BYTES, -(-int(nbytes.sum()) // (UNITS_PER_WORKER * max(workers, 1))))
    unit = (np.cumsum(nbytes) - nbytes) // target  # a window joins the unit its first byte falls in
    first = np.flatnonzero(np.diff(unit, prepend=-1))  # first window of each unit
    last = np.append(first[1:], uniq.size)
    bounds = np.append(starts, idx.size)
    groups = []
    for a, b in zip(first.tolist(), last.tolist(), strict=True):  # a loop over units, not points
        members = idx[bounds[a] : bounds[b]]
        groups.append(
            WindowGroup(
                path=info.path,
                windows=windows[a:b],
                bounds=bounds[a : b + 1] - bounds[a],
                members=members,
                rows=rows[members],
                cols=cols[members],
            )
        )
    return groups


def read_window_group(group: WindowGroup) -> np.ndarray:
    """Every band at the group's points (``[members, bands]``, raw dtype), each window read once."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), rasterio.open(group.path) as src:
        out = np.empty((group.members.size, src.count), dtype=np.dtype(src.dtypes[0]))
        for j, (r0, c0, h, w) in enumerate(group.windows.tolist()):
            lo, hi = int(group.bounds[j]), int(group.bounds[j + 1])
            block = src.read(window=Window(c0, r0, w, h))  # [bands, h, w]
            out[lo:hi] = block[:, group.rows[lo:hi] - r0, group.cols[lo:hi] - c0].T
            interrupt.check()  # Ctrl-C stops a long extraction within one window
    return out


def read_pixels(
    info: RasterInfo,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    budget_bytes: int = WINDOW_BUDGET_BYTES,
    workers: int = 1,
    runner: GroupRunner = run_here,
    on_group: Callable[[int, int], None] | None = None,
) -> PixelValues:
    """Gather every band at (row, col) pixels, reading only the windows that hold points.

    The work units (:func:`plan_window_groups`, sized for ``workers``) go through ``runner``;
    their values land at their points whatever order they finish in. ``on_group(done, total)``
    is called as units finish.
    """
    inside = on_grid(info, rows, cols)
    values = np.zeros((rows.size, info.count), dtype=np.dtype(info.dtype))
    groups = plan_window_groups(info, rows, cols, workers=workers, budget_bytes=budget_bytes)
    for done, (k, part) in enumerate(runner(read_window_group, groups), start=1):
        values[groups[k].members] = part
        if on_group is not None:
            on_group(done, len(groups))
    return PixelValues(inside=inside, values=values)
