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


def test_report_space_round2_per_layer_widths_and_grad_norm() -> None:
    space = SweepSpace.report(round=2)
    base = HSITrainConfig(store="s.zarr", mode="emin", dropout=0.0, weight_decay=0.0)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    n_mgda = n_norm = n_fixed = 0
    for _ in range(400):
        trial = study.ask()
        c = suggest_config(trial, base, space)
        assert "dropout" not in trial.params and "weight_decay" not in trial.params
        assert c.dropout == 0.0 and c.weight_decay == 0.0  # round 2: both off
        assert c.hidden == [trial.params[f"width_{i}"] for i in range(trial.params["layers"])]
        assert all(10 <= w <= 120 for w in c.hidden)
        n_mgda += c.alpha == "mgda"
        n_fixed += c.alpha == "fixed"
        n_norm += c.mgda_normalization != "none"
        assert c.alpha == "mgda" or c.mgda_normalization == "none"
        assert config_from_params(base, trial.params, space) == c
        study.tell(trial, 0.5)
    # equal weight for the two α strategies; gradient normalisation in ~25 % of MGDA trials
    assert abs(n_mgda - n_fixed) < 0.2 * 400
    assert 0.15 < n_norm / n_mgda < 0.35


def test_fixed_params_are_not_searched() -> None:
    from flows.sweep import SweepParams

    p = SweepParams(store="s", out_dir="o", base={"dropout": 0.0})
    assert p.effective_space().dropout is None and p.effective_space().weight_decay is not None
    trial = optuna.create_study().ask()
    c = suggest_config(trial, p.base_config(), p.effective_space())
    assert c.dropout == 0.0 and "dropout" not in trial.params
