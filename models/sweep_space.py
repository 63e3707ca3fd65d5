"""Hyperparameter search space for HSI sweeps (report Table 2) and cross-validation folds.

:class:`SweepSpace` holds the ranges; :func:`suggest_config` turns an Optuna trial (ask
interface) into an :class:`schemas.training.HSITrainConfig`. Parameter names in the study:
``layers`` (backbone hidden layers), ``width`` (Hydra input width = every hidden width),
``dropout``, ``batch_size``, ``lr``, ``weight_decay`` and, for ``mode="emin"``,
``alpha_strategy`` (fixed | mgda) and ``alpha`` (the CE weight, used when fixed).
:func:`cv_configs` makes the per-fold configs (validate on one of folds 1–4, train on the
other three, fold 5 stays the test fold). Optuna is imported lazily (type hints only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from pipeline.errors import DataSelectionError
from schemas.training import HSITrainConfig

if TYPE_CHECKING:
    import optuna

__all__ = ["SweepSpace", "config_from_params", "cv_configs", "suggest_config"]


class SweepSpace(BaseModel):
    """Ranges of the search (defaults: the report's Table 2; α log-uniform 1e-3–1 for EMIN)."""

    model_config = ConfigDict(extra="forbid")

    layers: tuple[int, int] = (2, 4)
    width: tuple[int, int] = (10, 120)
    dropout: tuple[float, float] = (0.0, 0.35)
    batch_size: tuple[int, int] = (50, 1000)
    batch_step: int = 50
    lr: tuple[float, float] = (1e-5, 1e-2)
    weight_decay: tuple[float, float] = (1e-8, 1e-1)
    alpha: tuple[float, float] = (1e-3, 1.0)
    alpha_strategies: tuple[Literal["fixed", "mgda"], ...] = ("fixed", "mgda")


def config_from_params(base: HSITrainConfig, params: Mapping[str, Any]) -> HSITrainConfig:
    """``base`` with a trial's parameters applied (the inverse of :func:`suggest_config`)."""
    update: dict[str, Any] = {}
    if "layers" in params or "width" in params:
        width = int(params.get("width", base.width))
        layers = int(params.get("layers", len(base.hidden)))
        update |= {"width": width, "hidden": [width] * layers}
    for key in ("dropout", "batch_size", "lr", "weight_decay"):
        if key in params:
            update[key] = params[key]
    if base.mode != "baseline":
        if "alpha_strategy" in params:
            update["alpha"] = params["alpha_strategy"]
        if "alpha" in params:
            update["alpha_value"] = float(params["alpha"])
    return HSITrainConfig.model_validate(base.model_dump() | update)


def suggest_config(
    trial: optuna.Trial, base: HSITrainConfig, space: SweepSpace | None = None
) -> HSITrainConfig:
    """Sample one configuration from ``space`` for ``trial``; other fields come from ``base``.

    EMIN parameters are sampled only when ``base.mode`` is not ``baseline``; ``alpha`` (the
    CE weight) is sampled for every strategy, so that fixed and MGDA trials share the
    parameter (Optuna needs a fixed distribution per name) — MGDA ignores it.
    """
    s = space or SweepSpace()
    params: dict[str, Any] = {
        "layers": trial.suggest_int("layers", *s.layers),
        "width": trial.suggest_int("width", *s.width),
        "dropout": trial.suggest_float("dropout", *s.dropout),
        "batch_size": trial.suggest_int("batch_size", *s.batch_size, step=s.batch_step),
        "lr": trial.suggest_float("lr", *s.lr, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *s.weight_decay, log=True),
    }
    if base.mode != "baseline":
        params["alpha_strategy"] = trial.suggest_categorical("alpha_strategy", list(s.alpha_strategies))
        params["alpha"] = trial.suggest_float("alpha", *s.alpha, log=True)
    return config_from_params(base, params)


def cv_configs(config: HSITrainConfig, cv_folds: int = 4, n_folds: int = 5) -> list[HSITrainConfig]:
    """One config per validation fold: ``val_fold`` = 1 … ``cv_folds``, ``test_fold`` = ``n_folds``.

    With the default 5-fold stores each run trains on three of folds 1–4 and validates on
    the held-out one; ``cv_folds=1`` validates on fold 1 only (quick runs).
    """
    if not 1 <= cv_folds <= n_folds - 1:
        raise DataSelectionError(
            f"cv_folds must lie in 1 … {n_folds - 1}, got {cv_folds}",
            fix=f"validate on 1 to {n_folds - 1} folds (fold {n_folds} is the test fold)",
        )
    return [config.model_copy(update={"val_fold": f, "test_fold": n_folds}) for f in range(1, cv_folds + 1)]
