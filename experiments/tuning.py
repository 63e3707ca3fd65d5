"""Per-modality arms (report 3.3): one run per modality, each modality tuned by the sweep code.

A ``trainer: per-modality`` arm's plans are expanded into member runs, one per modality
(config ``modalities: [m]``; the arm's ``modalities`` or every modality of the store). With
a budget's ``tuning``, each (arm, grid cell, modality) is first tuned by the sweep's study
loop (:func:`models.sweep.run_trials`, report Table 2 space): an Optuna study in
``tuning/<arm>-<modality>-<cell>-<key>/`` (``study.db``, ``trials.csv``, ``best.json``) keyed
like a run, on (trial config, tuning settings, dataset version, code version), so a re-run
resumes the study and finds it complete. Every seed's member then trains the best trial's
settings. The runner fuses each seed's members post hoc (:func:`experiments.runner.fuse_members`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.result import Dataset
from experiments.spec import RunPlan, Tuning
from models.sweep import (
    TrialScore,
    complete_trials,
    open_study,
    run_trials,
    score_trials,
    write_trials,
)
from models.sweep_space import SweepSpace, config_from_params
from pipeline.errors import InputError
from pipeline.version import code_version
from schemas.training import HSITrainConfig

__all__ = ["TrialMap", "TunedModality", "expand_members", "serial_trials", "tune_modality"]

#: Train groups of trial configs on ``cv_folds`` folds; per group its scores or its exception.
TrialMap = Callable[[Sequence[list[HSITrainConfig]], int], list[list[TrialScore] | BaseException]]


def serial_trials(
    groups: Sequence[list[HSITrainConfig]], cv_folds: int
) -> list[list[TrialScore] | BaseException]:
    """Train the groups one after another in this process (:func:`models.sweep.score_trials`)."""
    out: list[list[TrialScore] | BaseException] = []
    for configs in groups:
        try:
            out.append(score_trials(configs, cv_folds, stacked=False))
        except Exception as exc:  # a failed trial is a FAIL trial, as in the sweep flow
            out.append(exc)
    return out


@dataclass(frozen=True)
class TunedModality:
    """The outcome of tuning one modality of a per-modality arm (a row of ``tuning.csv``)."""

    arm: str
    cell: dict[str, Any]
    modality: str
    folder: str
    n_complete: int
    best_trial: int
    best_score: float
    params: dict[str, Any]

    def row(self) -> dict[str, Any]:
        """The ``tuning.csv`` row."""
        return {
            "arm": self.arm, **{f"factor.{k}": v for k, v in self.cell.items()}, "modality": self.modality,
            "trials_complete": self.n_complete, "best_trial": self.best_trial,
            "best_cv_score": self.best_score, "params": json.dumps(self.params, sort_keys=True),
            "folder": self.folder,
        }  # fmt: skip


def _space(tuning: Tuning) -> SweepSpace:
    """The searched space: Table 2 or the report's second round, less what the trials fix."""
    space = SweepSpace.report(round=2) if tuning.space == "report" else SweepSpace()
    return space.without(tuning.overrides)


def _for_modality(config: HSITrainConfig, modality: str, **update: Any) -> HSITrainConfig:
    return HSITrainConfig.model_validate(config.model_dump() | {"modalities": [modality]} | update)


def tune_modality(
    plan: RunPlan,
    modality: str,
    tuning: Tuning,
    *,
    dataset_version: str,
    root: Path,
    device: str,
    trial_map: TrialMap = serial_trials,
    parallel: int = 1,
) -> TunedModality:
    """Tune ``modality`` of ``plan``'s arm and cell (its config as the trials' base) under ``root``."""
    assert isinstance(plan.config, HSITrainConfig)
    base = _for_modality(plan.config, modality, **tuning.overrides, out_dir=None)
    payload = {
        "config": base.model_dump(mode="json", exclude={"store", "out_dir"}),
        "tuning": tuning.model_dump(mode="json"),
        "data": dataset_version,
        "code": code_version(),
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    cell = "-".join(f"{k}{v}" for k, v in plan.cell.items()) or "all"
    folder = root / f"{plan.arm}-{modality}-{cell}-{key}"
    # each modality's sampler its own seed (by name), so the studies do not propose in lockstep
    seed = tuning.sampler_seed + int(hashlib.sha256(modality.encode()).hexdigest()[:8], 16)
    study, _ = open_study(folder, f"{plan.arm}-{modality}", sampler_seed=seed)
    errors: list[BaseException] = []

    def evaluate(groups: Sequence[list[HSITrainConfig]]) -> list[list[TrialScore] | BaseException]:
        outcomes = trial_map(groups, tuning.cv_folds)
        errors.extend(o for o in outcomes if isinstance(o, BaseException))
        return outcomes

    run_trials(
        study, base.model_copy(update={"device": device}), _space(tuning), n_trials=tuning.trials,
        evaluate=evaluate, parallel=parallel,
    )  # fmt: skip
    write_trials(study, folder)
    done = complete_trials(study)
    if not done:
        raise InputError(
            f"tuning {plan.arm}/{modality}: no trial completed"
            + (f"; the last error: {errors[-1]!r}" if errors else ""),
            path=folder / "trials.csv",
            fix="fix the spec's tuning settings (or the store) and re-run: the study resumes",
        )
    best = study.best_trial
    tuned = TunedModality(
        plan.arm, plan.cell, modality, str(folder), len(done), best.number, float(best.value or 0.0),
        dict(best.params),
    )  # fmt: skip
    (folder / "best.json").write_text(json.dumps(tuned.row() | {"params": tuned.params}, indent=2) + "\n")
    return tuned


def expand_members(
    plans: Sequence[RunPlan],
    per_modality: Sequence[str],
    tuning: Tuning | None,
    data: Dataset,
    root: Path,
    *,
    device: str,
    trial_map: TrialMap = serial_trials,
    parallel: int = 1,
) -> tuple[list[RunPlan], list[TunedModality]]:
    """The plans with each per-modality arm's plan replaced by its member runs (tuned first
    when ``tuning``); the other plans unchanged. Returns the plans and the tuning outcomes."""
    out: list[RunPlan] = []
    tuned: dict[tuple[str, str, str], TunedModality] = {}
    space = _space(tuning) if tuning else None
    for plan in plans:
        if plan.arm not in per_modality:
            out.append(plan)
            continue
        assert isinstance(plan.config, HSITrainConfig)
        modalities = plan.config.modalities or [str(m) for m in data.attrs["modalities"]]
        for m in modalities:
            config = _for_modality(plan.config, m)
            if tuning is not None and space is not None:
                at = (plan.arm, json.dumps(plan.cell, sort_keys=True, default=str), m)
                if at not in tuned:  # once per arm, cell and modality; the plans' first seed is the base
                    tuned[at] = tune_modality(
                        plan, m, tuning, dataset_version=data.version, root=root, device=device,
                        trial_map=trial_map, parallel=parallel,
                    )  # fmt: skip
                config = config_from_params(config, tuned[at].params, space)
            out.append(plan.model_copy(update={"config": config, "member": m}))
    return out, list(tuned.values())
