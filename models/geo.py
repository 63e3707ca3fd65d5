"""Differentiable spherical geodesy for seismic EMIN (report section 4.5, Equations 2–3).

Conventions (all functions):

* angles in **degrees** (latitude, longitude, back azimuth), distances in
  **km** on a sphere of radius ``radius_km`` (default 6378.1 km, the
  report's Earth radius); longitudes are returned wrapped to ``(-180, 180]``.
* the bearing given to :func:`destination` is the back azimuth **as
  measured at the station**: the direction, clockwise from north, in which
  one looks from the station toward the event. So
  ``destination(station, baz, dist)`` is the event location. This is the
  ``baz`` that ``obspy.geodetics.gps2dist_azimuth(event_lat, event_lon,
  station_lat, station_lon)`` returns as its third value, and the
  ``az`` argument of ``pyproj.Geod.fwd`` started at the station.
* every function works in float32 and float64 and on any device, following
  its inputs; gradients stay finite everywhere, including at the poles
  (atan2 forms and double-``where`` guards instead of ``asin``).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The sphere radius of the report's geodesy (6378.1 km, ≈ the equatorial radius); the one
#: radius of :mod:`models` (location errors, EMIN, synthetic data). Not the 6371 km mean radius.
REPORT_EARTH_RADIUS_KM = 6378.1

__all__ = [
    "REPORT_EARTH_RADIUS_KM",
    "baz_from_sincos",
    "bearing_deg",
    "destination",
    "haversine_km",
    "location_from_prediction",
    "wrap_lon_deg",
]


def _tensors(*xs: Tensor | float) -> list[Tensor]:
    """Turn mixed tensor/float inputs into tensors on the first tensor's device and dtype."""
    ref = next((x for x in xs if isinstance(x, Tensor)), None)
    if ref is None:
        return [torch.as_tensor(x, dtype=torch.float64) for x in xs]
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    return [torch.as_tensor(x, dtype=dtype, device=ref.device) for x in xs]


def _safe_atan2(y: Tensor, x: Tensor) -> Tensor:
    """``atan2(y, x)`` whose gradient is finite (zero) at ``y = x = 0`` instead of NaN."""
    bad = (x == 0) & (y == 0)
    x_s = torch.where(bad, torch.ones_like(x), x)
    y_s = torch.where(bad, torch.zeros_like(y), y)
    return torch.where(bad, torch.zeros_like(y), torch.atan2(y_s, x_s))


def _safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(max(x, 0))`` with a zero gradient at 0 (plain sqrt gives inf · 0 = NaN)."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


def wrap_lon_deg(lon: Tensor) -> Tensor:
    """Wrap longitudes (degrees) into ``(-180, 180]``; gradient 1."""
    return 180.0 - torch.remainder(180.0 - lon, 360.0)


def destination(
    lat_deg: Tensor | float,
    lon_deg: Tensor | float,
    baz_deg: Tensor | float,
    dist_km: Tensor | float,
    radius_km: float = REPORT_EARTH_RADIUS_KM,
) -> tuple[Tensor, Tensor]:
    """Point reached from ``(lat, lon)`` after ``dist_km`` along bearing ``baz_deg`` on a sphere.

    With the station as the start point and the station→event back azimuth
    as bearing, this is the event location: the report's Equations 2–3
    (``X`` = latitude, ``Y`` = longitude) with ``dist`` normalised by the
    Earth radius. It is evaluated in the equivalent atan2 form, in the
    frame rotated to the station's meridian::

        z = sin φ1 cos δ + cos φ1 sin δ cos θ        (= sin X, Equation 2)
        x = cos φ1 cos δ − sin φ1 sin δ cos θ
        y = sin δ sin θ
        X = atan2(z, √(x² + y²)),   Y = λ1 + atan2(y, x)

    (``atan2(y, x)`` equals Equation 3's arctan term with its numerator and
    denominator both divided by ``cos φ1``), which keeps gradients finite
    where the destination or the start is at a pole. Returns
    ``(lat_deg, lon_deg)``, broadcast over the inputs, longitude in
    ``(-180, 180]``.
    """
    lat, lon, baz, dist = _tensors(lat_deg, lon_deg, baz_deg, dist_km)
    phi1 = torch.deg2rad(lat)
    theta = torch.deg2rad(baz)
    delta = dist / radius_km
    s_phi, c_phi = torch.sin(phi1), torch.cos(phi1)
    s_th, c_th = torch.sin(theta), torch.cos(theta)
    s_d, c_d = torch.sin(delta), torch.cos(delta)
    z = s_phi * c_d + c_phi * s_d * c_th
    x = c_phi * c_d - s_phi * s_d * c_th
    y = s_d * s_th
    r = torch.sqrt(x * x + y * y + 1e-30)
    lat2 = torch.rad2deg(torch.atan2(z, r))
    lon2 = wrap_lon_deg(lon + torch.rad2deg(_safe_atan2(y, x)))
    return lat2, lon2


