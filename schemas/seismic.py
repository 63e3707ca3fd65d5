"""Seismic curation parameters, inputs and the store contract validator (docs/seismic.md)."""

from __future__ import annotations

import glob as _glob
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = "1.0"
EMIN_KIND = "seismic_spectrograms"

# Parameters that shape the stored arrays: an append must use the same values as the store.
DATA_SHAPING_PARAMS = (
    "pre_p_s",
    "window_s",
    "margin_s",
    "sampling_rate_hz",
    "frame_s",
    "freqmin_hz",
    "freqmax_hz",
    "filter_corners",
    "taper_fraction",
    "log_eps",
    "taup_model",
    "split_seed",
    "split_fractions",
    "traces_per_chunk",
    "keep_waveforms",
)


class SeismicCurationParams(BaseModel):
    """Every parameter of seismic curation; defaults follow the report (section 4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pre_p_s: float = Field(default=10.0, ge=0, description="window start before the P arrival (s)")
    window_s: float = Field(default=120.0, gt=0, description="window length (s); frames = window_s / frame_s")
    margin_s: float = Field(default=10.0, ge=0, description="extra data each side for taper/filter (s)")
    sampling_rate_hz: float = Field(
        default=100.0, gt=0, description="common rate every trace is resampled to"
    )
    frame_s: float = Field(
        default=1.0, gt=0, description="spectrogram frame = 1 s time and 1/frame_s Hz resolution"
    )
    freqmin_hz: float = Field(default=1.0, gt=0)
    freqmax_hz: float = Field(default=45.0, gt=0)
    filter_corners: int = Field(default=4, ge=1, le=10)
    taper_fraction: float = Field(default=0.05, ge=0, le=0.5)
    log_eps: float = Field(default=1e-20, gt=0, description="spectrogram = log10(PSD + log_eps)")
    gap_policy: Literal["reject", "fill"] = "reject"
    max_horizontal_error_km: float | None = Field(
        default=1.0,
        description="reject events whose catalog horizontal error is >= this (report: < 1 km); None = keep all",
    )
    missing_horizontal_error: Literal["reject", "keep"] = "reject"
    max_distance_km: float = Field(default=500.0, gt=0)
    clip_counts: float | None = Field(
        default=8_388_607.0, description="|raw sample| >= this is clipped (24-bit)"
    )
    reject_inventory_rate_mismatch: bool = False
    taup_model: str = "iasp91"
    split_seed: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    keep_waveforms: bool = Field(
        default=False,
        description="also store the preprocessed ZNE windows as `waveform` (trace, channel, sample) float32 "
        "(needed by `emin export seisbench`; ~4x the spectrogram volume)",
    )
    traces_per_chunk: int = Field(
        default=64, ge=16, description="traces per Zarr chunk (>= 1 MB at 3x51x120 float32)"
    )

    @model_validator(mode="after")
    def _check(self) -> SeismicCurationParams:
        if self.freqmax_hz >= self.sampling_rate_hz / 2:
            raise ValueError(
                f"freqmax_hz={self.freqmax_hz} must be below Nyquist ({self.sampling_rate_hz / 2} Hz)"
            )
        if self.freqmin_hz >= self.freqmax_hz:
            raise ValueError("freqmin_hz must be below freqmax_hz")
        nper = self.sampling_rate_hz * self.frame_s
        if abs(nper - round(nper)) > 1e-9:
            raise ValueError("sampling_rate_hz * frame_s must be a whole number of samples")
        frames = self.window_s / self.frame_s
        if abs(frames - round(frames)) > 1e-9:
            raise ValueError("window_s must be a whole number of frames")
        if any(f < 0 for f in self.split_fractions) or sum(self.split_fractions) <= 0:
            raise ValueError("split_fractions must be non-negative and sum to > 0")
        return self

    @property
    def nperseg(self) -> int:
        """Samples per spectrogram frame."""
        return round(self.sampling_rate_hz * self.frame_s)

    @property
    def n_frames(self) -> int:
        """Time frames per trace."""
        return round(self.window_s / self.frame_s)


class SeismicInputs(BaseModel):
    """The files one curation run reads."""

    model_config = ConfigDict(extra="forbid")

    waveforms: list[Path]
    inventory: Path
    events: Path
    picks: Path | None = None

    @classmethod
    def from_glob(
        cls, waveforms: str, inventory: str | Path, events: str | Path, picks: str | Path | None = None
    ) -> SeismicInputs:
        """Expand a waveform glob (sorted, so runs are deterministic)."""
        files = sorted(Path(p) for p in _glob.glob(str(waveforms), recursive=True) if Path(p).is_file())
        return cls(
            waveforms=files,
            inventory=Path(inventory),
            events=Path(events),
            picks=None if picks is None else Path(picks),
        )


def as_str(values: object) -> np.ndarray:
    """Any string array (numpy U, StringDType as zarr v3 returns, object) as a numpy U array."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype="<U1")
    return np.array([str(v) for v in arr.ravel().tolist()], dtype=str).reshape(arr.shape)


