"""The sweep's study loop as library code: an Optuna study on disk, trials asked in groups,
scored on CV folds, told; resumable.

The study lives in ``<folder>/study.db`` (RDB storage, ``load_if_exists``): :func:`open_study`
marks trials left RUNNING by an interrupted run FAIL, :func:`run_trials` asks only for the
COMPLETE trials still missing. A trial's score is the mean validation fused macro accuracy
over its CV folds (:func:`score_trials`). Who trains a group of trials is the caller's
``evaluate``: the ``sweep`` flow submits each group as a Prefect task (:mod:`flows.sweep`),
the experiment suite tunes hsi-1's per-modality MLPs with it in process
(:mod:`experiments.tuning`). Optuna is imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from models.sweep_space import SweepSpace, cv_configs, suggest_config
from schemas.training import HSITrainConfig

if TYPE_CHECKING:
    import optuna

    from models.data import HSIData

__all__ = [
    "Evaluate",
    "TrialScore",
    "ask_group",
    "complete_trials",
    "open_study",
    "run_trials",
    "score_trials",
    "study_storage",
    "trials_to_run",
    "write_trials",
]

#: One trial's result: ``score`` (mean validation fused macro accuracy over the CV folds),
#: ``fold_scores``, ``test_macro_accuracy`` (mean over the folds' models) and ``epochs_run``.
TrialScore = dict[str, Any]
#: Train groups of trial configs; per group its scores, or the exception that failed it.
Evaluate = Callable[[Sequence[list[HSITrainConfig]]], list[list[TrialScore] | BaseException]]


def _score(results: list[Any]) -> TrialScore:
    """Mean validation / test fused macro accuracy of one trial's per-fold results."""
    val = [r.metrics["val"]["fused"]["macro_accuracy"] for r in results]
    test = [r.metrics["test"]["fused"]["macro_accuracy"] for r in results]
    return {
        "score": float(np.mean(val)),
        "fold_scores": [float(v) for v in val],
        "test_macro_accuracy": float(np.mean(test)),
        "epochs_run": [int(r.metrics["epochs_run"]) for r in results],
    }


def score_trials(
    configs: list[HSITrainConfig], cv_folds: int, stacked: bool, data: HSIData | None = None
) -> list[TrialScore]:
    """Train each config on ``cv_folds`` CV folds (``stacked``: all configs at once per fold).

    ``cv_folds = 0``: the configs as given (e.g. the final seed re-runs). The store is loaded
    once (``data``: already loaded).
    """
    from models.data import load_hsi
    from models.training.hsi import train_hsi
    from models.training.stacked import train_hsi_stacked

    data = load_hsi(configs[0].store, modalities=configs[0].modalities) if data is None else data
    per_fold: list[list[Any]] = []  # [fold][trial]
    folds = (
        [list(cs) for cs in zip(*(cv_configs(c, cv_folds) for c in configs), strict=True)]
        if cv_folds
        else [configs]
    )
    for fold_configs in folds:
        if stacked and len(fold_configs) > 1:
            per_fold.append(train_hsi_stacked(fold_configs, data))
        else:
            per_fold.append([train_hsi(c, data) for c in fold_configs])
    return [_score([fold[i] for fold in per_fold]) for i in range(len(configs))]


def study_storage(folder: str | Path) -> str:
    """The RDB storage URL of the study in ``folder``."""
    return f"sqlite:///{(Path(folder) / 'study.db').resolve()}"


def open_study(
    folder: str | Path, name: str, *, sampler: Literal["tpe", "random"] = "tpe", sampler_seed: int | None = 0
) -> tuple[optuna.Study, int]:
    """Create or resume the study ``name`` in ``folder``; returns it and how many stale
    RUNNING trials (an interrupted run's) were marked FAIL."""
    import optuna

    Path(folder).mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    chosen = (
        optuna.samplers.RandomSampler(seed=sampler_seed)
        if sampler == "random"
        else optuna.samplers.TPESampler(seed=sampler_seed)
    )
    study = optuna.create_study(
        study_name=name, storage=study_storage(folder), load_if_exists=True, direction="maximize",
        sampler=chosen,
    )  # fmt: skip
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return study, len(stale)


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's COMPLETE trials."""
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def trials_to_run(study: optuna.Study, n_trials: int, max_new_trials: int | None = None) -> int:
    """How many trials a run asks: the COMPLETE ones missing from ``n_trials``, at most ``max_new_trials``."""
    todo = max(0, n_trials - len(complete_trials(study)))
    return todo if max_new_trials is None else min(todo, max_new_trials)


def ask_group(
    study: optuna.Study, base: HSITrainConfig, space: SweepSpace, k: int, *, stack: int = 1
) -> tuple[list[optuna.Trial], list[HSITrainConfig]]:
    """Ask ``k`` trials; with ``stack > 1`` the later ones share the first one's ``layers``/``batch_size``."""
    trials, configs = [], []
    fixed: dict[str, Any] = {}
    for i in range(k):
        if fixed:
            study.enqueue_trial(fixed, skip_if_exists=False)
        trial = study.ask()
        trials.append(trial)
        configs.append(suggest_config(trial, base, space))
        if i == 0 and stack > 1:
            fixed = {"layers": trial.params["layers"], "batch_size": trial.params["batch_size"]}
    return trials, configs


def run_trials(
    study: optuna.Study,
    base: HSITrainConfig,
    space: SweepSpace,
    *,
    n_trials: int,
    evaluate: Evaluate,
    max_new_trials: int | None = None,
    parallel: int = 1,
    stack: int = 1,
) -> int:
    """Ask, train (``evaluate``, ``parallel`` groups of ``stack`` trials at a time) and tell
    until the study holds ``n_trials`` COMPLETE trials (at most ``max_new_trials`` new ones).

    A group that raised, or a NaN score, is a FAIL trial (replaced by a later one). Returns
    the number of trials asked.
    """
    import optuna

    todo = trials_to_run(study, n_trials, max_new_trials)
    asked = 0
    while todo > 0:
        groups = []
        for _ in range(parallel):
            k = min(stack, todo)
            if k <= 0:
                break
            groups.append(ask_group(study, base, space, k, stack=stack))
            todo -= k
        outcomes = evaluate([configs for _, configs in groups])
        for (trials, _), scores in zip(groups, outcomes, strict=True):
            asked += len(trials)
            if isinstance(scores, BaseException):
                for t in trials:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                continue
            for t, s in zip(trials, scores, strict=True):
                for key, value in s.items():
                    t.set_user_attr(key, value)
                ok = math.isfinite(s["score"])
                study.tell(t, s["score"] if ok else None,
                           state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL)  # fmt: skip
    return asked


def write_trials(study: optuna.Study, folder: str | Path) -> Path:
    """All trials (number, state, value, params, user attrs) as ``<folder>/trials.csv``."""
    df = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    path = Path(folder) / "trials.csv"
    df.to_csv(path, index=False)
    return path
