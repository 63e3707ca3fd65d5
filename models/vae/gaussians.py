"""Closed-form Gaussian algebra of the multimodal GMM-VAE (product of experts, KL, VaDE ELBO, EM).

Conventions: latent tensors are ``[B, L]`` (or ``[M, B, L]`` per modality), variances are
carried as log-variances, ``mask [M, B]`` is True where modality ``m`` observed sample ``b``.
Absent entries are removed with :func:`torch.where` (never by multiplying by the mask), so a
NaN or inf in an absent expert cannot reach the result or its gradient.

Notation of the paper (multimodal VaDE): posterior ``q(Z|X) = N(mu, diag(var))`` (the product
of the present experts and the prior expert ``N(0, I)``), prior ``p(c) = pi_c``,
``p(Z|c) = N(mu_c, diag(var_c))`` and ``gamma_c = p(c|Z)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "LOG_2PI",
    "StreamingMeans",
    "cluster_log_likelihood",
    "gaussian_log_prob",
    "gmm_responsibilities",
    "kl_diag_gaussians",
    "kmeans",
    "latent_elbo_terms",
    "latent_expected_log_lik",
    "marginal_cluster_posterior",
    "mixture_moments",
    "product_of_experts",
]

LOG_2PI = math.log(2.0 * math.pi)


def product_of_experts(
    mu: Tensor, logvar: Tensor, mask: Tensor, prior_expert: bool = True
) -> tuple[Tensor, Tensor]:
    """Precision-weighted product of the present Gaussian experts (and ``N(0, I)``).

    ``mu``, ``logvar``: ``[M, B, L]``; ``mask``: ``[M, B]``. Returns ``(mu, logvar)`` ``[B, L]``:
    precision ``T = [1 +] sum_m T_m``, mean ``T^-1 sum_m T_m mu_m`` over the present ``m``.
    Without the prior expert, a sample with no present modality gets ``N(0, I)``.
    """
    m = mask.unsqueeze(-1)
    zero = torch.zeros((), dtype=mu.dtype, device=mu.device)
    prec = torch.where(m, torch.exp(-torch.where(m, logvar, zero)), zero)
    weighted = torch.where(m, prec * torch.where(m, mu, zero), zero)
    t = prec.sum(dim=0)
    num = weighted.sum(dim=0)
    if prior_expert:
        t = t + 1.0
    else:
        none = ~mask.any(dim=0, keepdim=False).unsqueeze(-1)
        t = torch.where(none, torch.ones_like(t), t)
    return num / t, -torch.log(t)


def kl_diag_gaussians(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """``KL(N(mu_q, var_q) || N(mu_p, var_p))`` for diagonal Gaussians, summed over the last dim."""
    return 0.5 * (
        logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) * torch.exp(-logvar_p) - 1.0
    ).sum(dim=-1)


def gaussian_log_prob(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise ``log N(x; mean, exp(logvar))`` (no reduction)."""
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def cluster_log_likelihood(z: Tensor, mu_c: Tensor, logvar_c: Tensor) -> Tensor:
    """``log N(z; mu_c, var_c)`` for every cluster: ``z [B, L]``, ``mu_c [C, L]`` → ``[B, C]``."""
    return gaussian_log_prob(z.unsqueeze(1), mu_c.unsqueeze(0), logvar_c.unsqueeze(0)).sum(-1)


def gmm_responsibilities(z: Tensor, log_pi: Tensor, mu_c: Tensor, logvar_c: Tensor) -> Tensor:
    """VaDE's ``gamma_c = p(c|z) ∝ pi_c N(z; mu_c, var_c)``, ``[B, C]`` (rows sum to 1)."""
    return torch.softmax(log_pi.unsqueeze(0) + cluster_log_likelihood(z, mu_c, logvar_c), dim=-1)


def marginal_cluster_posterior(
    mu: Tensor, logvar: Tensor, log_pi: Tensor, mu_c: Tensor, logvar_c: Tensor
) -> Tensor:
    """``p(c|X) ∝ pi_c ∫ q(Z|X) N(Z; mu_c, var_c) dZ = pi_c N(mu; mu_c, var_c + var)``, ``[B, C]``.

    The Bayesian cluster estimate of the paper's cross-modal section, with ``Z`` integrated out
    in closed form instead of evaluated at a sample.
    """
    var = torch.exp(logvar).unsqueeze(1) + torch.exp(logvar_c).unsqueeze(0)
    ll = gaussian_log_prob(mu.unsqueeze(1), mu_c.unsqueeze(0), torch.log(var)).sum(-1)
    return torch.softmax(log_pi.unsqueeze(0) + ll, dim=-1)


