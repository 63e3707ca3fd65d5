"""First-P and first-S travel times: one obspy.taup table per model, interpolated for every trace.

Also the one Earth radius the seismic side uses for degree <-> km conversions
(:data:`MEAN_EARTH_RADIUS_KM`, the IUGG mean radius obspy.taup's models assume).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.errors import InputError

#: Mean Earth radius (km) for great-circle degree <-> km conversions.
MEAN_EARTH_RADIUS_KM = 6371.0
#: Kilometres per great-circle degree on the mean-radius sphere (about 111.195 km).
KM_PER_DEG = 2 * np.pi * MEAN_EARTH_RADIUS_KM / 360.0


@dataclass(frozen=True)
class TravelTimeTable:
    """First P and S travel times (s) on a distance (deg) × source depth (km) grid (iasp91).

    ``TauPyModel.get_travel_times`` costs ~7-14 ms a call, so the table is built once (and
    cached on disk) and bilinearly interpolated for every trace.
    """

    model: str
    distance_deg: np.ndarray
    depth_km: np.ndarray
    p_s: np.ndarray  # [n_distance, n_depth]
    s_s: np.ndarray

    def _interp(self, table: np.ndarray, distance_deg: np.ndarray, depth_km: np.ndarray) -> np.ndarray:
        d = np.asarray(distance_deg, dtype=np.float64)
        z = np.asarray(depth_km, dtype=np.float64)
        if np.any(d < 0) or np.any(d > self.distance_deg[-1]) or np.any(~np.isfinite(d)):
            raise InputError(
                f"distance outside the travel-time table (0-{self.distance_deg[-1]:.2f} deg): "
                f"max {np.nanmax(d):.3f} deg",
                fix="raise max_distance_km or build the table with a larger max_distance_deg",
            )
        zc = np.clip(z, self.depth_km[0], self.depth_km[-1])
        fi = np.interp(d, self.distance_deg, np.arange(self.distance_deg.size))
        fj = np.interp(zc, self.depth_km, np.arange(self.depth_km.size))
        i0 = np.minimum(np.floor(fi).astype(int), self.distance_deg.size - 2)
        j0 = np.minimum(np.floor(fj).astype(int), self.depth_km.size - 2)
        wi, wj = fi - i0, fj - j0
        return (
            table[i0, j0] * (1 - wi) * (1 - wj)
            + table[i0 + 1, j0] * wi * (1 - wj)
            + table[i0, j0 + 1] * (1 - wi) * wj
            + table[i0 + 1, j0 + 1] * wi * wj
        )

    def p_time(self, distance_deg: np.ndarray, depth_km: np.ndarray) -> np.ndarray:
        """Predicted first-P travel time (s), vectorised."""
        return self._interp(self.p_s, distance_deg, depth_km)

    def s_time(self, distance_deg: np.ndarray, depth_km: np.ndarray) -> np.ndarray:
        """Predicted first-S travel time (s), vectorised."""
        return self._interp(self.s_s, distance_deg, depth_km)


def _cache_dir() -> Path:
    root = os.environ.get("EMIN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "emin-fusion")
    return Path(root)


def _compute_table(model: str, distances: np.ndarray, depths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from obspy.taup import TauPyModel

    taup = TauPyModel(model)
    p = np.full((distances.size, depths.size), np.nan)
    s = np.full_like(p, np.nan)
    for i, dist in enumerate(distances):
        for j, dep in enumerate(depths):
            arrivals = taup.get_travel_times(
                source_depth_in_km=float(dep), distance_in_degree=float(dist), phase_list=["p", "P", "s", "S"]
            )
            pt = [a.time for a in arrivals if a.name.upper().startswith("P")]
            st = [a.time for a in arrivals if a.name.upper().startswith("S")]
            p[i, j] = min(pt) if pt else np.nan
            s[i, j] = min(st) if st else np.nan
    for arr in (p, s):  # fill rare shadow gaps along distance
        for j in range(arr.shape[1]):
            col = arr[:, j]
            bad = ~np.isfinite(col)
            if bad.any():
                col[bad] = np.interp(distances[bad], distances[~bad], col[~bad])
    return p, s


@lru_cache(maxsize=4)
def travel_time_table(
    model: str = "iasp91", max_distance_deg: float = 5.0, step_deg: float = 0.1, max_depth_km: float = 40.0
) -> TravelTimeTable:
    """The P/S travel-time table for ``model``, computed with obspy.taup once and cached on disk.

    Grid: distance 0..max_distance_deg every ``step_deg``; depth 0..max_depth_km every 5 km.
    The disk cache lives in ``$EMIN_CACHE_DIR`` (default ``~/.cache/emin-fusion``).
    """
    distances = np.round(np.arange(0.0, max_distance_deg + step_deg / 2, step_deg), 6)
    depths = np.arange(0.0, max_depth_km + 2.5, 5.0)
    key = hashlib.sha256(f"{model}|{distances.tolist()}|{depths.tolist()}".encode()).hexdigest()[:16]
    cache = _cache_dir() / f"taup_{model}_{key}.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                return TravelTimeTable(model, distances, depths, z["p"], z["s"])
        except (OSError, ValueError, KeyError):
            pass
    p, s = _compute_table(model, distances, depths)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, p=p, s=s)
        os.replace(tmp, cache)
    except OSError:
        pass
    return TravelTimeTable(model, distances, depths, p, s)
