"""Spherical geodesy against pyproj (same sphere) and obspy (WGS84), gradients at the awkward places."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import torch
from obspy.geodetics import gps2dist_azimuth

from models.geo import (
    REPORT_EARTH_RADIUS_KM as EARTH_RADIUS_KM,
)
from models.geo import (
    baz_from_sincos,
    destination,
    haversine_km,
    location_from_prediction,
    wrap_lon_deg,
)

# NB: Geod(ellps="sphere") ignores `a`; a, f given explicitly is the report's sphere.
GEOD = pyproj.Geod(a=EARTH_RADIUS_KM * 1000.0, f=0.0)


def _miss_m(lat: torch.Tensor, lon: torch.Tensor, ref_lat: np.ndarray, ref_lon: np.ndarray) -> np.ndarray:
    """Distance (m) between our points and reference points, measured by pyproj."""
    _, _, d = GEOD.inv(ref_lon, ref_lat, lon.double().numpy(), lat.double().numpy())
    return np.asarray(d)


def _random_paths(n: int, seed: int, max_km: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))  # uniform on the sphere
    return lat, rng.uniform(-180, 180, n), rng.uniform(-360, 720, n), rng.uniform(0, max_km, n)


def test_destination_matches_pyproj_sphere_float64() -> None:
    lat, lon, az, dist = _random_paths(5000, 0, 19_000.0)
    ref_lon, ref_lat, _ = GEOD.fwd(lon, lat, az, dist * 1000.0)
    out_lat, out_lon = destination(*(torch.tensor(a) for a in (lat, lon, az, dist)))
    assert out_lat.dtype == torch.float64
    assert _miss_m(out_lat, out_lon, ref_lat, ref_lon).max() < 1e-3  # spec: < 1 m
    assert (out_lon > -180).all() and (out_lon <= 180).all()
    np.testing.assert_allclose(out_lat.numpy(), ref_lat, atol=1e-9)


def test_destination_float32_regional() -> None:
    lat, lon, az, dist = _random_paths(3000, 1, 500.0)
    ref_lon, ref_lat, _ = GEOD.fwd(lon, lat, az, dist * 1000.0)
    out_lat, out_lon = destination(*(torch.tensor(a, dtype=torch.float32) for a in (lat, lon, az, dist)))
    assert out_lat.dtype == torch.float32 and out_lon.dtype == torch.float32
    # float32 resolves ~1e-7 rad (~0.6 m); a few rounding steps stay within a few metres
    assert _miss_m(out_lat, out_lon, ref_lat, ref_lon).max() < 10.0


def test_destination_across_the_antimeridian() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    lon = np.where(rng.random(n) < 0.5, rng.uniform(177, 180, n), rng.uniform(-180, -177, n))
    lat = rng.uniform(-70, 70, n)
    az = np.where(lon > 0, rng.uniform(30, 150, n), rng.uniform(210, 330, n))  # heading across 180°
    dist = rng.uniform(100, 900, n)
    ref_lon, ref_lat, _ = GEOD.fwd(lon, lat, az, dist * 1000.0)
    assert np.mean(np.sign(ref_lon) != np.sign(lon)) > 0.5  # most paths really cross
    out_lat, out_lon = destination(*(torch.tensor(a) for a in (lat, lon, az, dist)))
    assert _miss_m(out_lat, out_lon, ref_lat, ref_lon).max() < 1e-3
    assert (out_lon > -180).all() and (out_lon <= 180).all()


def test_destination_is_report_equations_2_3() -> None:
    # literal Equations 2-3 in numpy (arcsin; the arctan term evaluated with the quadrant-aware arctan2)
    lat, lon, az, dist = _random_paths(1000, 3, 3000.0)
    lat = np.clip(lat, -85, 85)
    s, b, d = np.radians(lat), np.radians(az), dist / EARTH_RADIUS_KM
    x = np.arcsin(np.sin(s) * np.cos(d) + np.cos(s) * np.sin(d) * np.cos(b))
    y = np.radians(lon) + np.arctan2(np.sin(b) * np.sin(d) * np.cos(s), np.cos(d) - np.sin(s) * np.sin(x))
    out_lat, out_lon = destination(*(torch.tensor(a) for a in (lat, lon, az, dist)))
    np.testing.assert_allclose(out_lat.numpy(), np.degrees(x), atol=1e-9)
    dlon = (out_lon.numpy() - np.degrees(y) + 180) % 360 - 180
    np.testing.assert_allclose(dlon, 0.0, atol=1e-9)


def test_baz_convention_round_trip_with_obspy_wgs84() -> None:
    # destination(station, baz, dist) must land on the event whose gps2dist_azimuth(event, station)
    # gives that baz and dist; obspy is WGS84, so allow the sphere/ellipsoid difference (< 0.5%, < 0.5°)
    rng = np.random.default_rng(4)
    n = 400
    st_lat = rng.uniform(30, 60, n) * rng.choice([-1, 1], n)
    st_lon = rng.uniform(-180, 180, n)
    baz = rng.uniform(0, 360, n)
    dist = rng.uniform(5, 500, n)
    ev_lat, ev_lon = destination(*(torch.tensor(a) for a in (st_lat, st_lon, baz, dist)))
    for i in range(n):
        d_m, _, baz_obspy = gps2dist_azimuth(float(ev_lat[i]), float(ev_lon[i]), st_lat[i], st_lon[i])
        assert d_m / 1000.0 == pytest.approx(dist[i], rel=5e-3)
        assert abs((baz_obspy - baz[i] + 180) % 360 - 180) < 0.5
    # and the *other* reading of the bearing (event->station azimuth) is clearly wrong
    d_m, az_obspy, baz_obspy = gps2dist_azimuth(float(ev_lat[0]), float(ev_lon[0]), st_lat[0], st_lon[0])
    assert abs((az_obspy - baz[0] + 180) % 360 - 180) > 90


def test_wrap_lon_range() -> None:
    x = torch.tensor([-540.0, -180.0, 180.0, 540.0, 181.0, -181.0, 0.0, 359.0], dtype=torch.float64)
    np.testing.assert_allclose(wrap_lon_deg(x).numpy(), [180, 180, 180, 180, -179, 179, 0, -1])


def test_destination_gradients_finite_at_poles_and_zero_distance() -> None:
    cases = [
        (90.0, 10.0, 45.0, 500.0),  # start at the north pole
        (-90.0, 0.0, 0.0, 100.0),  # start at the south pole
        (45.0, 20.0, 0.0, 45.0 * np.pi / 180 * EARTH_RADIUS_KM),  # lands exactly on the pole
        (10.0, 20.0, 123.0, 0.0),  # zero distance
        (0.0, 0.0, 90.0, np.pi * EARTH_RADIUS_KM),  # antipode
    ]
    for case in cases:
        args = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in case]
        lat, lon = destination(*args)
        (lat + lon).backward()
        for a in args:
            assert a.grad is not None and torch.isfinite(a.grad), case
    for case in cases[2:3]:
        args = [torch.tensor(v, dtype=torch.float32, requires_grad=True) for v in case]
        lat, lon = destination(*args)
        (lat + lon).backward()
        assert all(a.grad is not None and torch.isfinite(a.grad) for a in args)


def test_destination_gradcheck() -> None:
    lat, lon, az, dist = _random_paths(20, 5, 2000.0)
    lat = np.clip(lat, -80, 80)
    args = tuple(torch.tensor(a, requires_grad=True) for a in (lat, lon, az, dist))
    # lon at ±180 would jump by 360 under the finite difference: keep away from the wrap
    assert torch.autograd.gradcheck(lambda *t: destination(*t)[0], args)
    assert torch.autograd.gradcheck(lambda *t: torch.sin(torch.deg2rad(destination(*t)[1])), args)


def test_haversine_matches_pyproj_inv() -> None:
    rng = np.random.default_rng(6)
    n = 5000
    lat1, lat2 = (np.degrees(np.arcsin(rng.uniform(-1, 1, n))) for _ in range(2))
    lon1, lon2 = rng.uniform(-180, 180, n), rng.uniform(-180, 180, n)
    lat2[:50], lon2[:50] = lat1[:50], lon1[:50] + 1e-7  # tiny distances
    lat2[50:100], lon2[50:100] = -lat1[50:100], lon1[50:100] + 179.99  # near-antipodal
    _, _, ref = GEOD.inv(lon1, lat1, lon2, lat2)
    got = haversine_km(*(torch.tensor(a) for a in (lat1, lon1, lat2, lon2))).numpy() * 1000.0
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-6)


def test_haversine_zero_distance_gradient_is_finite() -> None:
    a = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (12.0, 34.0, 12.0, 34.0)]
    d = haversine_km(*a)
    d.backward()
    assert d.item() == 0.0
    assert all(x.grad is not None and torch.isfinite(x.grad) for x in a)


def test_baz_from_sincos_and_location_from_prediction() -> None:
    rng = np.random.default_rng(7)
    n = 500
    baz = rng.uniform(0, 360, n)
    scale = rng.uniform(0.2, 3.0, n)  # unnormalised heads
    s, c = np.sin(np.radians(baz)) * scale, np.cos(np.radians(baz)) * scale
    got = baz_from_sincos(torch.tensor(s), torch.tensor(c)).numpy()
    assert ((got >= 0) & (got < 360)).all()
    np.testing.assert_allclose((got - baz + 180) % 360 - 180, 0.0, atol=1e-9)
    st_lat, st_lon, dist = rng.uniform(35, 46, n), rng.uniform(-117, -107, n), rng.uniform(1, 400, n)
    lat, lon = location_from_prediction(
        torch.tensor(st_lat), torch.tensor(st_lon), torch.tensor(dist), torch.tensor(s), torch.tensor(c)
    )
    ref_lon, ref_lat, _ = GEOD.fwd(st_lon, st_lat, baz, dist * 1000.0)
    assert _miss_m(lat, lon, ref_lat, ref_lon).max() < 1e-3
    # gradient reaches all three predictions, finite even for a zero sin/cos head
    d = torch.tensor([50.0], requires_grad=True)
    sn = torch.tensor([0.0], requires_grad=True)
    cs = torch.tensor([0.0], requires_grad=True)
    la, lo = location_from_prediction(40.0, -111.0, d, sn, cs)
    (la + lo).sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (d, sn, cs))
    assert d.grad is not None and d.grad.abs().item() > 0