def latent_elbo_terms(
    mu: Tensor, logvar: Tensor, gamma: Tensor, log_pi: Tensor, mu_c: Tensor, logvar_c: Tensor
) -> Tensor:
    """Per-sample closed form of the latent part of the ELBO, ``[B]``:

    ``E_q[log p(Z|c)] + E_q[log p(c)] - E_q[log q(Z)] - E_q[log q(c)]`` with ``q(c) = gamma``
    and ``q(Z) = N(mu, var)``, i.e.

    ``- 1/2 sum_c gamma_c sum_l (log 2pi + log var_cl + (var_l + (mu_l - mu_cl)^2) / var_cl)
    + sum_c gamma_c (log pi_c - log gamma_c) + 1/2 sum_l (1 + log 2pi + log var_l)``.
    """
    var = torch.exp(logvar).unsqueeze(1)  # [B, 1, L]
    diff2 = (mu.unsqueeze(1) - mu_c.unsqueeze(0)) ** 2  # [B, C, L]
    e_log_pz_c = -0.5 * (LOG_2PI + logvar_c.unsqueeze(0) + (var + diff2) * torch.exp(-logvar_c).unsqueeze(0))
    e_log_pz = (gamma * e_log_pz_c.sum(-1)).sum(-1)
    log_gamma = torch.log(gamma.clamp_min(1e-30))
    e_log_pc = (gamma * (log_pi.unsqueeze(0) - log_gamma)).sum(-1)
    entropy = 0.5 * (1.0 + LOG_2PI + logvar).sum(-1)
    return e_log_pz + e_log_pc + entropy


def latent_expected_log_lik(mu: Tensor, logvar: Tensor, mu_c: Tensor, logvar_c: Tensor) -> Tensor:
    """``E_{N(mu, var)}[log N(Z; mu_c, var_c)]`` for every cluster, ``[B, C]`` (closed form)."""
    var = torch.exp(logvar).unsqueeze(1)
    diff2 = (mu.unsqueeze(1) - mu_c.unsqueeze(0)) ** 2
    terms = LOG_2PI + logvar_c.unsqueeze(0) + (var + diff2) * torch.exp(-logvar_c).unsqueeze(0)
    return -0.5 * terms.sum(-1)


def mixture_moments(weights: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of a mixture ``sum_k w_k N(m_k, v_k)`` (closed form, law of total variance).

    ``weights [B, K]``, ``means``/``variances`` ``[B, K, D]`` (or broadcastable) → ``[B, D]`` each.
    """
    w = weights.unsqueeze(-1)
    mean = (w * means).sum(1)
    second = (w * (variances + means**2)).sum(1)
    return mean, (second - mean**2).clamp_min(0.0)


class StreamingMeans:
    """Streaming EM estimate of the cluster means (the paper's Algorithm 1).

    For fixed responsibilities the ELBO is minimised in ``mu_c`` by the responsibility-weighted
    mean of the encoded means, ``mu_c = sum_d gamma_cd mu_d / sum_d gamma_cd``. The sums are
    accumulated batch by batch (float64); :meth:`means` returns the current estimate, keeping
    ``previous`` for clusters with (almost) no mass yet.
    """

    def __init__(self, n_clusters: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.weighted = torch.zeros(n_clusters, dim, dtype=torch.float64, device=device)
        self.mass = torch.zeros(n_clusters, dtype=torch.float64, device=device)

    def reset(self) -> None:
        """Forget the accumulated sums."""
        self.weighted.zero_()
        self.mass.zero_()

    @torch.no_grad()
    def update(self, gamma: Tensor, mu: Tensor) -> None:
        """Add a batch: ``gamma [B, C]`` responsibilities, ``mu [B, L]`` encoded means."""
        g = gamma.detach().double()
        self.weighted += g.T @ mu.detach().double()
        self.mass += g.sum(0)

    def means(self, previous: Tensor, min_mass: float = 1e-3) -> Tensor:
        """Current ``mu_c`` ``[C, L]`` in ``previous``'s dtype (``previous`` where mass < ``min_mass``)."""
        ok = (self.mass > min_mass).unsqueeze(-1)
        est = self.weighted / self.mass.clamp_min(min_mass).unsqueeze(-1)
        return torch.where(ok, est.to(previous.dtype), previous)


def kmeans(x: Tensor, k: int, *, seed: int = 0, n_init: int = 4, iters: int = 100) -> tuple[Tensor, Tensor]:
    """Seeded k-means++ / Lloyd in torch (float64): ``(centres [k, D], assignment [N])``.

    The best of ``n_init`` restarts by inertia. Deterministic for a given seed.
    """
    xd = x.detach().double()
    n = xd.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    best: tuple[float, Tensor, Tensor] | None = None
    for _ in range(n_init):
        first = int(torch.randint(n, (1,), generator=g).item())
        centres = [xd[first]]
        d2 = ((xd - centres[0]) ** 2).sum(-1)
        for _j in range(1, k):
            p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
            idx = int(torch.multinomial(p.cpu(), 1, generator=g).item())
            centres.append(xd[idx])
            d2 = torch.minimum(d2, ((xd - xd[idx]) ** 2).sum(-1))
        c = torch.stack(centres)
        assign = torch.zeros(n, dtype=torch.long, device=xd.device)
        for it in range(iters):
            dist = torch.cdist(xd, c)
            new = dist.argmin(1)
            if it > 0 and torch.equal(new, assign):
                break
            assign = new
            for j in range(k):
                sel = assign == j
                if bool(sel.any()):
                    c[j] = xd[sel].mean(0)
        inertia = float(((xd - c[assign]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, c.clone(), assign.clone())
    assert best is not None
    return best[1].to(x.dtype), best[2]
