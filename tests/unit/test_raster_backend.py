"""Block-wise extraction equals rasterio's own per-point sample(); metadata errors are clear."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scenes import ORIGIN, write_raster

from pipeline.errors import MissingInputError, WavelengthError
from pipeline.io.raster import (
    WindowGroup,
    open_raster_info,
    pixel_indices,
    plan_window_groups,
    read_pixels,
    read_window_group,
    window_shape,
)


@pytest.mark.parametrize(("driver", "name"), [("GTiff", "r.tif"), ("ENVI", "r.img")])
@pytest.mark.parametrize("budget", [1_000, 64 * 1024 * 1024])
def test_read_pixels_matches_rasterio_sample(tmp_path: Path, driver: str, name: str, budget: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(7, 53, 61)).astype(np.float32)
    path = write_raster(
        tmp_path / name, data, origin=ORIGIN, res=2.0, wavelengths=np.arange(7) + 500.0, driver=driver
    )
    info = open_raster_info(path)
    x = ORIGIN[0] + rng.uniform(-10, 61 * 2 + 10, size=700)
    y = ORIGIN[1] - rng.uniform(-10, 53 * 2 + 10, size=700)
    rows, cols = pixel_indices(info, x, y)
    got = read_pixels(info, rows, cols, budget_bytes=budget)
    with rasterio.open(path) as src:
        inside_ref = np.array(
            [
                src.index(a, b)[0] in range(53) and src.index(a, b)[1] in range(61)
                for a, b in zip(x, y, strict=True)
            ]
        )
        ref = np.array(list(src.sample(zip(x[inside_ref], y[inside_ref], strict=True))))
    assert np.array_equal(got.inside, inside_ref)
    assert np.array_equal(got.values[got.inside], ref)


@pytest.mark.parametrize(("driver", "budget"), [("GTiff", 64 * 1024 * 1024), ("ENVI", 5 * 4 * 61 * 3)])
@pytest.mark.parametrize("workers", [1, 2, 5])
def test_window_groups_cover_every_point_exactly_once(
    tmp_path: Path, driver: str, budget: int, workers: int
) -> None:
    """Work units vs a brute-force per-point loop: each in-grid point in one unit, in its own window."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(5, 53, 61)).astype(np.float32)
    path = write_raster(
        tmp_path / f"r.{driver}",
        data,
        origin=ORIGIN,
        res=1.0,
        wavelengths=np.arange(5) + 500.0,
        driver=driver,
    )
    info = open_raster_info(path)
    rows = rng.integers(-5, 58, size=900)
    cols = rng.integers(-5, 66, size=900)
    groups = plan_window_groups(info, rows, cols, workers=workers, budget_bytes=budget)
    win_h, win_w = window_shape(info, budget)
    expected: dict[int, tuple[int, int]] = {}  # brute force: the window of every in-grid point
    for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        if 0 <= r < 53 and 0 <= c < 61:
            expected[i] = (r // win_h * win_h, c // win_w * win_w)
    seen: dict[int, tuple[int, int]] = {}
    for g in groups:
        assert g.bounds[0] == 0 and g.bounds[-1] == g.members.size and np.all(np.diff(g.bounds) > 0)
        for j, (r0, c0, h, w) in enumerate(g.windows.tolist()):
            for i in g.members[g.bounds[j] : g.bounds[j + 1]].tolist():
                assert i not in seen
                seen[i] = (r0, c0)
                assert r0 <= rows[i] < r0 + h and c0 <= cols[i] < c0 + w
    assert seen == expected
    starts = [tuple(w[:2]) for g in groups for w in g.windows.tolist()]
    assert starts == sorted(set(starts))  # every window once, in raster order
    assert 1 < len(groups) <= 4 * workers


def test_read_pixels_does_not_depend_on_the_order_units_finish(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = rng.integers(-100, 100, size=(4, 50, 70)).astype(np.int16)
    path = write_raster(tmp_path / "r.tif", data, origin=ORIGIN, res=1.0, wavelengths=np.arange(4) + 500.0)
    info = open_raster_info(path)
    rows, cols = rng.integers(0, 50, size=400), rng.integers(0, 70, size=400)

    def backwards(
        read: Callable[[WindowGroup], np.ndarray], groups: Sequence[WindowGroup]
    ) -> Iterator[tuple[int, np.ndarray]]:
        for k in reversed(range(len(groups))):
            yield k, read(groups[k])

    ticks: list[tuple[int, int]] = []
    got = read_pixels(
        info, rows, cols, workers=3, runner=backwards, on_group=lambda d, n: ticks.append((d, n))
    )
    assert np.array_equal(got.values, data[:, rows, cols].T)
    n = len(plan_window_groups(info, rows, cols, workers=3))
    assert n > 1 and ticks == [(k, n) for k in range(1, n + 1)]
    assert read_window_group(plan_window_groups(info, rows, cols)[0]).dtype == np.int16


def test_window_shape_stacks_strips_but_keeps_tiles(tmp_path: Path) -> None:
    data = np.zeros((3, 64, 64), dtype=np.float32)
    tif = write_raster(tmp_path / "t.tif", data, origin=ORIGIN, res=1.0, wavelengths=np.arange(3) + 500.0)
    envi = write_raster(
        tmp_path / "e.img", data, origin=ORIGIN, res=1.0, wavelengths=np.arange(3) + 500.0, driver="ENVI"
    )
    assert window_shape(open_raster_info(tif)) == (16, 16)
    assert window_shape(open_raster_info(envi), budget_bytes=3 * 4 * 64 * 8) == (8, 64)


def test_wavelengths_from_envi_header_in_micrometres(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 4), dtype=np.float32)
    path = write_raster(
        tmp_path / "e.img",
        data,
        origin=ORIGIN,
        res=1.0,
        wavelengths=np.array([0.9, 1.5, 2.4]),
        units="Micrometers",
        driver="ENVI",
    )
    info = open_raster_info(path)
    assert info.wavelengths_nm.tolist() == pytest.approx([900.0, 1500.0, 2400.0])
    assert info.wavelength_source == "envi_header"


def test_missing_wavelengths_is_a_clear_error(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "n.tif", np.zeros((2, 4, 4), np.float32), origin=ORIGIN, res=1.0)
    with pytest.raises(WavelengthError, match=r"n\.tif.*no band wavelength.*\n.*fix: add `wavelengths_nm"):
        open_raster_info(path)
    assert open_raster_info(path, wavelengths_nm=[500.0, 600.0]).wavelength_source == "catalog"


def test_wavelength_count_mismatch(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "n.tif", np.zeros((2, 4, 4), np.float32), origin=ORIGIN, res=1.0)
    with pytest.raises(WavelengthError, match="3 wavelengths for 2 bands"):
        open_raster_info(path, wavelengths_nm=[500.0, 600.0, 700.0])


def test_missing_raster(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r"nope\.tif"):
        open_raster_info(tmp_path / "nope.tif")


def test_read_cost_is_uncompressed_bytes_weighted_by_compression(tmp_path: Path) -> None:
    from pipeline.io.raster import COMPRESSED_READ_FACTOR, read_cost

    data = np.zeros((3, 40, 50), dtype=np.float32)
    plain = write_raster(tmp_path / "plain.tif", data, origin=ORIGIN, res=2.0)
    packed = tmp_path / "packed.tif"
    with rasterio.open(plain) as src:
        profile = src.profile | {"compress": "deflate"}
    with rasterio.open(packed, "w", **profile) as dst:
        dst.write(data)
    raw = 3 * 40 * 50 * 4
    assert read_cost(plain) == raw
    assert read_cost(packed) == raw * COMPRESSED_READ_FACTOR
    assert read_cost(tmp_path / "missing.tif") == 0.0
