"""Experiment specs as data (YAML): dataset, base config, arms, grid, seeds, comparisons, budgets.

A spec is checked whole before any training starts: an arm or grid key that is not a field of
the training config, a comparison naming a missing arm, no seeds, or a store of the wrong kind
is an :class:`~pipeline.errors.InputError` naming the spec file and the fix.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import InputError
from schemas.training import HSITrainConfig, SeismicTrainConfig, TrainConfig
from schemas.vae import VAETrainConfig

__all__ = [
    "PRESET_DIR",
    "Budget",
    "Comparison",
    "ExperimentSpec",
    "Finding",
    "GridFactor",
    "RunPlan",
    "Tuning",
    "list_presets",
    "load_spec",
]

PRESET_DIR = Path(__file__).with_name("presets")
#: Arm key naming the trainer: absent (the kind's classifier/regressor), ``vae``, or
#: ``per-modality`` (HSI: one run per modality, fused post hoc by mean softmax; report 3.3).
TRAINER_KEY = "trainer"
TRAINERS = ("default", "vae", "per-modality")
#: What a budget sets in a VAE arm: how long it trains (the architecture is the arm's own).
VAE_BUDGET_KEYS = ("epochs", "warmup_epochs", "cross_epochs")
#: Pseudo-arm of a comparison: the constant 0 on every seed (a one-sample test of arm ``b``).
ZERO = "zero"
BudgetName = Literal["smoke", "demo", "report"]
Expectation = Literal["equal", "b_lower", "b_higher"]
#: The report-specific figures a spec can ask for (``experiments/figures.py``).
FigureName = Literal[
    "modality_errors",  # Fig. 6: per-modality and fused test error per arm
    "alpha_traces",  # Fig. 9: probe samples' per-modality true-class probability over training
    "variance_shift",  # Fig. 11: cross-modality variance and fused error, before vs after the switch
    "modality_deltas",  # Fig. 12: per-modality accuracy change over fine-tuning
    "location_breakdown",  # Fig. 14: location error by distance bin, sensor type, catalogue subset
    "variance_vs_error",  # report 4.5: per-event spread of station estimates vs event error
    "error_ellipses",  # Fig. 16: per-event station estimates, their median and spread ellipse
]


class Tuning(BaseModel):
    """Per-modality tuning of the ``trainer: per-modality`` arms by the sweep code (report 3.3).

    For each arm, grid cell and modality an Optuna study of ``trials`` COMPLETE trials (the
    report's Table 2 space, ``space: report`` = its second round, dropout and weight decay
    off), each scored on ``cv_folds`` CV folds; every seed's run of that modality then trains
    with the best trial's settings. ``overrides``: training settings of the trials only (not
    searched). Each modality's sampler is seeded from ``sampler_seed`` and its name.
    """

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(ge=1, description="COMPLETE trials per modality")
    cv_folds: int = Field(1, ge=1, le=4, description="validation folds per trial")
    space: Literal["table2", "report"] = "table2"
    sampler_seed: int = 0
    overrides: dict[str, Any] = Field(default_factory=dict)


class Budget(BaseModel):
    """How much to spend: seeds and config overrides (epochs, patience, widths …)."""

    model_config = ConfigDict(extra="forbid")

    seeds: int = Field(5, ge=1, description="number of seeds (0 … seeds−1)")
    overrides: dict[str, Any] = Field(default_factory=dict)
    tuning: Tuning | None = Field(default=None, description="tune the per-modality arms first")


class GridFactor(BaseModel):
    """A factor crossed with the arms it applies to (all arms when ``arms`` is empty)."""

    model_config = ConfigDict(extra="forbid")

    values: list[Any] = Field(min_length=1)
    arms: list[str] = Field(default_factory=list)


class Comparison(BaseModel):
    """Arm ``b`` against arm ``a`` on ``metrics``, paired by seed within each grid cell.

    ``a: zero`` compares ``b``'s metric with 0 on every seed (is a correlation there at all?).
    A metric may be a glob (``test.*.macro_accuracy``: every modality). ``a_prefix`` /
    ``b_prefix`` read the metric under another key of each run's metrics, so one arm can be
    compared with itself at two moments (``before_switch.`` vs ``final.``: report Fig. 11).
    """

    model_config = ConfigDict(extra="forbid")

    a: str
    b: str
    metrics: list[str] = Field(min_length=1)
    a_prefix: str = ""
    b_prefix: str = ""


class Finding(BaseModel):
    """One of the report's findings, and the comparison that tests it here."""

    model_config = ConfigDict(extra="forbid")

    claim: str
    a: str
    b: str
    metric: str
    expect: Expectation = Field(description="equal: no real difference; b_lower/b_higher: b is lower/higher")
    cell: dict[str, Any] = Field(default_factory=dict, description="grid cell it is about (default: every)")
    report_says: str = ""


