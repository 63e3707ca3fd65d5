"""Multimodal product-of-experts VAE with a Gaussian-mixture prior and a physics expert decoder.

Public API (for ``emin train vae`` and a Prefect flow): :class:`VAETrainConfig`,
:func:`train_vae` → :class:`VAEResult`, :func:`load_vae`, :func:`load_vae_data`,
:class:`VAEData`, :func:`read_library_csv`, :class:`MultimodalVAE`. See ``docs/vae.md``.
"""

from __future__ import annotations

from models.vae.data import VAEData, load_vae_data
from models.vae.evaluate import evaluate_vae
from models.vae.library import SpectralLibrary, read_library_csv, resample_library, write_library_csv
from models.vae.model import MultimodalVAE
from models.vae.result import VAEResult
from models.vae.train import load_vae, save_vae_run, train_vae
from schemas.vae import VAETrainConfig

__all__ = [
    "MultimodalVAE",
    "SpectralLibrary",
    "VAEData",
    "VAEResult",
    "VAETrainConfig",
    "evaluate_vae",
    "load_vae",
    "load_vae_data",
    "read_library_csv",
    "resample_library",
    "save_vae_run",
    "train_vae",
    "write_library_csv",
]
