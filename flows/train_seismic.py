"""Prefect flow ``train-seismic``: train a single-station location CNN (thin wrapper of :mod:`models.training.loop`)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.training import SeismicTrainConfig


@task(name="train-seismic-model", cache_policy=NO_CACHE)
def train_seismic_task(config: SeismicTrainConfig) -> dict[str, Any]:
    """Run :func:`models.training.loop.train_seismic`; returns the JSON-ready metrics plus the run folder and summary."""
    from models.runs import summary_markdown, to_jsonable
    from models.training.seismic import train_seismic

    result = train_seismic(config)
    return {
        "metrics": to_jsonable(result.metrics),
        "run_dir": None if result.run_dir is None else str(result.run_dir),
        "summary": summary_markdown(result),
    }


@flow(name="train-seismic", log_prints=True)
def train_seismic_flow(config: SeismicTrainConfig) -> dict[str, Any]:
    """Train on a published seismic store as ``config`` says; publishes a markdown summary artifact.

    Returns ``{"metrics": ..., "run_dir": ..., "summary": ...}``.
    """
    out = train_seismic_task(config)
    m = out["metrics"]
    get_run_logger().info(
        "test median location error %.2f km (predict-the-mean centroid %.2f km; run folder %s)",
        m["test"]["overall"]["location_error_km_median"],
        m["predict_the_mean"]["centroid"]["location_error_km_median"],
        out["run_dir"],
    )
    create_markdown_artifact(
        key="train-seismic-summary", markdown=out["summary"], description="seismic training run"
    )
    return out