class ExperimentSpec(BaseModel):
    """One experiment (report 3.3–3.7, 4.5–4.6) as data; see ``experiments/presets/``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    title: str = ""
    kind: Literal["hsi", "seismic"]
    dataset: str = Field(description="published dataset name or store path (CLI --store overrides)")
    base: dict[str, Any] = Field(default_factory=dict)
    arms: dict[str, dict[str, Any]] = Field(min_length=1)
    grid: dict[str, GridFactor] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=list, description="explicit seeds (else the budget's count)")
    comparisons: list[Comparison] = Field(default_factory=list)
    budgets: dict[BudgetName, Budget] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
    figures: list[FigureName] = Field(
        default_factory=list, description="report figures beyond the metric bars"
    )

    @field_validator("grid", mode="before")
    @classmethod
    def _plain_lists(cls, grid: Any) -> Any:
        if isinstance(grid, dict):
            return {k: {"values": v} if isinstance(v, list) else v for k, v in grid.items()}
        return grid

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        fields = set(self.config_class().model_fields) - {"store", "seed", "out_dir"}
        has_vae = any(o.get(TRAINER_KEY) == "vae" for o in self.arms.values())
        vae_fields = set(VAETrainConfig.model_fields) - {"store", "seed", "out_dir"} if has_vae else set()
        problems: list[str] = []
        for arm, settings in self.arms.items():
            trainer = settings.get(TRAINER_KEY, "default")
            if trainer not in TRAINERS:
                problems.append(f"arm {arm!r}: unknown trainer {trainer!r} ({', '.join(TRAINERS)})")
            elif trainer != "default" and self.kind != "hsi":
                problems.append(f"arm {arm!r}: trainer {trainer} trains on HSI stores only")
            elif trainer == "vae":
                unknown = sorted(set(settings) - set(VAETrainConfig.model_fields) - {TRAINER_KEY})
                if unknown:
                    problems.append(f"arm {arm!r}: unknown VAE setting(s) {unknown}")
        for where, keys in [
            ("base", self.base),
            *(
                (f"arm {a!r}", {k: v for k, v in o.items() if k != TRAINER_KEY})
                for a, o in self.arms.items()
                if o.get(TRAINER_KEY, "default") != "vae"
            ),
            ("grid", self.grid),
            *((f"budget {b!r}", bud.overrides) for b, bud in self.budgets.items()),
            *(
                (f"budget {b!r} tuning", bud.tuning.overrides)
                for b, bud in self.budgets.items()
                if bud.tuning
            ),
        ]:
            known = fields | (
                vae_fields if where.startswith("budget") and not where.endswith("tuning") else set()
            )
            unknown = sorted(set(keys) - known)
            if unknown:
                problems.append(f"{where}: unknown training setting(s) {unknown}")
        for name, factor in self.grid.items():
            missing = sorted(set(factor.arms) - set(self.arms))
            if missing:
                problems.append(f"grid {name!r} names missing arm(s) {missing}")
        pairs = [(c.a, c.b) for c in self.comparisons] + [(f.a, f.b) for f in self.findings]
        for a, b in pairs:  # a finding names a prefixed side as ``arm@prefix``
            missing = sorted({a.split("@")[0], b.split("@")[0]} - set(self.arms) - {ZERO})
            if missing:
                problems.append(f"comparison {a!r} vs {b!r} names missing arm(s) {missing}")
        tuned = [b for b, bud in self.budgets.items() if bud.tuning]
        if tuned and not self.per_modality_arms():
            problems.append(f"budget(s) {tuned}: tuning needs an arm with trainer: per-modality")
        if self.seeds == [] and "seeds" in self.model_fields_set:
            problems.append("seeds is empty: give at least one seed (two or more for a verdict)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def config_class(self) -> type[TrainConfig]:
        """The training config class of this experiment's kind."""
        return HSITrainConfig if self.kind == "hsi" else SeismicTrainConfig

    def arm_class(self, arm: str) -> type[BaseModel]:
        """The config class of one arm: the kind's trainer, or the VAE for ``trainer: vae`` arms.

        A VAE arm takes nothing from ``base`` and only :data:`VAE_BUDGET_KEYS` from the budget
        (how long it trains); its own keys are VAE settings (``schemas/vae.py``).
        """
        trainer = self.arms[arm].get(TRAINER_KEY, "default")
        return VAETrainConfig if trainer == "vae" else self.config_class()

    def per_modality_arms(self) -> list[str]:
        """Arms trained as one run per modality and fused post hoc (``trainer: per-modality``)."""
        return [a for a, o in self.arms.items() if o.get(TRAINER_KEY) == "per-modality"]

    def budget(self, name: BudgetName) -> Budget:
        """The budget ``name`` (5 seeds, no overrides, when the spec has none of that name)."""
        return self.budgets.get(name, Budget(seeds=5, tuning=None))

    def seeds_for(self, budget: BudgetName) -> list[int]:
        """Explicit seeds, else 0 … n−1 for the budget's count."""
        return list(self.seeds) if self.seeds else list(range(self.budget(budget).seeds))

    def plan(self, budget: BudgetName, *, store: str, seeds: int | None = None) -> list[RunPlan]:
        """Every run: arm × its grid cells × seed, each with its resolved config, seed by seed
        (all arms of seed 0 first): an experiment stopped part-way holds complete pairs."""
        seed_list = list(range(seeds)) if seeds is not None else self.seeds_for(budget)
        if not seed_list:
            raise InputError(f"experiment {self.name}: no seeds", fix="give --seeds N (N >= 2)")
        overrides = self.budget(budget).overrides
        plans: list[RunPlan] = []
        for arm, arm_over in self.arms.items():
            factors = {k: f.values for k, f in self.grid.items() if not f.arms or arm in f.arms}
            cls = self.arm_class(arm)
            settings = {k: v for k, v in arm_over.items() if k != TRAINER_KEY}
            shared = (
                {k: v for k, v in overrides.items() if k in VAE_BUDGET_KEYS}
                if cls is VAETrainConfig
                else {k: v for k, v in {**self.base, **overrides}.items() if k in cls.model_fields}
            )
            for combo in itertools.product(*factors.values()):
                cell = dict(zip(factors, combo, strict=True))
                for seed in seed_list:
                    fields = {**shared, **settings, **cell, "store": store, "seed": seed}
                    try:
                        config = cls.model_validate(fields)
                        assert isinstance(config, HSITrainConfig | SeismicTrainConfig | VAETrainConfig)
                    except ValidationError as exc:
                        raise InputError(
                            f"experiment {self.name}, arm {arm!r}, cell {cell}: invalid settings\n{exc}",
                            fix="correct the arm/grid/budget settings of the spec",
                        ) from exc
                    plans.append(RunPlan(arm=arm, cell=cell, seed=seed, config=config))
        return sorted(plans, key=lambda p: seed_list.index(p.seed))


