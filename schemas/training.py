"""Typed training configurations (pydantic) shared by :mod:`models.training`, the flows and the CLI.

Every field is a plain JSON type, so a config round-trips through
``config.json``, Prefect parameters and checkpoints (``weights_only=True``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import TrainingConfigError

Mode = Literal["baseline", "emin", "student-teacher", "finetune", "ssl"]
AlphaKind = Literal["fixed", "sampled", "mgda"]
DeviceName = Literal["auto", "cpu", "cuda"]
Normalization = Literal["none", "l2", "loss", "loss+"]

__all__ = ["AlphaKind", "DeviceName", "HSITrainConfig", "Mode", "SeismicTrainConfig", "TrainConfig"]


class TrainConfig(BaseModel):
    """Settings common to HSI and seismic training.

    ``mode``: ``baseline`` (supervised only), ``emin`` (α·supervised + (1−α)·EMIN),
    ``student-teacher`` (EMIN centred on the teachers), ``finetune`` (supervised until
    ``switch_epoch``, then α = ``finetune_alpha``), ``ssl`` (supervised on the labelled
    fraction, EMIN on labelled + unlabelled samples). ``alpha``: how α is chosen in the
    EMIN modes — ``fixed`` (``alpha_value``), ``sampled`` once per run in
    [``alpha_low``, ``alpha_high``] from the run seed, or ``mgda`` per step on the shared
    parameters. ``patience`` = None disables early stopping.
    """

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="path of the published Zarr store")
    mode: Mode = "baseline"
    alpha: AlphaKind = "fixed"
    alpha_value: float = Field(0.5, ge=0.0, le=1.0, description="CE weight α for alpha=fixed")
    alpha_low: float = Field(0.0, ge=0.0, le=1.0)
    alpha_high: float = Field(1.0, ge=0.0, le=1.0)
    mgda_normalization: Normalization = "none"
    switch_epoch: int = Field(10, ge=0, description="finetune: first epoch of EMIN fine-tuning")
    finetune_alpha: float = Field(0.0, ge=0.0, le=1.0, description="finetune: α after the switch")
    label_fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction of training labels kept")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(500, ge=2)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    patience: int | None = Field(10, ge=1, description="early-stopping patience (epochs); None = off")
    seed: int = 0
    device: DeviceName = "auto"
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms on CPU")
    out_dir: str | None = Field(None, description="run folder; None = no files written")

    @model_validator(mode="after")
    def _check_alpha_range(self) -> TrainConfig:
        if self.alpha_low > self.alpha_high:
            raise TrainingConfigError(
                "alpha_low must be <= alpha_high", field="alpha_low", fix="give alpha_low <= alpha_high"
            )
        return self

    @property
    def uses_emin(self) -> bool:
        """True for every mode with an EMIN term."""
        return self.mode != "baseline"

    def run_name(self, kind: str) -> str:
        """Default run-folder name, e.g. ``hsi-emin-fixed-s0``."""
        alpha = "" if self.mode in ("baseline", "finetune") else f"-{self.alpha}"
        frac = "" if self.label_fraction == 1.0 else f"-f{self.label_fraction:g}"
        return f"{kind}-{self.mode}{alpha}{frac}-s{self.seed}"


class HSITrainConfig(TrainConfig):
    """HSI classification (report section 3): Hydra or per-modality MLPs on the HSI store.

    Folds: ``test_fold`` (default: the last fold) is the test set, ``val_fold`` the
    validation set for early stopping by fused macro accuracy, the rest train.
    ``teachers`` (student-teacher): modality names or prefixes (``SWIR`` = every SWIR*).
    """

    alpha_value: float = Field(
        0.05, ge=0.0, le=1.0, description="CE weight α (alpha=fixed); EMIN on probabilities is small"
    )
    net: Literal["hydra", "mlp"] = "hydra"
    width: int = Field(64, ge=1, description="Hydra: width of the modality input layers")
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    batchnorm: bool = True
    val_fold: int = 4
    test_fold: int | None = None
    teachers: list[str] = Field(default_factory=lambda: ["SWIR"])
    standardise: bool = Field(True, description="per-band z-score with training-set statistics")
    eval_chunk: int = Field(8192, ge=1)


class SeismicTrainConfig(TrainConfig):
    """Single-station location (report section 4): VGG regressor on (3, freq, time) spectrograms.

    Loss: MSE on (distance / ``distance_scale_km``, sin BAZ, cos BAZ). EMIN: variance of the
    per-event predicted locations (Equations 2–3), converted from radians² to
    (``distance_scale_km``)² units so it is on the scale of the distance term; the
    student–teacher variant centres on the event median of the ``teacher_sensor`` traces.
    ``label_fraction`` keeps that fraction of the training *events* labelled.
    Early stopping by validation median location error.
    """

    arch: Literal["small", "vgg11", "vgg13", "vgg16", "vgg19"] = "small"
    head_hidden: list[int] = Field(default_factory=lambda: [256])
    distance_scale_km: float = Field(100.0, gt=0.0)
    teacher_sensor: str = "3C"
    centre: Literal["median", "mean"] = "median"
    max_traces: int | None = Field(None, ge=1, description="use only the first N traces (quick runs)")
    batch_size: int = Field(64, ge=2)
    epochs: int = Field(20, ge=1)
    eval_chunk: int = Field(512, ge=1)
