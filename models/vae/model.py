"""The multimodal GMM-VAE: per-modality encoders fused by a product of experts, a Gaussian
mixture prior, MLP decoders and a physics expert (per-cluster linear mixing of a library).

Shapes: ``x [M, B, D_max]`` (zero padded beyond each modality's ``in_dims[m]`` bands),
``mask [M, B]`` bool. Absent entries may hold anything (NaN included): inputs are cleaned
with :func:`torch.where` before any arithmetic, and every per-modality term is selected
with :func:`torch.where`, so absent modalities contribute exactly nothing.

Encoders see standardised inputs (``in_mean``/``in_std`` buffers, set by
:meth:`MultimodalVAE.set_input_stats`); decoders and the physics expert model the raw values
with a learned per-band Gaussian variance (floored at ``min_var``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.vae.gaussians import (
    gaussian_log_prob,
    gmm_responsibilities,
    kl_diag_gaussians,
    latent_elbo_terms,
    latent_expected_log_lik,
    marginal_cluster_posterior,
    mixture_moments,
    product_of_experts,
)

__all__ = ["ConvEncoder", "MLPDecoder", "MLPEncoder", "MultimodalVAE", "PhysicsExpert", "inverse_softplus"]

LOGVAR_RANGE = (-12.0, 8.0)


def inverse_softplus(y: Tensor) -> Tensor:
    """``x`` with ``softplus(x) = y`` (``y > 0``)."""
    return y + torch.log(-torch.expm1(-y))


class MLPEncoder(nn.Module):
    """``x [B, D] → (mu, logvar) [B, L]``: two ELU hidden layers."""

    def __init__(self, d_in: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden),
            nn.ELU(),
            nn.Linear(hidden, hidden),
            nn.ELU(),
            nn.Linear(hidden, 2 * latent),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar.clamp(*LOGVAR_RANGE)


class ConvEncoder(nn.Module):
    """Small 1-D conv encoder (8 and 16 channels, kernel 5, stride 2, ELU; the paper's Appendix A
    without batch norm, which would mix absent samples into the statistics)."""

    def __init__(self, d_in: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, 8, 5, stride=2, padding=2),
            nn.ELU(),
            nn.Conv1d(8, 16, 5, stride=2, padding=2),
            nn.ELU(),
        )
        flat = 16 * (((d_in + 1) // 2 + 1) // 2)
        self.head = nn.Sequential(nn.Linear(flat, hidden), nn.ELU(), nn.Linear(hidden, 2 * latent))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.conv(x.unsqueeze(1)).flatten(1)
        mu, logvar = self.head(h).chunk(2, dim=-1)
        return mu, logvar.clamp(*LOGVAR_RANGE)


class MLPDecoder(nn.Module):
    """Mean of ``p(X_m | Z)``: ``z [B, L] → [B, D]``."""

    def __init__(self, latent: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, d_out)
        )

    def forward(self, z: Tensor) -> Tensor:
        out: Tensor = self.net(z)
        return out


class PhysicsExpert(nn.Module):
    """Per-cluster linear mixing: ``E_c(lambda) = sum_k a_ck s_k(lambda)``, ``a_ck = softplus(.) >= 0``.

    One abundance matrix ``[C, K]`` is shared by every modality (the same surface seen by
    different sensors); each modality has the library resampled to its own bands
    (buffer ``library_<m>`` ``[K, D_m]``).
    """

    def __init__(self, n_clusters: int, n_endmembers: int, libraries: dict[int, Tensor]) -> None:
        super().__init__()
        self.raw_abundance = nn.Parameter(torch.zeros(n_clusters, n_endmembers))
        self.modalities = sorted(libraries)
        for m, lib in libraries.items():
            self.register_buffer(f"library_{m}", lib.float().clone())

    def abundances(self) -> Tensor:
        """``a [C, K] >= 0``."""
        return F.softplus(self.raw_abundance)

    def library(self, m: int) -> Tensor:
        """Resampled library of modality ``m``, ``[K, D_m]``."""
        lib: Tensor = getattr(self, f"library_{m}")
        return lib

    def means(self, m: int) -> Tensor:
        """Cluster spectra of modality ``m``, ``[C, D_m]``."""
        return self.abundances() @ self.library(m)


class MultimodalVAE(nn.Module):
    """Product-of-experts GMM-VAE with optional physics expert decoders and cross-modal encoders."""

    mu_c: Tensor
    in_mean: Tensor
    in_std: Tensor

    def __init__(
        self,
        in_dims: Sequence[int],
        *,
        latent_dim: int,
        n_clusters: int,
        hidden: int = 128,
        encoder: str = "mlp",
        decoders: Sequence[str] | None = None,
        libraries: Sequence[np.ndarray | Tensor | None] | None = None,
        learn_cluster_var: bool = True,
        min_var: float | Sequence[float] = 1e-4,
        physics_scale: bool = False,
    ) -> None:
        super().__init__()
        self.in_dims = [int(d) for d in in_dims]
        m = len(self.in_dims)
        d_max = max(self.in_dims)
        self.latent_dim = latent_dim
        self.n_clusters = n_clusters
        self.decoder_kinds = list(decoders) if decoders is not None else ["mlp"] * m
        mv = [float(min_var)] * m if isinstance(min_var, int | float) else [float(v) for v in min_var]
        if len(mv) != m:
            raise ValueError(f"min_var needs one value per modality ({m}), got {len(mv)}")
        self.min_var = mv
        self.hidden = int(hidden)
        self.physics_scale = bool(physics_scale)
        enc = {"mlp": MLPEncoder, "conv": ConvEncoder}[encoder]
        self.encoders = nn.ModuleList(enc(d, hidden, latent_dim) for d in self.in_dims)
        self.cross_encoders = nn.ModuleList(enc(d, hidden, latent_dim) for d in self.in_dims)
        self.decoders = nn.ModuleList(MLPDecoder(latent_dim, hidden, d) for d in self.in_dims)
        self.dec_logvar = nn.Parameter(torch.zeros(m, d_max))
        self.register_buffer("in_mean", torch.zeros(m, d_max))
        self.register_buffer("in_std", torch.ones(m, d_max))
        self.register_buffer(
            "mu_c", torch.randn(n_clusters, latent_dim, generator=torch.Generator().manual_seed(0))
        )
        self.logvar_c = nn.Parameter(torch.zeros(n_clusters, latent_dim), requires_grad=learn_cluster_var)
        self.pi_logits = nn.Parameter(torch.zeros(n_clusters))
        phys = {
            i: torch.as_tensor(np.asarray(libraries[i]), dtype=torch.float32)
            for i, kind in enumerate(self.decoder_kinds)
            if kind == "physics" and libraries is not None and libraries[i] is not None
        }
        missing = [i for i, k in enumerate(self.decoder_kinds) if k == "physics" and i not in phys]
        if missing:
            raise ValueError(f"physics decoder without a library for modalities {missing}")
        self.physics: PhysicsExpert | None = None
        if phys:
            k = {int(v.shape[0]) for v in phys.values()}
            if len(k) != 1:
                raise ValueError("every physics modality needs the same endmembers")
            self.physics = PhysicsExpert(n_clusters, k.pop(), phys)

    # ------------------------------------------------------------------ plumbing
    def architecture(self) -> dict[str, Any]:
        """Constructor arguments (plain types) to rebuild this model from a checkpoint."""
        return {
            "in_dims": self.in_dims,
            "latent_dim": self.latent_dim,
            "n_clusters": self.n_clusters,
            "hidden": self.hidden,
            "encoder": "conv" if isinstance(self.encoders[0], ConvEncoder) else "mlp",
            "decoders": self.decoder_kinds,
            "learn_cluster_var": bool(self.logvar_c.requires_grad),
            "min_var": self.min_var,
            "physics_scale": self.physics_scale,
            "n_endmembers": 0 if self.physics is None else int(self.physics.raw_abundance.shape[1]),
        }

    @torch.no_grad()
    def set_input_stats(self, mean: Tensor, std: Tensor) -> None:
        """Encoder standardisation ``(x - mean) / std`` per modality and band, ``[M, D_max]``."""
        self.in_mean.copy_(mean)
        self.in_std.copy_(std.clamp_min(1e-6))

    @property
    def log_pi(self) -> Tensor:
        """``log pi_c`` (softmax of the trainable logits)."""
        return torch.log_softmax(self.pi_logits, dim=0)

    def dec_var_logs(self, m: int) -> Tensor:
        """Floored decoder log-variance of modality ``m``, ``[D_m]``."""
        floor = math.log(self.min_var[m])
        return floor + F.softplus(self.dec_logvar[m, : self.in_dims[m]] - floor)

    @staticmethod
    def clean(x: Tensor, mask: Tensor) -> Tensor:
        """``x`` with every absent entry (and any non-finite value) replaced by 0."""
        keep = mask.unsqueeze(-1) & torch.isfinite(x)
        return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))

    # ------------------------------------------------------------------ encoding
    def encode(self, x: Tensor, mask: Tensor, cross: bool = False) -> tuple[Tensor, Tensor]:
        """Per-modality ``(mu, logvar) [M, B, L]`` (absent rows are finite but meaningless)."""
        x = self.clean(x, mask)
        z = (x - self.in_mean.unsqueeze(1)) / self.in_std.unsqueeze(1)
        z = torch.where(mask.unsqueeze(-1), z, torch.zeros((), dtype=z.dtype, device=z.device))
        encs = self.cross_encoders if cross else self.encoders
        mus, lvs = [], []
        for i, (enc, d) in enumerate(zip(encs, self.in_dims, strict=True)):
            mu, lv = enc(z[i, :, :d])
            mus.append(mu)
            lvs.append(lv)
        return torch.stack(mus), torch.stack(lvs)

    def posterior(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Multimodal ``q(Z | present X) = N(mu, var)``: PoE of the present experts and ``N(0, I)``."""
        mu_m, lv_m = self.encode(x, mask)
        return product_of_experts(mu_m, lv_m, mask, prior_expert=True)

    def cluster_probs(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """``p(c | X)`` with ``Z`` integrated out (:func:`marginal_cluster_posterior`)."""
        return marginal_cluster_posterior(mu, logvar, self.log_pi, self.mu_c, self.logvar_c)

    def physics_log_lik(self, i: int, xi: Tensor) -> tuple[Tensor, Tensor]:
        """``log N(x; s_c E_c, var)`` summed over bands, ``[B, C]``, and the brightness scales
        ``s [B, C]``: 1, or with ``physics_scale`` the closed-form weighted least-squares
        ``s_c = max(0, <x, E_c>_w / <E_c, E_c>_w)`` (``w = 1/var``; illumination profiled out)."""
        assert self.physics is not None
        means = self.physics.means(i)  # [C, D]
        lv = self.dec_var_logs(i)
        if self.physics_scale:
            w = torch.exp(-lv)
            num = (xi * w) @ means.T  # [B, C]
            den = ((means**2) * w).sum(-1).clamp_min(1e-12)  # [C]
            scale = (num / den).clamp_min(0.0)
        else:
            scale = torch.ones(xi.shape[0], means.shape[0], dtype=xi.dtype, device=xi.device)
        ll = gaussian_log_prob(xi.unsqueeze(1), scale.unsqueeze(-1) * means.unsqueeze(0), lv).sum(-1)
        return ll, scale

    def elbo_optimal_cluster_probs(self, x: Tensor, mask: Tensor) -> Tensor:
        """The ELBO-optimal ``q(c|X) ∝ pi_c exp(E_q[log p(Z|c)] + sum_physics log p(X_m|c))``, ``[B, C]``.

        Equal to VaDE's estimate up to the physics experts' own evidence, which ``p(c|Z)`` only
        sees through the encoders; without physics modalities it is ``p(c|Z)`` averaged in log space.
        """
        mu, logvar = self.posterior(x, mask)
        logr = self.log_pi.unsqueeze(0) + latent_expected_log_lik(mu, logvar, self.mu_c, self.logvar_c)
        if self.physics is not None:
            xc = self.clean(x, mask)
            for i in self.physics.modalities:
                d = self.in_dims[i]
                ll, _ = self.physics_log_lik(i, xc[i, :, :d])
                logr = logr + torch.where(
                    mask[i].unsqueeze(-1), ll, torch.zeros((), dtype=ll.dtype, device=ll.device)
                )
        return torch.softmax(logr, dim=-1)

    # ------------------------------------------------------------------ likelihood
    def recon_log_lik(
        self, x: Tensor, mask: Tensor, z: Tensor, gamma: Tensor, mlp_only: bool = False
    ) -> Tensor:
        """``sum_m present E[log p(X_m | Z, c)]`` per sample ``[B]`` at latent sample ``z``.

        MLP: ``log N(x; f_m(z), var_m)``; physics: ``sum_c gamma_c log N(x; E_mc, var_m)``.
        """
        x = self.clean(x, mask)
        total = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
        for i, d in enumerate(self.in_dims):
            xi = x[i, :, :d]
            lv = self.dec_var_logs(i)
            if self.decoder_kinds[i] == "physics" and not mlp_only:
                assert self.physics is not None
                ll_c, _ = self.physics_log_lik(i, xi)  # [B, C]
                ll = (gamma * ll_c).sum(-1)
            else:
                ll = gaussian_log_prob(xi, self.decoders[i](z), lv).sum(-1)
            total = total + torch.where(mask[i], ll, torch.zeros((), dtype=ll.dtype, device=ll.device))
        return total

    def elbo(self, x: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Closed-form multimodal VaDE ELBO per sample (one reparameterised ``Z`` for gamma and the
        MLP decoders). Returns ``elbo``, ``recon``, ``latent`` ``[B]`` and ``mu``, ``logvar``, ``gamma``."""
        mu, logvar = self.posterior(x, mask)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        gamma = gmm_responsibilities(z, self.log_pi, self.mu_c, self.logvar_c)
        recon = self.recon_log_lik(x, mask, z, gamma)
        latent = latent_elbo_terms(mu, logvar, gamma, self.log_pi, self.mu_c, self.logvar_c)
        return {
            "elbo": recon + latent,
            "recon": recon,
            "latent": latent,
            "mu": mu,
            "logvar": logvar,
            "gamma": gamma,
        }

    def warmup_elbo(self, x: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Plain-VAE ELBO per sample (MLP decoders everywhere, ``N(0, I)`` prior) for the warm-up."""
        mu, logvar = self.posterior(x, mask)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        kl = kl_diag_gaussians(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))
        return self.recon_log_lik(x, mask, z, torch.empty(0), mlp_only=True) - kl

    # ------------------------------------------------------------------ cross-modal
    def cross_kl(self, x: Tensor, mask: Tensor) -> Tensor:
        """``KL(q(Z|X_1..X_D) || q~(Z|X_m))`` per present modality, ``[M, B]`` (0 where absent);
        the multimodal posterior is detached (it is the target)."""
        with torch.no_grad():
            mu, logvar = self.posterior(x, mask)
        mu_m, lv_m = self.encode(x, mask, cross=True)
        kl = kl_diag_gaussians(mu.unsqueeze(0), logvar.unsqueeze(0), mu_m, lv_m)
        return torch.where(mask, kl, torch.zeros((), dtype=kl.dtype, device=kl.device))

    def cross_posterior(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """From the present modalities through the unimodal (cross) encoders: the equal-weight
        mixture of their Gaussians, as closed-form mean and variance ``[B, L]``, and
        ``p(c | X_present) = mean_m p(c | X_m)`` ``[B, C]``."""
        mu_m, lv_m = self.encode(x, mask, cross=True)
        w = mask.T.to(mu_m.dtype)
        w = w / w.sum(1, keepdim=True).clamp_min(1.0)  # [B, M]
        zero = torch.zeros((), dtype=mu_m.dtype, device=mu_m.device)
        mus = torch.where(mask.unsqueeze(-1), mu_m, zero).transpose(0, 1)  # [B, M, L]
        var = torch.where(mask.unsqueeze(-1), torch.exp(lv_m), zero + 1.0).transpose(0, 1)
        mean, v = mixture_moments(w, mus, var)
        probs = torch.stack([self.cluster_probs(mu_m[i], lv_m[i]) for i in range(len(self.in_dims))], 1)
        p = (w.unsqueeze(-1) * probs).sum(1)  # [B, C]
        return mean, v, p

    @torch.no_grad()
    def generate(
        self, target: int, x: Tensor, mask: Tensor, route: str = "moe", n_samples: int = 32
    ) -> tuple[Tensor, Tensor]:
        """Predict modality ``target`` from the present modalities in ``mask`` (``target`` itself
        is ignored). Returns mean and variance ``[B, D_target]``.

        ``route="moe"`` (default): the mixture of the cluster experts with weights
        ``w_c = p(c | X_present)`` (cross-modal encoders), in closed form: mean
        ``sum_c w_c E_c`` and variance ``var + sum_c w_c (E_c - mean)^2``, where ``E_c`` is the
        physics expert's cluster spectrum or the MLP decoder at the cluster centre ``f(mu_c)``.
        ``route="sample"`` (MLP decoders only; physics modalities always use ``moe``): moments
        of ``f(Z)`` over ``n_samples`` seeded draws of ``Z`` from the cross-modal mixture.
        """
        m = mask.clone()
        m[target] = False
        _, _, p = self.cross_posterior(x, m)
        var_noise = torch.exp(self.dec_var_logs(target)).expand(x.shape[1], -1)
        if route == "moe" or self.decoder_kinds[target] == "physics":
            means = self.cluster_spectra(target).unsqueeze(0)  # [1, C, D]
            if self.decoder_kinds[target] == "physics" and self.physics_scale:
                means = means * self.brightness(x, m).unsqueeze(-1)  # [B, C, D]
            mean, v = mixture_moments(p, means, var_noise.unsqueeze(1))
            return mean, v
        if route != "sample":
            raise ValueError(f"unknown route {route!r} (moe or sample)")
        mu_m, lv_m = self.encode(x, m, cross=True)
        g = torch.Generator(device=x.device)
        g.manual_seed(0)
        w = m.T.to(mu_m.dtype)  # [B, M]
        w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
        ar = torch.arange(x.shape[1], device=x.device)
        draws = []
        for _ in range(n_samples):
            pick = torch.multinomial(w, 1, generator=g).squeeze(1)  # expert per sample
            mu_s, lv_s = mu_m[pick, ar], lv_m[pick, ar]
            eps = torch.randn(mu_s.shape, generator=g, dtype=mu_s.dtype, device=mu_s.device)
            draws.append(self.decoders[target](mu_s + torch.exp(0.5 * lv_s) * eps))
        f = torch.stack(draws)
        return f.mean(0), f.var(0, unbiased=False) + var_noise

    @torch.no_grad()
    def brightness(self, x: Tensor, mask: Tensor) -> Tensor:
        """Per-sample, per-cluster scale ``[B, C]`` for a generated physics modality: the mean of
        the present physics modalities' least-squares scales (1 where none is present)."""
        xc = self.clean(x, mask)
        total = torch.zeros(x.shape[1], self.n_clusters, dtype=x.dtype, device=x.device)
        count = torch.zeros(x.shape[1], 1, dtype=x.dtype, device=x.device)
        for i in [] if self.physics is None else self.physics.modalities:
            _, s = self.physics_log_lik(i, xc[i, :, : self.in_dims[i]])
            here = mask[i].unsqueeze(-1)
            total = total + torch.where(here, s, torch.zeros((), dtype=s.dtype, device=s.device))
            count = count + here.to(x.dtype)
        return torch.where(count > 0, total / count.clamp_min(1.0), torch.ones_like(total))

    @torch.no_grad()
    def cluster_spectra(self, target: int) -> Tensor:
        """Decoded cluster fingerprint ``[C, D]``: the physics expert's ``E_c`` or ``f(mu_c)``."""
        if self.decoder_kinds[target] == "physics":
            assert self.physics is not None
            return self.physics.means(target)
        out: Tensor = self.decoders[target](self.mu_c)
        return out
