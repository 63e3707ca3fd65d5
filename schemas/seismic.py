"""Seismic curation parameters and inputs (docs/seismic.md); the store validator is in pipeline.publishing.contract."""

from __future__ import annotations

import glob as _glob
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.form import form_config

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
    "cross_spectra",
)


_SEISMIC_TITLES = {
    "pre_p_s": "Window start before P (s)", "window_s": "Window length (s)", "margin_s": "Margin (s)",
    "sampling_rate_hz": "Sampling rate (Hz)", "frame_s": "Spectrogram frame (s)",
    "freqmin_hz": "Band-pass low corner (Hz)", "freqmax_hz": "Band-pass high corner (Hz)",
    "filter_corners": "Filter corners", "taper_fraction": "Taper fraction", "log_eps": "Log epsilon",
    "gap_policy": "Gaps", "max_horizontal_error_km": "Max event horizontal error (km)",
    "missing_horizontal_error": "Events without horizontal error", "max_distance_km": "Max distance (km)",
    "clip_counts": "Clip level (counts)", "reject_inventory_rate_mismatch": "Reject inventory rate mismatch",
    "taup_model": "Travel-time model", "split_seed": "Split seed",
    "split_fractions": "Split fractions (train, val, test)", "keep_waveforms": "Keep waveforms",
    "cross_spectra": "Polarity channels (cross-spectra)", "traces_per_chunk": "Zarr chunk (traces)",
}  # fmt: skip
_SEISMIC_DESCRIPTIONS = {
    "freqmin_hz": "band-pass filter low corner",
    "freqmax_hz": "band-pass filter high corner (below Nyquist)",
    "filter_corners": "band-pass filter order",
    "taper_fraction": "cosine taper on each side, as a fraction of the trace",
    "gap_policy": "reject traces with gaps, or fill them with zeros",
    "missing_horizontal_error": "what to do with events whose catalog has no horizontal error",
    "max_distance_km": "traces farther than this from their event are rejected",
    "reject_inventory_rate_mismatch": "reject traces whose sampling rate differs from the inventory's",
    "taup_model": "ObsPy TauP model for P/S travel times",
    "split_seed": "seeds the event-wise train/val/test split",
    "split_fractions": "fractions of events in train, val and test",
}


class SeismicCurationParams(BaseModel):
    """Every parameter of seismic curation; defaults follow the report (section 4)."""

    model_config = form_config(_SEISMIC_TITLES, _SEISMIC_DESCRIPTIONS, frozen=True)

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
    cross_spectra: bool = Field(
        default=False,
        description="also store `cross_spectrum` (trace, pair=ZN/ZE, freq, time) float32: Re(Z·N*), Re(Z·E*) "
        "per frame over the frame's total power; keeps the P polarity that log power drops, so triaxial "
        "back azimuth is learnable (~2/3 of the spectrogram volume)",
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
