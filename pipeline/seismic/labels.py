"""Per-trace labels (distance, back azimuth), great-circle/geodesic helpers and event splits."""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "val", "test")


def great_circle_deg(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Spherical great-circle distance in degrees (as obspy.taup expects), vectorised."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def geodesic_inv(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WGS84 geodesic (distance_km, azimuth 1→2 deg in [0,360), azimuth 2→1), vectorised (pyproj)."""
    from pyproj import Geod

    az12, az21, dist_m = Geod(ellps="WGS84").inv(
        np.asarray(lon1, float), np.asarray(lat1, float), np.asarray(lon2, float), np.asarray(lat2, float)
    )
    return np.asarray(dist_m) / 1000.0, np.mod(np.asarray(az12), 360.0), np.mod(np.asarray(az21), 360.0)


def station_event_labels(
    station_lat: np.ndarray, station_lon: np.ndarray, event_lat: np.ndarray, event_lon: np.ndarray
) -> dict[str, np.ndarray]:
    """Labels ``distance_km`` and ``back_azimuth_deg`` (+ sin/cos) per trace.

    Computed with ``obspy.geodetics.gps2dist_azimuth(station_lat, station_lon, event_lat,
    event_lon)``: the azimuth at the station toward the event (the back azimuth), WGS84.
    One call per trace (~20 µs) — the contract names this function, so it is used verbatim.
    """
    from obspy.geodetics import gps2dist_azimuth

    n = len(station_lat)
    dist = np.empty(n)
    baz = np.empty(n)
    for i in range(n):
        d, az, _ = gps2dist_azimuth(
            float(station_lat[i]), float(station_lon[i]), float(event_lat[i]), float(event_lon[i])
        )
        dist[i], baz[i] = d / 1000.0, az % 360.0
    baz = np.where(baz >= 360.0, 0.0, baz)
    rad = np.radians(baz)
    return {
        "distance_km": dist,
        "back_azimuth_deg": baz,
        "sin_baz": np.sin(rad),
        "cos_baz": np.cos(rad),
    }


def event_split(
    event_ids: np.ndarray | list[str], seed: int, fractions: tuple[float, float, float]
) -> np.ndarray:
    """Deterministic train/val/test per event from a hash of (seed, event_id).

    Every trace of an event gets the event's split, and the split of an event does not depend
    on which other events are ingested or in what order (so appends keep earlier splits).
    Fractions hold in expectation (80/10/10 by default), not exactly.
    """
    total = sum(fractions)
    c1 = fractions[0] / total
    c2 = (fractions[0] + fractions[1]) / total
    out = []
    for eid in event_ids:
        h = hashlib.sha256(f"{seed}:{eid}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2**64
        out.append(SPLITS[0] if u < c1 else SPLITS[1] if u < c2 else SPLITS[2])
    return np.asarray(out, dtype=object)
