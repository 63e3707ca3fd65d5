"""Synthetic ground motion for one event at many stations (the physics of the demo network).

Band-limited noise shaped by distance-dependent corner frequencies, P and S envelopes, P
polarised along the event→station direction, S mostly transverse, background noise; all
observations of an event at once. :mod:`pipeline.synthetic.seismic_network` lays out the
stations and events and writes the files.
"""

from __future__ import annotations

import numpy as np

FS = 100.0  # sampling rate of every synthetic channel (Hz)


def _bandlimited(rng: np.random.Generator, shape: tuple[int, ...], n: int, gain: np.ndarray) -> np.ndarray:
    """Unit-RMS noise [..., n] shaped by the amplitude response ``gain`` [..., n//2+1] (batched FFT)."""
    white = rng.standard_normal((*shape, n), dtype=np.float32)
    spec = np.fft.rfft(white, axis=-1) * gain
    x = np.fft.irfft(spec, n=n, axis=-1).astype(np.float32)
    x /= np.sqrt(np.mean(x**2, axis=-1, keepdims=True)) + 1e-12
    return x


def _envelope(t: np.ndarray, t0: np.ndarray, rise: float, tau: np.ndarray) -> np.ndarray:
    dt = t[None, :] - t0[:, None]
    pos = np.clip(dt, 0.0, None)
    return np.where(dt >= 0, (1 - np.exp(-pos / rise)) * np.exp(-pos / tau[:, None]), 0.0).astype(np.float32)


def synthesize_event(
    rng: np.random.Generator,
    *,
    distance_km: np.ndarray,
    depth_km: float,
    magnitude: float,
    az_event_to_station_deg: np.ndarray,
    s_minus_p_s: np.ndarray,
    station_theta_deg: np.ndarray,
    noise_rms: np.ndarray,
    pre_p_s: float,
    record_s: float,
) -> np.ndarray:
    """Ground motion (Z up, N, E) in counts, [n_obs, 3, n_samples] float32, P at ``pre_p_s``.

    P: radial motion ``pol * (cos i, sin i cos az, sin i sin az)`` with az the event→station
    azimuth, so on 3C sensors the horizontal P motion points away from the event (toward it
    for negative polarity, with Z flipped too). S: transverse plus some SV. The only azimuth
    dependence a vertical sensor sees is a weak (±10-15 %) path term in corner frequency and
    amplitude. Vectorised over every observation of the event.
    """
    k = distance_km.size
    n = round(record_s * FS)
    t = np.arange(n) / FS
    f = np.fft.rfftfreq(n, 1 / FS)
    r = np.sqrt(distance_km**2 + depth_km**2)
    az = np.radians(az_event_to_station_deg)
    path = np.cos(az - np.radians(station_theta_deg))
    fc_p = (2.0 + 10.0 * np.exp(-distance_km / 100.0)) * (1 + 0.1 * path)
    fc_s = 0.6 * fc_p
    hp = (f / 0.5) ** 2 / (1 + (f / 0.5) ** 2)

    def gain(fc: np.ndarray) -> np.ndarray:
        return (hp[None, :] / (1 + (f[None, :] / fc[:, None]) ** 2)).astype(np.float32)

    g_p, g_s = gain(fc_p), gain(fc_s)
    sp = _bandlimited(rng, (k,), n, g_p)
    s_t = _bandlimited(rng, (k,), n, g_s)
    s_v = _bandlimited(rng, (k,), n, g_s)
    noise_gain = (hp / (1 + (f / 4.0) ** 1.5)).astype(np.float32)
    noise = _bandlimited(rng, (k, 3), n, noise_gain) * noise_rms[:, None, None].astype(np.float32)

    amp_p = noise_rms * 10 ** (magnitude + 0.3) * (10.0 / r) ** 1.3 * np.exp(-0.002 * r) * (1 + 0.15 * path)
    amp_s = 2.0 * amp_p
    env_p = _envelope(t, np.full(k, pre_p_s), 0.05, 1.5 + distance_km / 40.0) * amp_p[:, None].astype(
        np.float32
    )
    env_s = _envelope(t, pre_p_s + s_minus_p_s, 0.1, 3.0 + distance_km / 25.0) * amp_s[:, None].astype(
        np.float32
    )
    pol = rng.choice(np.array([-1.0, 1.0]), size=k)
    sin_i = 0.25 + 0.45 * distance_km / (distance_km + depth_km + 10.0)
    cos_i = np.sqrt(1 - sin_i**2)
    p_motion = sp * env_p * pol[:, None].astype(np.float32)
    radial = p_motion * sin_i[:, None] + 0.6 * s_v * env_s
    transverse = s_t * env_s
    z = p_motion * cos_i[:, None] + 0.3 * s_v * env_s
    ca, sa = np.cos(az)[:, None], np.sin(az)[:, None]
    north = radial * ca - transverse * sa
    east = radial * sa + transverse * ca
    return (np.stack([z, north, east], axis=1) + noise).astype(np.float32)
