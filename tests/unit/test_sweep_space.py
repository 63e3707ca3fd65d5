"""Search space (report Table 2) and CV folds for sweeps."""

from __future__ import annotations

import math

import optuna
import pytest

from models.sweep_space import SweepSpace, config_from_params, cv_configs, suggest_config
from schemas.training import HSITrainConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _base(mode: str = "emin") -> HSITrainConfig:
    return HSITrainConfig(store="s.zarr", mode=mode)  # type: ignore[arg-type]


def test_suggestions_stay_in_table2_ranges() -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        c = suggest_config(trial, _base())
        assert 2 <= len(c.hidden) <= 4 and 10 <= c.width <= 120 and set(c.hidden) == {c.width}
        assert 0.0 <= c.dropout <= 0.35
        assert 50 <= c.batch_size <= 1000 and c.batch_size % 50 == 0
        assert 1e-5 <= c.lr <= 1e-2 and 1e-8 <= c.weight_decay <= 1e-1
        assert c.alpha in ("fixed", "mgda") and 1e-3 <= c.alpha_value <= 1.0
        assert config_from_params(_base(), trial.params) == c
        study.tell(trial, 0.5)
    dist = study.trials[0].distributions
    assert dist["lr"].log and dist["weight_decay"].log and dist["alpha"].log  # type: ignore[attr-defined]


def test_baseline_has_no_alpha_parameters() -> None:
    study = optuna.create_study()
    trial = study.ask()
    c = suggest_config(trial, _base("baseline"), SweepSpace(layers=(3, 3)))
    assert "alpha" not in trial.params and "alpha_strategy" not in trial.params
    assert len(c.hidden) == 3 and c.mode == "baseline"


def test_cv_configs() -> None:
    folds = cv_configs(_base(), 4)
    assert [(c.val_fold, c.test_fold) for c in folds] == [(1, 5), (2, 5), (3, 5), (4, 5)]
    assert [c.val_fold for c in cv_configs(_base(), 1)] == [1]
    with pytest.raises(ValueError):
        cv_configs(_base(), 5)
    assert not math.isnan(folds[0].lr)
