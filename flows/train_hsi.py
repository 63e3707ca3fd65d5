"""Prefect flow ``train-hsi``: train an HSI fusion classifier (thin wrapper of :mod:`models.training.loop`)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.training import HSITrainConfig


@task(name="train-hsi-model", cache_policy=NO_CACHE)
def train_hsi_task(config: HSITrainConfig) -> dict[str, Any]:
    """Run :func:`models.training.loop.train_hsi`; returns the JSON-ready metrics plus the run folder and summary."""
    from models.runs import summary_markdown, to_jsonable
    from models.training.hsi import train_hsi

    result = train_hsi(config)
    return {
        "metrics": to_jsonable(result.metrics),
        "run_dir": None if result.run_dir is None else str(result.run_dir),
        "summary": summary_markdown(result),
    }


@flow(name="train-hsi", log_prints=True)
def train_hsi_flow(config: HSITrainConfig) -> dict[str, Any]:
    """Train on a published HSI store as ``config`` says; publishes a markdown summary artifact.

    Returns ``{"metrics": ..., "run_dir": ..., "summary": ...}``.
    """
    out = train_hsi_task(config)
    m = out["metrics"]
    get_run_logger().info(
        "test fused macro accuracy %.4f, cross-modality variance %.5f (run folder %s)",
        m["test"]["fused"]["macro_accuracy"],
        m["test_variance_mean"] or float("nan"),
        out["run_dir"],
    )
    create_markdown_artifact(key="train-hsi-summary", markdown=out["summary"], description="HSI training run")
    return out