class RunPlan(BaseModel):
    """One run of an experiment: which arm, grid cell and seed, and its resolved config.

    ``member``: the modality of one run of a per-modality arm (its config trains that
    modality only); empty for every other run, and for a per-modality arm's plan before it
    is expanded into its members (:func:`experiments.tuning.expand_members`).
    """

    arm: str
    cell: dict[str, Any]
    seed: int
    config: HSITrainConfig | SeismicTrainConfig | VAETrainConfig
    member: str = ""

    @property
    def label(self) -> str:
        """``arm[-member]-s<seed>`` (a task's name)."""
        return f"{self.arm}{f'-{self.member}' if self.member else ''}-s{self.seed}"


def list_presets() -> list[str]:
    """Names of the shipped presets (``experiments/presets/*.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_spec(name_or_path: str | Path) -> ExperimentSpec:
    """A preset by name (``hsi-2``) or a spec file; every problem is an InputError naming the file."""
    path = Path(name_or_path)
    if not path.exists():
        preset = PRESET_DIR / f"{name_or_path}.yaml"
        if not preset.exists():
            raise InputError(
                f"no experiment spec {str(name_or_path)!r}",
                fix=f"give a spec file, or one of the presets: {', '.join(list_presets())}",
            )
        path = preset
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", path=path, fix="fix the YAML syntax") from exc
    if not isinstance(raw, dict):
        raise InputError("an experiment spec is a YAML mapping", path=path, fix="see experiments/presets/")
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        lines = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise InputError(
            f"invalid experiment spec: {lines}", path=path, fix="see experiments/presets/"
        ) from exc
