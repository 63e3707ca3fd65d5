"""Prefect flow ``train-vae``: fit the multimodal PoE-GMM VAE (:mod:`models.vae`) on an HSI store."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.vae import VAETrainConfig


@task(name="train-vae-model", cache_policy=NO_CACHE)
def train_vae_task(config: VAETrainConfig) -> dict[str, Any]:
    """Run :func:`models.vae.train_vae`; the JSON-ready metrics, the run folder and a summary."""
    from models.runs import to_jsonable
    from models.vae import train_vae

    result = train_vae(config)
    return {
        "metrics": to_jsonable(result.metrics),
        "run_dir": None if result.run_dir is None else str(result.run_dir),
        "summary": vae_summary(result.metrics, result.run_dir),
    }


def vae_summary(metrics: dict[str, Any], run_dir: Any) -> str:
    """A short markdown summary of a VAE run's headline metrics."""
    rows = [f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items()) if isinstance(v, int | float)][:40]
    return (
        f"# Multimodal GMM-VAE run\n\nRun folder: `{run_dir}`\n\n| metric | value |\n|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


@flow(name="train-vae", log_prints=True)
def train_vae_flow(config: VAETrainConfig) -> dict[str, Any]:
    """Fit the multimodal VAE on a published HSI store as ``config`` says; publishes a summary artifact.

    Args:
        config: the VAE settings (``schemas/vae.py``); ``store`` is the HSI store path.
    """
    out = train_vae_task(config)
    get_run_logger().info("VAE run folder %s", out["run_dir"])
    create_markdown_artifact(
        key="train-vae-summary", markdown=out["summary"], description="multimodal VAE run"
    )
    return out
