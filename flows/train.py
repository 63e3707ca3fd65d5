"""Prefect flows ``train-hsi`` and ``train-seismic``: thin wrappers of :mod:`models.training.hsi` and :mod:`models.training.seismic`.

Both flows run one task that trains, write the run folder, log the headline metric and
publish the run's markdown summary as an artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.training import HSITrainConfig, SeismicTrainConfig


def _train(trainer: Callable[[Any], Any], config: Any) -> dict[str, Any]:
    """Run ``trainer(config)``; the JSON-ready metrics plus the run folder and summary."""
    from models.runs import summary_markdown, to_jsonable

    result = trainer(config)
    return {
        "metrics": to_jsonable(result.metrics),
        "run_dir": None if result.run_dir is None else str(result.run_dir),
        "summary": summary_markdown(result),
    }


@task(name="train-hsi-model", cache_policy=NO_CACHE)
def train_hsi_task(config: HSITrainConfig) -> dict[str, Any]:
    """Run :func:`models.training.hsi.train_hsi`."""
    from models.training.hsi import train_hsi

    return _train(train_hsi, config)


@task(name="train-seismic-model", cache_policy=NO_CACHE)
def train_seismic_task(config: SeismicTrainConfig) -> dict[str, Any]:
    """Run :func:`models.training.seismic.train_seismic`."""
    from models.training.seismic import train_seismic

    return _train(train_seismic, config)


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
