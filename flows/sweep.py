"""Prefect flow ``sweep``: an Optuna hyperparameter search over HSI training, resumable from disk.

The flow process drives Optuna (ask/tell); trials run as Prefect tasks on the task runner
of :func:`flows.runners.make_task_runner` (threads by default, a local Dask cluster with
``workers >= 2``, any cluster by address). Each trial is scored by the mean validation
fused macro accuracy over ``cv_folds`` folds (:func:`models.sweep_space.cv_configs`). With
``stack = K > 1`` one task trains K trials of one Hydra family at once
(:func:`models.training.stacked.train_hsi_stacked`): the K trials of a group share ``layers`` and
``batch_size`` (enqueued from the group's first trial); fixed-α and MGDA trials mix.

The study lives in ``<out_dir>/study.db`` (Optuna RDB storage, ``load_if_exists``): a re-run
counts the COMPLETE trials and asks only for the remainder; trials left RUNNING by an
interrupted run are marked FAIL first (so run one sweep process per study at a time).
``max_new_trials`` stops a run early on purpose. Once the study is complete, the best
configuration is re-trained with ``final_seeds`` seeds (validation fold 4, test fold 5) and
the mean ± std of the test fused macro accuracy is reported; ``trials.csv``,
``final_seeds.json``, ``score_vs_alpha.png`` and a ``sweep-summary`` markdown artifact
are written.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from flows.runners import gpu_resources, gpu_task_options, make_task_runner
from models.sweep import (
    TrialScore,
    complete_trials,
    open_study,
    run_trials,
    score_trials,
    study_storage,
    trials_to_run,
    write_trials,
)
from models.sweep_space import SweepSpace, config_from_params
from schemas.training import HSITrainConfig

__all__ = ["SweepParams", "sweep_flow", "train_trials_task"]


class SweepParams(BaseModel):
    """Parameters of the ``sweep`` flow (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="path of the published HSI Zarr store")
    out_dir: str = Field(description="sweep folder: study.db, trials.csv, plots")
    study_name: str = "hsi-sweep"
    mode: Literal["baseline", "emin"] = "emin"
    n_trials: int = Field(20, ge=1, description="COMPLETE trials wanted in the study")
    max_new_trials: int | None = Field(None, ge=0, description="stop this run after N new trials")
    cv_folds: int = Field(4, ge=1, le=4, description="validation folds per trial (1 = quick)")
    final_seeds: int = Field(5, ge=0, description="re-runs of the best configuration (0 = none)")
    parallel: int = Field(1, ge=1, description="tasks in flight at once")
    stack: int = Field(1, ge=1, description="trials trained at once per task (models.training.stacked)")
    sampler_seed: int | None = 0
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler")
    space: SweepSpace = Field(default_factory=SweepSpace)
    base: dict[str, Any] = Field(default_factory=dict, description="other HSITrainConfig fields")
    workers: int = Field(1, ge=1, description=">= 2: a local Dask cluster of that many processes")
    cluster: str | None = Field(None, description="address of an existing Dask scheduler")
    gpu: bool = Field(False, description="trials request a GPU worker resource on Dask")

    def effective_space(self) -> SweepSpace:
        """The space searched: ``space`` less the parameters fixed in ``base`` (``--param dropout=0``)."""
        return self.space.without(self.base)

    def base_config(self) -> HSITrainConfig:
        """The fixed part of every trial's config (no run folder: trials write no files)."""
        fields = {"patience": 10, "epochs": 30} | self.base
        return HSITrainConfig.model_validate(
            fields | {"store": self.store, "mode": self.mode, "out_dir": None}
        )


@task(name="train-trials", cache_policy=NO_CACHE)
def train_trials_task(configs: list[HSITrainConfig], cv_folds: int, stacked: bool) -> list[TrialScore]:
    """Train each config on ``cv_folds`` CV folds (:func:`models.sweep.score_trials`)."""
    return score_trials(configs, cv_folds, stacked)


def _cuda_here() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@flow(name="sweep-trials", log_prints=True)
def sweep_trials_flow(params: SweepParams) -> dict[str, Any]:
    """The ask/tell loop (:func:`models.sweep.run_trials`); runs on the task runner chosen by :func:`sweep_flow`."""
    logger = get_run_logger()
    out = Path(params.out_dir)
    study, stale = open_study(
        out, params.study_name, sampler=params.sampler, sampler_seed=params.sampler_seed
    )
    done, todo = len(complete_trials(study)), trials_to_run(study, params.n_trials, params.max_new_trials)
    logger.info(
        "study %s: %d complete, %d stale marked FAIL, %d to run", params.study_name, done, stale, todo
    )
    base = params.base_config()
    if params.stack > 1 and not params.gpu and base.device in ("auto", "cpu") and not _cuda_here():
        logger.warning(
            "stack=%d on a CPU: K trials at once ran at 0.5-1.25x the trials/hour of one at a time "
            "here (docs/sweeps.md); stacking pays on a GPU", params.stack,
        )  # fmt: skip
    runner = train_trials_task.with_options(**gpu_task_options()) if params.gpu else train_trials_task

    def evaluate(groups: Sequence[list[HSITrainConfig]]) -> list[list[TrialScore] | BaseException]:
        with gpu_resources() if params.gpu else contextlib.nullcontext():
            futures = [runner.submit(cfgs, params.cv_folds, params.stack > 1) for cfgs in groups]
        outcomes: list[list[TrialScore] | BaseException] = []
        for fut in futures:
            try:
                outcomes.append(fut.result())
            except Exception as exc:  # a failed task fails its trials, the sweep goes on
                logger.warning("a group of %d trials failed: %s", params.stack, exc)
                outcomes.append(exc)
        return outcomes

    run_trials(
        study, base, params.effective_space(), n_trials=params.n_trials, evaluate=evaluate,
        max_new_trials=params.max_new_trials, parallel=params.parallel, stack=params.stack,
    )  # fmt: skip
    n_complete = len(complete_trials(study))
    result: dict[str, Any] = {"study": str(out / "study.db"), "n_complete": n_complete, "final": None}
    if n_complete == 0:
        return result
    best = study.best_trial
    result["best"] = {"number": best.number, "score": best.value, "params": best.params}
    write_trials(study, out)
    result["plot"] = str(_plot(study, out, params.mode))
    if n_complete >= params.n_trials and params.final_seeds > 0:
        result["final"] = _final_seeds(params, best, base, runner, out)
    return result


