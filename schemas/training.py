"""Typed training configurations (pydantic) shared by :mod:`models.training`, the flows and the CLI.

Every field is a plain JSON type, so a config round-trips through
``config.json``, Prefect parameters and checkpoints (``weights_only=True``).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import TrainingConfigError

Mode = Literal["baseline", "emin", "student-teacher", "finetune", "ssl"]
AlphaKind = Literal["fixed", "sampled", "mgda"]
EminKind = Literal["none", "gaussian", "student-teacher"]
ScheduleKind = Literal["fixed", "sampled", "mgda", "finetune"]
RestoreKind = Literal["best", "last", "best-after-switch"]
PresetName = Literal["report"]
DeviceName = Literal["auto", "cpu", "cuda"]
Normalization = Literal["none", "l2", "loss", "loss+"]

__all__ = [
    "AlphaKind",
    "DeviceName",
    "EminKind",
    "HSITrainConfig",
    "Mode",
    "RestoreKind",
    "ScheduleKind",
    "SeismicTrainConfig",
    "TrainConfig",
]

#: What each ``mode`` shorthand means for the independent settings (explicit fields win).
MODE_SETTINGS: dict[str, dict[str, str]] = {
    "baseline": {"emin": "none", "unlabelled": "drop"},
    "emin": {"emin": "gaussian", "unlabelled": "drop"},
    "student-teacher": {"emin": "student-teacher", "unlabelled": "drop"},
    "finetune": {"emin": "gaussian", "unlabelled": "drop", "alpha_schedule": "finetune"},
    "ssl": {"emin": "gaussian", "unlabelled": "use"},
}


def _one_budget(fraction: float, count: int | None, name: str) -> None:
    """A label budget is a fraction or a count, not both."""
    if count is not None and fraction != 1.0:
        raise TrainingConfigError(
            f"give label_fraction or {name}, not both", field=name, fix=f"drop label_fraction or {name}"
        )


class TrainConfig(BaseModel):
    """Settings common to HSI and seismic training.

    ``mode`` is a shorthand (:data:`MODE_SETTINGS`) for the independent EMIN settings, which
    override it when given: ``emin`` (``none`` | ``gaussian`` | ``student-teacher``),
    ``unlabelled`` (``use``: EMIN also on the unlabelled pool | ``drop``), ``alpha_schedule``
    (``fixed`` | ``sampled`` | ``mgda`` | ``finetune``; default: ``alpha`` in the EMIN
    modes, ``finetune`` for mode finetune). α strategies: ``fixed`` (``alpha_value``),
    ``sampled`` once per run in [``alpha_low``, ``alpha_high``] from the run seed, ``mgda``
    per step on the shared parameters, ``finetune`` (α = 1 until ``switch_epoch``, then
    ``finetune_alpha``). ``patience`` = None disables early stopping. ``restore``: which
    weights the run ends with (``best`` validation epoch, ``last`` epoch, or
    ``best-after-switch``); default ``last`` without early stopping, ``best`` with it,
    ``best-after-switch`` for fine-tuning. The resolved values: :meth:`effective_settings`.
    """

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="path of the published Zarr store")
    mode: Mode = "baseline"
    emin: EminKind | None = Field(None, description="EMIN term; None = from mode")
    unlabelled: Literal["use", "drop"] | None = Field(None, description="unlabelled pool; None = from mode")
    alpha_schedule: ScheduleKind | None = Field(None, description="α strategy; None = from mode/alpha")
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
    restore: RestoreKind | None = Field(
        None, description="weights kept at the end; None = from patience/schedule"
    )
    seed: int = 0
    device: DeviceName = "auto"
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU); heads and losses stay fp32")
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms on CPU")
    out_dir: str | None = Field(None, description="run folder; None = no files written")

    @model_validator(mode="after")
    def _check_alpha_range(self) -> TrainConfig:
        if self.alpha_low > self.alpha_high:
            raise TrainingConfigError(
                "alpha_low must be <= alpha_high", field="alpha_low", fix="give alpha_low <= alpha_high"
            )
        if self.restore == "best-after-switch" and self.effective_alpha_schedule != "finetune":
            raise TrainingConfigError(
                "restore='best-after-switch' needs the finetune α schedule",
                field="restore",
                fix="use restore best or last, or alpha_schedule finetune",
            )
        if self.effective_emin == "none" and self.alpha_schedule not in (None, "fixed"):
            raise TrainingConfigError(
                f"alpha_schedule {self.alpha_schedule!r} needs an EMIN term (emin is 'none')",
                field="alpha_schedule",
                fix="set emin gaussian or student-teacher, or drop alpha_schedule",
            )
        return self

    # ----------------------------------------------------------------- resolved settings
    @property
    def effective_emin(self) -> str:
        """The EMIN term: ``emin`` if given, else what ``mode`` implies."""
        return self.emin or MODE_SETTINGS[self.mode]["emin"]

    @property
    def effective_unlabelled(self) -> str:
        """``use`` (EMIN on the unlabelled pool too) or ``drop``."""
        return self.unlabelled or MODE_SETTINGS[self.mode]["unlabelled"]

    @property
    def effective_alpha_schedule(self) -> str:
        """``fixed`` | ``sampled`` | ``mgda`` | ``finetune`` (``fixed`` at α = 1 without EMIN)."""
        if self.effective_emin == "none":
            return "fixed"
        return self.alpha_schedule or MODE_SETTINGS[self.mode].get("alpha_schedule", self.alpha)

    @property
    def effective_alpha_value(self) -> float:
        """α of the fixed schedule (1.0 without EMIN)."""
        return 1.0 if self.effective_emin == "none" else self.alpha_value

    @property
    def effective_restore(self) -> str:
        """The restore policy (see the class docstring)."""
        if self.restore is not None:
            return self.restore
        if self.effective_alpha_schedule == "finetune":
            return "best-after-switch"
        return "last" if self.patience is None else "best"

    @property
    def uses_emin(self) -> bool:
        """True when an EMIN term is trained."""
        return self.effective_emin != "none"

    @property
    def uses_unlabelled(self) -> bool:
        """True when the unlabelled pool is trained on (EMIN only)."""
        return self.uses_emin and self.effective_unlabelled == "use"

    @property
    def alpha_label(self) -> str | None:
        """The α strategy as reported in metrics (None for the baseline and fine-tuning)."""
        sched = self.effective_alpha_schedule
        return None if not self.uses_emin or sched == "finetune" else sched

    def effective_settings(self) -> dict[str, Any]:
        """Every setting with the defaults resolved (written to ``settings.json``)."""
        out = self.model_dump(mode="json")
        out |= {
            "emin": self.effective_emin,
            "unlabelled": self.effective_unlabelled,
            "alpha_schedule": self.effective_alpha_schedule,
            "alpha_value": self.effective_alpha_value,
            "restore": self.effective_restore,
        }
        return out

    def run_name(self, kind: str) -> str:
        """Default run-folder name, e.g. ``hsi-emin-fixed-s0``."""
        alpha = "" if self.alpha_label is None else f"-{self.alpha_label}"
        frac = "" if self.label_fraction == 1.0 else f"-f{self.label_fraction:g}"
        return f"{kind}-{self.mode}{alpha}{frac}-s{self.seed}"

    # ----------------------------------------------------------------- presets
    @classmethod
    def preset_fields(cls, name: str, mode: str = "baseline") -> dict[str, Any]:
        """The fields of preset ``name`` for ``mode`` (see :data:`REPORT_PRESETS`)."""
        if name != "report":
            raise TrainingConfigError(f"unknown preset {name!r}", field="preset", fix="use --preset report")
        table = REPORT_PRESETS[cls.__name__]
        return {**table["all"], **table.get(mode, {})}

    @classmethod
    def preset(cls, name: str, **fields: Any) -> Self:
        """A config with preset ``name``'s settings; ``fields`` (e.g. ``store``, ``mode``) win."""
        return cls.model_validate(cls.preset_fields(name, str(fields.get("mode", "baseline"))) | fields)


