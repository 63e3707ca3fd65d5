"""Seismic curation computations: travel times, labels, batched preprocessing and spectrograms.

Pure numpy/scipy on arrays of many traces at once (no file I/O here, no Prefect):
``pipeline.io.waveforms`` reads files, ``pipeline.seismic.store`` writes the Zarr store.

Spectrogram definition (the dataset contract, see docs/seismic.md): for a window ``x`` of
``n_frames * nperseg`` samples at ``fs`` Hz, :func:`batched_log_spectrogram` equals::

    f, t, S = scipy.signal.spectrogram(x, fs=fs, window="hann", nperseg=nperseg, noverlap=0,
                                       detrend="constant", scaling="density", mode="psd")
    out = np.log10(S + eps)            # eps = 1e-20 by default

with ``nperseg = fs * 1 s`` (1 s time and 1 Hz frequency resolution); ``window="hann"`` is
scipy's periodic Hann window (``get_window("hann", nperseg)``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.signal

from pipeline.errors import InputError

EARTH_RADIUS_KM = 6371.0
KM_PER_DEG = 2 * np.pi * EARTH_RADIUS_KM / 360.0
CHANNELS = ("Z", "N", "E")
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------------------
# Travel times: one taup table, interpolated
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Geometry and labels
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Batched preprocessing
# --------------------------------------------------------------------------------------------


def orientation_matrix(azimuth_deg: np.ndarray, dip_deg: np.ndarray) -> np.ndarray:
    """[..., 3] unit vectors in (Z up, N, E) of components with SEED azimuth/dip (dip + down)."""
    az = np.radians(azimuth_deg)
    dip = np.radians(dip_deg)
    return np.stack([-np.sin(dip), np.cos(az) * np.cos(dip), np.sin(az) * np.cos(dip)], axis=-1)


def rotate_to_zne(data: np.ndarray, azimuth_deg: np.ndarray, dip_deg: np.ndarray) -> np.ndarray:
    """Rotate [n, 3, samples] component data to Z, N, E given per-component azimuth/dip [n, 3].

    Each recorded component is the projection of ground motion on its axis, ``data = M @ zne``;
    this solves for ``zne`` in one batched call (the same algebra as obspy's ``rotate2zne``).
    """
    m = orientation_matrix(azimuth_deg, dip_deg)  # [n, 3 components, 3 zne]
    inv = np.linalg.inv(m)  # [n, 3 zne, 3 components]
    return np.einsum("nij,njs->nis", inv, data.astype(np.float64)).astype(data.dtype)


def cosine_taper(n: int, fraction: float) -> np.ndarray:
    """Hann-shaped taper of ``fraction`` of the length at each end (like obspy ``taper('hann')``)."""
    w = np.ones(n)
    m = int(np.floor(n * fraction))
    if m > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
        w[:m] = ramp
        w[n - m :] = ramp[::-1]
    return w


def resample_batch(data: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Resample [..., samples] from ``rate_in`` to ``rate_out`` Hz with a polyphase FIR (batched)."""
    if rate_in == rate_out:
        return data
    from fractions import Fraction

    frac = Fraction(rate_out / rate_in).limit_denominator(1000)
    out = scipy.signal.resample_poly(data, frac.numerator, frac.denominator, axis=-1)
    return np.asarray(out, dtype=data.dtype)


def detrend_linear(data: np.ndarray) -> np.ndarray:
    """Each trace minus its least-squares line, in float64 (``scipy.signal.detrend(type="linear")``).

    Closed form with row-wise reductions instead of scipy's ``lstsq`` over all traces: a BLAS
    call splits its work by thread count, so a trace's last bits would depend on the machine,
    the batch it is in and the BLAS threads (a 2-worker Dask run differed from a threaded one
    in one value of 4,113 traces). Here every trace is computed on its own, the same way.
    """
    x = np.array(data, dtype=np.float64)
    t = np.arange(x.shape[-1], dtype=np.float64)
    t -= t.mean()
    x -= x.mean(axis=-1, keepdims=True)
    slope = (x * t).sum(axis=-1, keepdims=True) / (t * t).sum()
    x -= slope * t
    return x


def preprocess_batch(
    data: np.ndarray,
    fs: float,
    *,
    freqmin_hz: float,
    freqmax_hz: float,
    corners: int,
    taper_fraction: float,
) -> np.ndarray:
    """Linear detrend, Hann taper and zero-phase Butterworth band-pass of [..., samples], batched.

    float64 throughout: band-stopped bins have power ~1e-10 of the peak, below float32 resolution.
    """
    x = detrend_linear(data)
    x *= cosine_taper(x.shape[-1], taper_fraction)
    sos = scipy.signal.butter(corners, [freqmin_hz, freqmax_hz], btype="bandpass", fs=fs, output="sos")
    return np.asarray(scipy.signal.sosfiltfilt(sos, x, axis=-1), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Batched spectrograms
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _psd_window(nperseg: int, fs: float, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """scipy's periodic Hann window and the one-sided PSD scale per frequency
    (1/(fs·Σw²), doubled except at 0 and, for even nperseg, Nyquist)."""
    win = scipy.signal.get_window("hann", nperseg)
    n_freq = nperseg // 2 + 1
    scale = np.full(n_freq, 1.0 / (fs * np.sum(win**2)))
    scale[1 : (nperseg // 2 if nperseg % 2 == 0 else n_freq)] *= 2.0
    return win.astype(dtype), scale.astype(dtype)


def batched_log_spectrogram(
    x: np.ndarray, fs: float, *, nperseg: int, eps: float = 1e-20, workers: int = -1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log10 power spectral density of [..., n_frames*nperseg] windows, all traces at once.

    Equals ``np.log10(scipy.signal.spectrogram(x, fs, window="hann", nperseg=nperseg,
    noverlap=0, detrend="constant", scaling="density", mode="psd")[2] + eps)`` with the frame
    axis last. Frames do not overlap, so the frame view is a reshape; every frame of every
    trace is de-meaned, windowed and transformed by one multi-threaded ``scipy.fft.rfft``
    call per block of frames. Computed in the input's precision (float64 unless x is
    float32). Returns (freq_hz [nperseg//2+1], frame-centre time_s [n_frames],
    values [..., freq, time] float32).
    """
    n = x.shape[-1]
    n_frames = n // nperseg
    if n_frames < 1:
        raise InputError(f"window of {n} samples is shorter than one {nperseg}-sample frame")
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    win, scale = _psd_window(nperseg, float(fs), np.dtype(dtype).name)
    n_freq = nperseg // 2 + 1
    frames = np.ascontiguousarray(x[..., : n_frames * nperseg], dtype=dtype).reshape(-1, nperseg)
    out = np.empty((frames.shape[0], n_freq), dtype=np.float32)
    # Work buffers are allocated once: fresh large temporaries per block cost more in page
    # faults than the FFT itself.
    step = min(16_384, frames.shape[0])
    work = np.empty((step, nperseg), dtype=dtype)
    power = np.empty((step, n_freq), dtype=dtype)
    imag2 = np.empty((step, n_freq), dtype=dtype)
    for i in range(0, frames.shape[0], step):
        k = min(step, frames.shape[0] - i)
        block, pw, im2 = work[:k], power[:k], imag2[:k]
        np.subtract(frames[i : i + k], frames[i : i + k].mean(axis=1, keepdims=True), out=block)
        block *= win
        spec = scipy.fft.rfft(block, axis=1, workers=workers)
        np.square(spec.real, out=pw)
        np.square(spec.imag, out=im2)
        pw += im2
        pw *= scale
        pw += dtype(eps)
        np.log10(pw, out=pw)
        out[i : i + k] = pw
    values = out.reshape(*x.shape[:-1], n_frames, n_freq)
    freq = np.fft.rfftfreq(nperseg, 1.0 / fs)
    time = (np.arange(n_frames) * nperseg + nperseg / 2) / fs
    return freq, time, np.ascontiguousarray(np.swapaxes(values, -1, -2))


# --------------------------------------------------------------------------------------------
# Splits grouped by event
# --------------------------------------------------------------------------------------------


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