def _final_seeds(
    params: SweepParams, best: Any, base: HSITrainConfig, runner: Any, out: Path
) -> dict[str, Any]:
    """Re-train the best trial's config with seeds 0 … final_seeds−1 (val fold 4, test fold 5)."""
    path = out / "final_seeds.json"
    if path.exists():
        prev = json.loads(path.read_text())
        if prev.get("trial") == best.number and len(prev.get("seeds", [])) == params.final_seeds:
            return dict(prev)
    cfg = config_from_params(base, best.params, params.effective_space())
    configs = [
        cfg.model_copy(update={"seed": s, "val_fold": 4, "test_fold": 5}) for s in range(params.final_seeds)
    ]
    from models.training.stacked import check_stackable

    try:
        check_stackable(configs)
        stacked = params.stack > 1
    except ValueError:
        stacked = False
    with gpu_resources() if params.gpu else contextlib.nullcontext():
        scores = runner.submit(configs, 0, stacked).result()
    acc = [s["test_macro_accuracy"] for s in scores]
    final = {
        "trial": best.number,
        "params": best.params,
        "seeds": list(range(params.final_seeds)),
        "test_macro_accuracy": acc,
        "mean": float(np.mean(acc)),
        "std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
    }
    path.write_text(json.dumps(final, indent=2))
    return final


def _plot(study: Any, out: Path, mode: str) -> Path:
    """``score_vs_alpha.png``: CV score against α (fixed-α trials; MGDA best as a line), or vs lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    fig, ax = plt.subplots(figsize=(6, 4))
    if mode == "emin":
        fixed = [(t.params["alpha"], t.value) for t in trials if t.params.get("alpha_strategy") == "fixed"]
        mgda = [t.value for t in trials if t.params.get("alpha_strategy") == "mgda"]
        if fixed:
            xs, ys = zip(*fixed, strict=True)
            ax.scatter(xs, ys, label=f"fixed α ({len(fixed)} trials)")
        if mgda:
            ax.axhline(max(mgda), ls="--", color="C1", label=f"MGDA best of {len(mgda)}")
        ax.set_xlabel("α (CE weight)")
    else:
        ax.scatter([t.params["lr"] for t in trials], [t.value for t in trials], label="trials")
        ax.set_xlabel("learning rate")
    ax.set_xscale("log")
    ax.set_ylabel("CV validation fused macro accuracy")
    ax.set_title(f"{study.study_name}: {len(trials)} complete trials")
    ax.legend(loc="best")
    fig.tight_layout()
    path = out / "score_vs_alpha.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_markdown(result: dict[str, Any], study_path: str, top: int = 10) -> str:
    """Markdown: the top trials by CV score, the final seed re-runs, the plot path."""
    lines = [f"# Sweep ({result['n_complete']} complete trials)", "", f"Study: `{study_path}`", ""]
    rows = result.get("top", [])
    if rows:
        keys = sorted({k for r in rows for k in r["params"]})
        lines += ["| trial | CV score | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
        for r in rows[:top]:
            vals = [_fmt(r["params"].get(k)) for k in keys]
            lines.append(f"| {r['number']} | {r['value']:.4f} | " + " | ".join(vals) + " |")
    final = result.get("final")
    if final:
        lines += [
            "",
            f"Best trial {final['trial']} re-run with {len(final['seeds'])} seeds: test fused macro accuracy "
            f"**{final['mean']:.4f} ± {final['std']:.4f}** (mean ± std).",
        ]
    if result.get("plot"):
        lines += ["", f"Score vs α: `{result['plot']}`"]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


@flow(name="sweep", log_prints=True)
def sweep_flow(params: SweepParams) -> dict[str, Any]:
    """Run (or resume) an HSI hyperparameter sweep; see the module docstring.

    Returns ``{"study", "n_complete", "best", "top", "final", "plot"}`` (``final`` is None
    until the study has ``n_trials`` COMPLETE trials).
    """
    import optuna

    runner = make_task_runner(params.cluster, params.workers)
    result = sweep_trials_flow.with_options(task_runner=runner)(params)
    if result["n_complete"]:
        study = optuna.load_study(study_name=params.study_name, storage=study_storage(params.out_dir))
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        done.sort(key=lambda t: -(t.value or 0.0))
        result["top"] = [{"number": t.number, "value": t.value, "params": t.params} for t in done[:10]]
        md = summary_markdown(result, result["study"])
        create_markdown_artifact(key="sweep-summary", markdown=md, description="HSI hyperparameter sweep")
        (Path(params.out_dir) / "summary.md").write_text(md + "\n")
        result["summary"] = md
    get_run_logger().info("sweep: %d complete trials (%s)", result["n_complete"], result["study"])
    return result
