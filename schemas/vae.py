"""Typed configuration of a multimodal GMM-VAE run (pydantic; plain JSON types only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DecoderKind", "EncoderKind", "VAETrainConfig"]

DecoderKind = Literal["mlp", "physics"]
EncoderKind = Literal["mlp", "conv"]


class VAETrainConfig(BaseModel):
    """Settings of :func:`models.vae.train_vae`.

    Phases: ``warmup_epochs`` of a plain VAE (MLP decoders, ``N(0, I)`` prior) → k-means of the
    latent means initialises the mixture → ``epochs`` of the closed-form ELBO with the
    streaming EM update of the cluster means every ``em_every``-th batch (Adam on the rest) →
    ``cross_epochs`` of the unimodal cross-modal encoders (KL to the detached multimodal
    posterior). ``decoder`` applies to every modality unless ``decoder_overrides`` names it;
    ``physics`` needs ``library_csv`` (or a library passed to ``train_vae``) and wavelengths.
    Folds: ``test_fold`` (default: the last) is held out for every reported metric.
    """

    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(None, description="published HSI Zarr store (data.zarr)")
    modalities: list[str] | None = Field(None, description="subset of the store's modalities")
    latent_dim: int = Field(8, ge=1)
    n_clusters: int | None = Field(None, ge=2, description="None = number of classes in the data")
    hidden: int = Field(128, ge=4)
    encoder: EncoderKind = "mlp"
    decoder: DecoderKind = "mlp"
    decoder_overrides: dict[str, DecoderKind] = Field(default_factory=dict)
    library_csv: str | None = Field(None, description="wavelength_nm + one column per endmember")
    physics_scale: bool = Field(
        False,
        description="physics expert x = s * sum_k a_ck s_k with a per-sample brightness s (least squares)",
    )
    learn_cluster_var: bool = Field(True, description="learn var_c (VaDE); False = var_c = 1 (paper)")
    min_var: float = Field(1e-4, gt=0.0, description="floor of the decoder variances")
    min_var_overrides: dict[str, float] = Field(default_factory=dict, description="per-modality floors")
    warmup_epochs: int = Field(10, ge=0)
    epochs: int = Field(40, ge=0)
    cross_epochs: int = Field(20, ge=0)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(2e-3, gt=0.0)
    cross_lr: float = Field(2e-3, gt=0.0)
    init_em_iters: int = Field(20, ge=0, description="full-batch EM iterations of the mixture at init")
    reseed_dead: bool = Field(True, description="split the heaviest cluster into empty ones (EM repair)")
    dead_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="empty = EM mass < this × mean mass")
    em_every: int = Field(1, ge=1, description="EM update of mu_c every N batches (0 < N)")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    test_fold: int | None = Field(None, description="None = the last fold")
    label_budget: int = Field(10, ge=1, description="labelled samples per class for the linear probe")
    out_dir: str | None = Field(None, description="run folder; None = no files written")
    plots: bool = True
