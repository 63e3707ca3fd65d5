"""Batched signal processing of many traces at once: rotation, detrend, taper, filter, resample, spectrograms.

Pure numpy/scipy (no file I/O here, no Prefect): ``pipeline.io.waveforms`` reads files,
``pipeline.seismic.windows`` cuts the windows, ``pipeline.seismic.store`` writes the Zarr store.

Spectrogram definition (the dataset contract, see docs/seismic.md): for a window ``x`` of
``n_frames * nperseg`` samples at ``fs`` Hz, :func:`batched_log_spectrogram` equals::

    f, t, S = scipy.signal.spectrogram(x, fs=fs, window="hann", nperseg=nperseg, noverlap=0,
                                       detrend="constant", scaling="density", mode="psd")
    out = np.log10(S + eps)            # eps = 1e-20 by default

with ``nperseg = fs * 1 s`` (1 s time and 1 Hz frequency resolution); ``window="hann"`` is
scipy's periodic Hann window (``get_window("hann", nperseg)``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.signal

from pipeline.errors import InputError

CHANNELS = ("Z", "N", "E")


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
    return np.einsum("nij,njs->nis", inv, np.asarray(data, dtype=np.float64)).astype(data.dtype, copy=False)


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


def detrend_linear(data: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """Each trace minus its least-squares line, in float64 (``scipy.signal.detrend(type="linear")``).

    Closed form with row-wise reductions instead of scipy's ``lstsq`` over all traces: a BLAS
    call splits its work by thread count, so a trace's last bits would depend on the machine,
    the batch it is in and the BLAS threads (a 2-worker Dask run differed from a threaded one
    in one value of 4,113 traces). Here every trace is computed on its own, the same way.
    ``overwrite``: detrend a float64 ``data`` in place (no copy).
    """
    x = np.asarray(data, dtype=np.float64) if overwrite else np.array(data, dtype=np.float64)
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
    overwrite: bool = False,
) -> np.ndarray:
    """Linear detrend, Hann taper and zero-phase Butterworth band-pass of [..., samples], batched.

    float64 throughout: band-stopped bins have power ~1e-10 of the peak, below float32 resolution.
    ``overwrite``: ``data`` (float64) may be used as work space.
    """
    x = detrend_linear(data, overwrite=overwrite)
    x *= cosine_taper(x.shape[-1], taper_fraction)
    sos = _bandpass_sos(corners, freqmin_hz, freqmax_hz, fs).copy()  # scipy wants it writable
    return np.asarray(scipy.signal.sosfiltfilt(sos, x, axis=-1), dtype=np.float64)


@lru_cache(maxsize=8)
def _bandpass_sos(corners: int, freqmin_hz: float, freqmax_hz: float, fs: float) -> np.ndarray:
    """Second-order sections of the Butterworth band-pass, designed once per parameter set
    (``scipy.signal.butter`` costs ~1.4 ms, as much as filtering a few traces)."""
    return scipy.signal.butter(corners, [freqmin_hz, freqmax_hz], btype="bandpass", fs=fs, output="sos")


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


#: Channel pairs of :func:`batched_cross_spectrum` (Z with each horizontal).
CROSS_PAIRS = ("ZN", "ZE")
CROSS_SPECTRUM_DEFINITION = (
    "Re(Z·H*) / (|Z|^2 + |N|^2 + |E|^2) per frequency of each de-meaned, Hann-windowed, non-overlapping "
    "frame of the spectrogram (same ZNE window), H = N for pair ZN and E for pair ZE; in [-0.5, 0.5]; "
    "0 for 1C sensors and frames without power"
)


def batched_cross_spectrum(x: np.ndarray, *, nperseg: int, workers: int = -1) -> np.ndarray:
    """Normalised real Z–N and Z–E cross-spectra of [..., 3 (Z, N, E), n_frames*nperseg] windows.

    Per frame (the de-meaned, Hann-windowed, non-overlapping frames of
    :func:`batched_log_spectrogram`) and frequency: ``Re(Z·H*) / (|Z|² + |N|² + |E|²)`` for
    H = N, E, in [-0.5, 0.5] (0 where the frame has no power). Log power drops polarity, so a
    P arrival's back azimuth is ambiguous by quadrant there; these keep it: for P motion
    along the ray the pair is proportional to the horizontal direction of motion, whatever
    the source polarity (Z and H flip together). Returns [..., 2 (ZN, ZE), freq, time] float32.
    """
    n_frames = x.shape[-1] // nperseg
    if x.shape[-2] != 3 or n_frames < 1:
        raise InputError(f"cross-spectra need [..., 3, >= {nperseg}] windows, got shape {x.shape}")
    win = scipy.signal.get_window("hann", nperseg)
    frames = np.asarray(x[..., : n_frames * nperseg], dtype=np.float64).reshape(
        *x.shape[:-1], n_frames, nperseg
    )
    lead = x.shape[:-2]
    out = np.zeros((*lead, 2, n_frames, nperseg // 2 + 1), dtype=np.float32)
    flat_x = frames.reshape(-1, 3, n_frames, nperseg)
    flat_out = out.reshape(-1, 2, n_frames, nperseg // 2 + 1)
    step = max(1, 16_384 // (3 * n_frames))  # traces per block: bounded work buffers
    for i in range(0, flat_x.shape[0], step):
        block = flat_x[i : i + step]
        spec = scipy.fft.rfft((block - block.mean(axis=-1, keepdims=True)) * win, axis=-1, workers=workers)
        power = (spec.real**2 + spec.imag**2).sum(axis=1)  # [b, frames, freq]
        cross = (spec[:, :1] * np.conj(spec[:, 1:])).real  # [b, 2, frames, freq]
        np.divide(cross, power[:, None], out=cross, where=power[:, None] > 0)
        cross[np.broadcast_to(power[:, None] <= 0, cross.shape)] = 0.0
        flat_out[i : i + step] = cross
    return np.ascontiguousarray(np.swapaxes(out, -1, -2))
