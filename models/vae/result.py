"""What a VAE fit produced (shared by the trainer, the evaluation and the plots)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.vae.model import MultimodalVAE
from schemas.vae import VAETrainConfig

CHECKPOINT_FORMAT = 1


@dataclass
class VAEResult:
    """What :func:`train_vae` produced; ``extras`` holds arrays for plots (not JSON)."""

    model: MultimodalVAE
    config: VAETrainConfig
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