class HSITrainConfig(TrainConfig):
    """HSI classification (report section 3): Hydra or per-modality MLPs on the HSI store.

    Folds: ``test_fold`` (default: the last fold) is the test set, ``val_fold`` the
    validation set for early stopping by fused macro accuracy, the rest train.
    ``teachers`` (student-teacher): modality names or prefixes (``SWIR`` = every SWIR*).
    ``modalities``: train on these store modalities only (None = all). ``normalise``:
    ``zscore`` per band with the labelled samples' statistics, or ``none`` (the report: the
    curated store is already clipped to [0, 1.5]); None = from ``standardise``.
    ``labelled_per_class``: a label budget by count (per class), instead of ``label_fraction``.
    ``trace_samples``/``trace_every``: store the per-modality softmax of K fixed test samples
    every N epochs (``traces.npz``).
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
    modalities: list[str] | None = Field(None, description="train on these modalities only")
    standardise: bool = Field(True, description="per-band z-score with training-set statistics")
    normalise: Literal["zscore", "none"] | None = Field(None, description="None = from standardise")
    labelled_per_class: int | None = Field(None, ge=1, description="label budget: samples per class")
    trace_samples: int = Field(0, ge=0, description="probe samples whose softmax is traced")
    trace_every: int = Field(1, ge=1, description="trace every N epochs")
    eval_chunk: int = Field(8192, ge=1)

    @model_validator(mode="after")
    def _check_budget(self) -> HSITrainConfig:
        _one_budget(self.label_fraction, self.labelled_per_class, "labelled_per_class")
        return self

    @property
    def effective_normalise(self) -> str:
        """``zscore`` or ``none``."""
        return self.normalise or ("zscore" if self.standardise else "none")

    def effective_settings(self) -> dict[str, Any]:
        """See :meth:`TrainConfig.effective_settings`; adds ``normalise``."""
        return super().effective_settings() | {"normalise": self.effective_normalise}


class SeismicTrainConfig(TrainConfig):
    """Single-station location (report section 4): VGG regressor on (3, freq, time) spectrograms.

    Loss: MSE on (distance / ``distance_scale_km``, sin BAZ, cos BAZ). EMIN: variance of the
    per-event predicted locations (Equations 2–3), converted from radians² to
    (``distance_scale_km``)² units so it is on the scale of the distance term; the
    student–teacher variant centres on the event median of the ``teacher_sensor`` traces.
    ``centre``: None = ``median`` for student–teacher, ``mean`` (the variance) for plain EMIN
    (report 4.5). ``networks``: ``per-sensor`` (one network per sensor type, trained jointly;
    the default for student–teacher, so no EMIN gradient reaches the teacher) or ``shared``.
    ``label_fraction`` keeps that fraction of the training *events* labelled,
    ``labelled_events`` that many events. Early stopping by validation median location error.
    ``inputs``: ``power`` (the 3 log-power channels) or ``power+polarity`` (plus the store's
    Z–N/Z–E ``cross_spectrum``, 5 channels: keeps P polarity, so triaxial back azimuth is
    learnable; needs a store curated with ``cross_spectra``).
    """

    arch: Literal["small", "vgg11", "vgg13", "vgg16", "vgg19"] = "small"
    inputs: Literal["power", "power+polarity"] = "power"
    head_hidden: list[int] = Field(default_factory=lambda: [256])
    distance_scale_km: float = Field(100.0, gt=0.0)
    teacher_sensor: str = "3C"
    centre: Literal["median", "mean"] | None = Field(None, description="None = median (ST) / mean")
    networks: Literal["per-sensor", "shared"] | None = Field(None, description="None = per-sensor for ST")
    labelled_events: int | None = Field(None, ge=1, description="label budget: training events")
    max_traces: int | None = Field(None, ge=1, description="use only the first N traces (quick runs)")
    batch_size: int = Field(64, ge=2)
    epochs: int = Field(20, ge=1)
    eval_chunk: int = Field(512, ge=1)

    @model_validator(mode="after")
    def _check_budget(self) -> SeismicTrainConfig:
        _one_budget(self.label_fraction, self.labelled_events, "labelled_events")
        return self

    @property
    def in_channels(self) -> int:
        """Input channels of the network: 3 log-power (+ 2 cross-spectra for ``power+polarity``)."""
        return 5 if self.inputs == "power+polarity" else 3

    @property
    def effective_centre(self) -> str:
        """The EMIN centre: ``median`` for student–teacher, ``mean`` otherwise (unless given)."""
        return self.centre or ("median" if self.effective_emin == "student-teacher" else "mean")

    @property
    def effective_networks(self) -> str:
        """``per-sensor`` for student–teacher, ``shared`` otherwise (unless given)."""
        return self.networks or ("per-sensor" if self.effective_emin == "student-teacher" else "shared")

    def effective_settings(self) -> dict[str, Any]:
        """See :meth:`TrainConfig.effective_settings`; adds ``centre`` and ``networks``."""
        return super().effective_settings() | {
            "centre": self.effective_centre,
            "networks": self.effective_networks,
        }


#: The report's settings (sections 3.2.4–3.7, 4.4–4.6), per config class: ``all`` modes, then
#: per mode. Fine-tuning: 1,000 supervised + 1,000 EMIN-only epochs; student–teacher: SWIR
#: teach VNIR, early stopping off; label-limited runs tuned at fraction 0.1; seismic SSL: 25
#: labelled events, one network per sensor type for every EMIN model (4.5), VGG16.
REPORT_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "HSITrainConfig": {
        "all": {
            "patience": 500, "normalise": "none", "val_fold": 4, "test_fold": 5, "dropout": 0.0,
            "weight_decay": 0.0, "alpha": "sampled", "alpha_low": 0.0, "alpha_high": 1.0,
        },
        "finetune": {"epochs": 2000, "switch_epoch": 1000, "finetune_alpha": 0.0, "patience": None},
        "student-teacher": {"teachers": ["SWIR"], "patience": None},
        "ssl": {"label_fraction": 0.1},
    },
    "SeismicTrainConfig": {
        "all": {"arch": "vgg16", "alpha": "sampled", "alpha_low": 0.0, "alpha_high": 1.0},
        "emin": {"networks": "per-sensor", "centre": "mean"},
        "student-teacher": {"networks": "per-sensor", "centre": "median", "teacher_sensor": "3C"},
        "ssl": {"networks": "per-sensor", "labelled_events": 25},
        "finetune": {"networks": "per-sensor"},
    },
}  # fmt: skip
