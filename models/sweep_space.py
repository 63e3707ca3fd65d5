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

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import DataSelectionError
from schemas.training import HSITrainConfig

if TYPE_CHECKING:
    import optuna

__all__ = ["SweepSpace", "config_from_params", "cv_configs", "suggest_config"]


class SweepSpace(BaseModel):
    """Ranges of the search (defaults: the report's Table 2; α log-uniform 1e-3–1 for EMIN).

    ``dropout`` / ``weight_decay`` None: not searched, the base config's value is kept (the
    report's second round disabled both: :meth:`report` ``round=2``). ``per_layer_widths``:
    each backbone layer's width is its own parameter (``width_0`` …; Table 2 "layer sizes"),
    else one ``width`` for all. ``grad_norm_p``: probability that an MGDA trial uses
    gradient normalisation ``grad_norm`` (report 3.3: 25 %), drawn from a uniform parameter
    ``grad_norm_u``. ``alpha_strategies`` are drawn with equal weight: ``fixed`` is the
    report's "randomly sampled α" (the sampler draws α), ``mgda`` its Pareto strategy.
    """

    model_config = ConfigDict(extra="forbid")

    layers: tuple[int, int] = (2, 4)
    width: tuple[int, int] = (10, 120)
    per_layer_widths: bool = False
    dropout: tuple[float, float] | None = (0.0, 0.35)
    batch_size: tuple[int, int] = (50, 1000)
    batch_step: int = 50
    lr: tuple[float, float] = (1e-5, 1e-2)
    weight_decay: tuple[float, float] | None = (1e-8, 1e-1)
    alpha: tuple[float, float] = (1e-3, 1.0)
    alpha_strategies: tuple[Literal["fixed", "mgda"], ...] = ("fixed", "mgda")
    grad_norm_p: float = Field(default=0.0, ge=0.0, le=1.0)
    grad_norm: Literal["l2", "loss", "loss+"] = "l2"

    @classmethod
    def report(cls, round: int = 2, **overrides: Any) -> SweepSpace:
        """The report's space: Table 2, per-layer widths, gradient normalisation at 25 %;
        ``round=2`` (the final one) with dropout and weight decay off."""
        fields: dict[str, Any] = {"per_layer_widths": True, "grad_norm_p": 0.25}
        if round == 2:
            fields |= {"dropout": None, "weight_decay": None}
        return cls.model_validate(fields | overrides)

    def without(self, fixed: Mapping[str, Any]) -> SweepSpace:
        """This space with the parameters fixed in ``fixed`` (e.g. ``--param dropout=0``) not searched."""
        drop = {k: None for k in ("dropout", "weight_decay") if k in fixed}
        return self.model_copy(update=drop)


def config_from_params(
    base: HSITrainConfig, params: Mapping[str, Any], space: SweepSpace | None = None
) -> HSITrainConfig:
    """``base`` with a trial's parameters applied (the inverse of :func:`suggest_config` with ``space``)."""
    s = space or SweepSpace()
    update: dict[str, Any] = {}
    if "layers" in params or "width" in params:
        width = int(params.get("width", base.width))
        layers = int(params.get("layers", len(base.hidden)))
        hidden = [int(params.get(f"width_{i}", width)) for i in range(layers)]
        update |= {"width": width, "hidden": hidden}
    for key in ("dropout", "batch_size", "lr", "weight_decay"):
        if key in params:
            update[key] = params[key]
    if base.uses_emin:
        if "alpha_strategy" in params:
            update["alpha"] = params["alpha_strategy"]
        if "alpha" in params:
            update["alpha_value"] = float(params["alpha"])
        if "grad_norm_u" in params:
            mgda = update.get("alpha", base.alpha) == "mgda"
            if mgda and float(params["grad_norm_u"]) < s.grad_norm_p:
                update["mgda_normalization"] = s.grad_norm
    return HSITrainConfig.model_validate(base.model_dump() | update)


def suggest_config(
    trial: optuna.Trial, base: HSITrainConfig, space: SweepSpace | None = None
) -> HSITrainConfig:
    """Sample one configuration from ``space`` for ``trial``; other fields come from ``base``.

    EMIN parameters are sampled only when ``base`` trains an EMIN term; ``alpha`` (the
    CE weight) is sampled for every strategy, so that fixed and MGDA trials share the
    parameter (Optuna needs a fixed distribution per name) — MGDA ignores it. Parameters
    the space leaves out (None) keep the base config's value.
    """
    s = space or SweepSpace()
    layers = trial.suggest_int("layers", *s.layers)
    params: dict[str, Any] = {
        "layers": layers,
        "width": trial.suggest_int("width", *s.width),
        "batch_size": trial.suggest_int("batch_size", *s.batch_size, step=s.batch_step),
        "lr": trial.suggest_float("lr", *s.lr, log=True),
    }
    if s.per_layer_widths:
        for i in range(layers):
            params[f"width_{i}"] = trial.suggest_int(f"width_{i}", *s.width)
    if s.dropout is not None:
        params["dropout"] = trial.suggest_float("dropout", *s.dropout)
    if s.weight_decay is not None:
        params["weight_decay"] = trial.suggest_float("weight_decay", *s.weight_decay, log=True)
    if base.uses_emin:
        params["alpha_strategy"] = trial.suggest_categorical("alpha_strategy", list(s.alpha_strategies))
        params["alpha"] = trial.suggest_float("alpha", *s.alpha, log=True)
        if s.grad_norm_p > 0:
            params["grad_norm_u"] = trial.suggest_float("grad_norm_u", 0.0, 1.0)
    return config_from_params(base, params, s)


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
