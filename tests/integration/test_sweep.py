"""The ``sweep`` flow: interrupted, resumed, finished with exactly n_trials COMPLETE trials."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from flows.sweep import SweepParams, sweep_flow
from models.synthetic import hsi_to_dataset, synthetic_hsi


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sweep") / "hsi.zarr"
    hsi_to_dataset(synthetic_hsi(n=300, seed=0, separation=1.5)).to_zarr(path, mode="w", consolidated=True)
    return str(path)


def _complete(out: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="hsi-sweep", storage=f"sqlite:///{out / 'study.db'}")
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_sweep_interrupted_and_resumed(prefect_harness: None, store: str, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    params = SweepParams(
        store=store, out_dir=str(out), n_trials=4, max_new_trials=2, cv_folds=2, final_seeds=2,
        base={"epochs": 2, "patience": None, "device": "cpu"},
    )  # fmt: skip
    first = sweep_flow(params)
    assert first["n_complete"] == 2 and first["final"] is None
    assert len(_complete(out)) == 2
    # a crash mid-trial leaves a RUNNING trial behind: the resume marks it FAIL
    optuna.load_study(study_name="hsi-sweep", storage=f"sqlite:///{out / 'study.db'}").ask()

    resumed = sweep_flow(params.model_copy(update={"max_new_trials": None, "stack": 2}))
    trials = _complete(out)
    assert resumed["n_complete"] == 4 and len(trials) == 4
    assert all(len(t.user_attrs["fold_scores"]) == 2 for t in trials)
    new = [t for t in trials if t.number >= 3]  # the two stacked trials share layers/batch size
    assert new[0].params["layers"] == new[1].params["layers"]
    assert new[0].params["batch_size"] == new[1].params["batch_size"]
    final = resumed["final"]
    assert final is not None and len(final["test_macro_accuracy"]) == 2
    assert 0.0 <= final["mean"] <= 1.0
    assert (out / "score_vs_alpha.png").stat().st_size > 0
    assert (out / "trials.csv").exists() and "±" in resumed["summary"]

    again = sweep_flow(params.model_copy(update={"max_new_trials": None}))  # complete: nothing new
    assert again["n_complete"] == 4 and again["final"] == final