TRACE_COORDS = {
    "trace_id": "U",
    "event_id": "U",
    "network": "U",
    "station": "U",
    "location": "U",
    "channel_codes": "U",
    "sensor_type": "U",
    "split": "U",
    "source_file": "U",
    "p_source": "U",
    "station_latitude": "f",
    "station_longitude": "f",
    "event_latitude": "f",
    "event_longitude": "f",
    "event_depth_km": "f",
    "event_magnitude": "f",
    "event_horizontal_error_km": "f",
    "distance_km": "f",
    "back_azimuth_deg": "f",
    "sin_baz": "f",
    "cos_baz": "f",
    "p_arrival_time": "M",
    "event_time": "M",
    "window_start_time": "M",
    "n_gap_samples": "i",
}


def validate_seismic_store(path: str | Path) -> list[str]:
    """Every way the store at ``path`` breaks the seismic contract (empty list = valid)."""
    from pipeline.publishing.zarr_io import open_store

    problems: list[str] = []
    try:
        ds = open_store(path)
    except Exception as exc:  # any failure to open is a contract problem
        return [f"cannot open as a Zarr store: {exc}"]
    if ds.attrs.get("emin_kind") != EMIN_KIND:
        problems.append(f"attrs.emin_kind is {ds.attrs.get('emin_kind')!r}, expected {EMIN_KIND!r}")
    if ds.attrs.get("schema_version") != SCHEMA_VERSION:
        problems.append(
            f"attrs.schema_version is {ds.attrs.get('schema_version')!r}, expected {SCHEMA_VERSION!r}"
        )
    for key in ("parameters", "input_checksums", "code_version", "counts"):
        if key not in ds.attrs:
            problems.append(f"attrs.{key} missing")
    if "spectrogram" not in ds:
        return [*problems, "data variable 'spectrogram' missing"]
    spec = ds["spectrogram"]
    if spec.dims != ("trace", "channel", "freq", "time"):
        problems.append(f"spectrogram dims {spec.dims}, expected ('trace', 'channel', 'freq', 'time')")
    if spec.dtype != np.float32:
        problems.append(f"spectrogram dtype {spec.dtype}, expected float32")
    if "channel" in ds.coords and [str(c) for c in ds["channel"].values] != ["Z", "N", "E"]:
        problems.append(f"channel coordinate {list(ds['channel'].values)}, expected ['Z', 'N', 'E']")
    for name, kind in TRACE_COORDS.items():
        if name not in ds.coords:
            problems.append(f"coordinate {name!r} missing")
            continue
        if ds[name].dims != ("trace",):
            problems.append(f"coordinate {name!r} has dims {ds[name].dims}, expected ('trace',)")
        k = ds[name].dtype.kind
        if kind == "U" and k not in "UTO":
            problems.append(f"coordinate {name!r} dtype {ds[name].dtype}, expected strings")
        if kind != "U" and k != kind:
            problems.append(f"coordinate {name!r} dtype {ds[name].dtype}, expected kind {kind!r}")
    if problems:
        return problems
    n = ds.sizes["trace"]
    values = spec.values if n else np.zeros((0, 3, 1, 1), np.float32)
    if not np.all(np.isfinite(values)):
        problems.append("spectrogram holds non-finite values")
    tid = as_str(ds["trace_id"].values)
    if len(set(tid.tolist())) != n:
        problems.append("trace_id values are not unique")
    dist = ds["distance_km"].values
    baz = ds["back_azimuth_deg"].values
    if np.any(~np.isfinite(dist)) or np.any(dist < 0):
        problems.append("distance_km must be finite and >= 0")
    if np.any(~np.isfinite(baz)) or np.any(baz < 0) or np.any(baz >= 360):
        problems.append("back_azimuth_deg must lie in [0, 360)")
    s, c = ds["sin_baz"].values, ds["cos_baz"].values
    if np.any(np.abs(s**2 + c**2 - 1) > 1e-6):
        problems.append("sin_baz**2 + cos_baz**2 != 1")
    if np.any(np.abs(np.sin(np.radians(baz)) - s) > 1e-6) or np.any(
        np.abs(np.cos(np.radians(baz)) - c) > 1e-6
    ):
        problems.append("sin_baz/cos_baz disagree with back_azimuth_deg")
    st = as_str(ds["sensor_type"].values)
    if not set(st.tolist()) <= {"3C", "1C"}:
        problems.append(f"sensor_type values {sorted(set(st.tolist()))}, expected 3C/1C")
    one_c = st == "1C"
    if one_c.any() and np.any(values[one_c][:, 1:] != 0):
        problems.append("N/E channels of vertical-only (1C) traces are not exactly zero")
    split = as_str(ds["split"].values)
    if not set(split.tolist()) <= {"train", "val", "test"}:
        problems.append(f"split values {sorted(set(split.tolist()))}, expected train/val/test")
    ev = as_str(ds["event_id"].values)
    per_event: dict[str, set[str]] = {}
    for e, sp in zip(ev.tolist(), split.tolist(), strict=True):
        per_event.setdefault(e, set()).add(sp)
    multi = sorted(e for e, sps in per_event.items() if len(sps) > 1)
    if multi:
        problems.append(f"events in more than one split: {multi[:5]}")
    try:
        rej = open_store(path, group="rejects")
        for col in ("trace_id", "reason", "detail"):
            if col not in rej.variables or rej[col].dims != ("reject",):
                problems.append(f"rejects/{col} missing or not along dim 'reject'")
    except Exception as exc:
        problems.append(f"rejects subgroup unreadable: {exc}")
    return problems