def haversine_km(
    lat1: Tensor | float,
    lon1: Tensor | float,
    lat2: Tensor | float,
    lon2: Tensor | float,
    radius_km: float = REPORT_EARTH_RADIUS_KM,
) -> Tensor:
    """Great-circle distance (km) between two points on the sphere (location error).

    Haversine in its ``2·atan2(√h, √(1−h))`` form: accurate for small and
    near-antipodal distances, gradient 0 (not NaN) at zero distance.
    """
    a_lat, a_lon, b_lat, b_lon = _tensors(lat1, lon1, lat2, lon2)
    p1, p2 = torch.deg2rad(a_lat), torch.deg2rad(b_lat)
    s_lat = torch.sin(0.5 * (p2 - p1))
    s_lon = torch.sin(0.5 * torch.deg2rad(b_lon - a_lon))
    h = (s_lat * s_lat + torch.cos(p1) * torch.cos(p2) * s_lon * s_lon).clamp(0.0, 1.0)
    return 2.0 * radius_km * torch.atan2(_safe_sqrt(h), _safe_sqrt(1.0 - h))


def baz_from_sincos(sin_baz: Tensor, cos_baz: Tensor) -> Tensor:
    """Back azimuth in degrees, ``[0, 360)``, from (possibly unnormalised) sin/cos predictions."""
    return torch.remainder(torch.rad2deg(_safe_atan2(sin_baz, cos_baz)), 360.0)


def location_from_prediction(
    station_lat_deg: Tensor | float,
    station_lon_deg: Tensor | float,
    dist_km: Tensor,
    sin_baz: Tensor,
    cos_baz: Tensor,
    *,
    radius_km: float = REPORT_EARTH_RADIUS_KM,
) -> tuple[Tensor, Tensor]:
    """Event ``(lat_deg, lon_deg)`` from a network's (distance, sin BAZ, cos BAZ) at a station.

    The BAZ is ``atan2(sin, cos)``, so the sin/cos head need not be
    normalised; the location follows by :func:`destination`. Differentiable
    in all three predictions, for use inside :func:`models.emin.seismic_emin`.
    """
    s_lat, s_lon, dist, s, c = _tensors(station_lat_deg, station_lon_deg, dist_km, sin_baz, cos_baz)
    theta = _safe_atan2(s, c)
    return destination(s_lat, s_lon, torch.rad2deg(theta), dist, radius_km)


def bearing_deg(
    lat1: Tensor | float, lon1: Tensor | float, lat2: Tensor | float, lon2: Tensor | float
) -> Tensor:
    """Initial bearing (degrees, ``[0, 360)``) from point 1 to point 2 on the sphere."""
    a_lat, a_lon, b_lat, b_lon = _tensors(lat1, lon1, lat2, lon2)
    p1, p2 = torch.deg2rad(a_lat), torch.deg2rad(b_lat)
    dl = torch.deg2rad(b_lon - a_lon)
    y = torch.sin(dl) * torch.cos(p2)
    x = torch.cos(p1) * torch.sin(p2) - torch.sin(p1) * torch.cos(p2) * torch.cos(dl)
    return torch.remainder(torch.rad2deg(torch.atan2(y, x)), 360.0)
