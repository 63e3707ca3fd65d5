"""Band masks and transmission interpolation against hand-worked wavelengths."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InputError, WavelengthError
from pipeline.hsi.spectral import Transmission, band_mask, clip_reflectance
from pipeline.io.raster import to_nanometres
from schemas.hsi import HSICurationParams


def test_vnir_mask_keeps_400_to_900_inclusive() -> None:
    wl = np.array([380.0, 399.9, 400.0, 650.0, 900.0, 900.1, 1000.0])
    keep = band_mask(wl, "VNIR", HSICurationParams(), None)
    assert keep.tolist() == [False, False, True, True, True, False, False]


def test_swir_mask_drops_low_transmission_and_windows() -> None:
    wl = np.array([880.0, 1000.0, 1400.0, 1700.0, 1900.0, 2040.0, 2200.0, 2490.0, 2510.0])
    trans = Transmission(
        wavelength_nm=np.array([800.0, 1350.0, 1400.0, 1450.0, 2600.0]),
        transmission=np.array([0.9, 0.9, 0.1, 0.9, 0.9]),
    )
    keep = band_mask(wl, "SWIR", HSICurationParams(), trans)
    # 880 out of range, 1400 transmission 0.1, 1900 and 2040 in the drop windows, 2510 out of range
    assert keep.tolist() == [False, True, False, True, False, False, True, True, False]


def test_transmission_interpolates_linearly() -> None:
    trans = Transmission(wavelength_nm=np.array([1000.0, 1100.0]), transmission=np.array([0.2, 0.6]))
    assert trans.at(np.array([1025.0]))[0] == pytest.approx(0.3)
    assert np.isnan(trans.at(np.array([900.0]))[0])


def test_swir_mask_without_profile_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="transmission"):
        band_mask(np.array([1000.0]), "SWIR", HSICurationParams(), None)


def test_clip_leaves_nan() -> None:
    values = np.array([[-0.2, 0.5, 2.0, np.nan]], dtype=np.float32)
    clip_reflectance(values, 0.0, 1.5)
    assert values[0, :3].tolist() == [0.0, 0.5, 1.5] and np.isnan(values[0, 3])


@pytest.mark.parametrize(
    ("units", "values", "expected"),
    [
        ("Micrometers", [0.5, 2.1], [500.0, 2100.0]),
        ("nm", [500.0], [500.0]),
        (None, [0.45, 0.9], [450.0, 900.0]),
    ],
)
def test_units_to_nanometres(units: str | None, values: list[float], expected: list[float]) -> None:
    out = to_nanometres(np.array(values), units, path="x.tif", field="test")
    assert out.tolist() == pytest.approx(expected)


def test_unknown_units_rejected() -> None:
    with pytest.raises(WavelengthError, match="furlongs"):
        to_nanometres(np.array([1.0]), "furlongs", path="x.tif", field="test")
