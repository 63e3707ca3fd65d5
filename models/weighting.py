"""Balancing cross entropy and EMIN: ``L = α·L_ce + (1 − α)·L_emin`` (report Equation 1).

α strategies (report sections 3.3, 3.6): a fixed value, a value sampled once
per run, a supervised-then-EMIN fine-tuning schedule, and MGDA (Sener &
Koltun, 2018), which picks α every step as the min-norm convex combination
of the two gradients on the shared parameters. :func:`mgda_alpha` is the one MGDA of the
code base: it takes one pair of flat gradients ``[P]`` (a single run) or K pairs ``[K, P]``
(K stacked trials, :mod:`models.training.stacked`) and returns α ``[]`` / ``[K]``.
:func:`min_norm_weights` (public API, not used by the trainers) solves the min-norm problem
exactly for K > 2 objectives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from pipeline.errors import TrainingConfigError

Normalization = Literal["none", "l2", "loss", "loss+"]

__all__ = [
    "FinetuneSchedule",
    "FixedAlpha",
    "SampledAlpha",
    "combine",
    "flat_grad",
    "mgda_alpha",
    "min_norm_weights",
    "sample_alpha",
]


def combine(l_ce: Tensor, l_emin: Tensor, alpha: float | Tensor) -> Tensor:
    """Report Equation 1: ``alpha·l_ce + (1 − alpha)·l_emin`` (``alpha`` on the CE term)."""
    return alpha * l_ce + (1.0 - alpha) * l_emin


@dataclass(frozen=True)
class FixedAlpha:
    """The same α every epoch."""

    value: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= 1.0:
            raise TrainingConfigError(
                f"alpha must lie in [0, 1], got {self.value}",
                field="alpha_value",
                fix="give a CE weight in [0, 1]",
            )

    def __call__(self, epoch: int) -> float:
        """α for ``epoch`` (constant)."""
        return self.value


def sample_alpha(
    low: float = 0.0,
    high: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    rng: np.random.Generator | None = None,
    log_uniform: bool = False,
) -> float:
    """Draw one α in ``[low, high]`` (uniform, or log-uniform for narrow α bands near 0 or 1).

    Reproducible through a seeded ``torch.Generator`` or ``numpy`` Generator
    (give at most one; with neither, torch's global RNG is used).
    """
    if not 0.0 <= low <= high <= 1.0:
        raise TrainingConfigError(
            f"need 0 <= low <= high <= 1, got low={low}, high={high}",
            field="alpha_low",
            fix="choose 0 <= alpha_low <= alpha_high <= 1",
        )
    if generator is not None and rng is not None:
        raise ValueError("give either a torch generator or a numpy rng, not both")
    if log_uniform and low <= 0.0:
        raise TrainingConfigError(
            "log-uniform sampling needs low > 0", field="alpha_low", fix="set alpha_low > 0"
        )
    u = float(rng.random()) if rng is not None else float(torch.rand((), generator=generator).item())
    if log_uniform:
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


@dataclass(frozen=True)
class SampledAlpha:
    """α sampled once per run (report: "simply randomly sampling α"), then fixed."""

    value: float

    @classmethod
    def draw(
        cls,
        low: float = 0.0,
        high: float = 1.0,
        *,
        generator: torch.Generator | None = None,
        rng: np.random.Generator | None = None,
        log_uniform: bool = False,
    ) -> SampledAlpha:
        """Sample the run's α with :func:`sample_alpha`."""
        return cls(sample_alpha(low, high, generator=generator, rng=rng, log_uniform=log_uniform))

    def __call__(self, epoch: int) -> float:
        """α for ``epoch`` (the value drawn for this run)."""
        return self.value


@dataclass(frozen=True)
class FinetuneSchedule:
    """Supervised, then EMIN fine-tuning (report section 3.6).

    ``before`` (default 1: CE only) for epochs ``< switch_epoch``, then
    ``after`` (default 0: EMIN only).
    """

    switch_epoch: int
    after: float = 0.0
    before: float = 1.0

    def __call__(self, epoch: int) -> float:
        """α for ``epoch`` (0-based)."""
        return self.before if epoch < self.switch_epoch else self.after


def flat_grad(
    loss: Tensor, params: Iterable[Tensor], *, retain_graph: bool = True, trials: int | None = None
) -> Tensor:
    """Gradient of ``loss`` w.r.t. ``params`` flattened into one vector (zeros for unused params).

    ``trials=K``: the parameters are stacked along a leading trial dimension and ``loss`` is a
    sum over trials; the result is one row per trial, ``[K, P]``. ``retain_graph=True`` by
    default so a second objective's gradient (and the final backward of the combined loss)
    can reuse the graph.
    """
    ps = [p for p in params if p.requires_grad]
    if not ps:
        raise ValueError("no parameter requires grad")
    grads = torch.autograd.grad(loss, ps, retain_graph=retain_graph, allow_unused=True)
    shape = (-1,) if trials is None else (trials, -1)
    flat = [(torch.zeros_like(p) if g is None else g).reshape(shape) for p, g in zip(ps, grads, strict=True)]
    return torch.cat(flat, dim=-1)


def _normaliser(g: Tensor, loss: Tensor | float | None, normalization: Normalization) -> Tensor:
    """Scale that Sener & Koltun divide a task gradient by (their ``gradient_normalizers``).

    ``g`` is float64 ``[..., P]``; the result has shape ``[...]`` (one scale per gradient row).
    """
    norm = torch.linalg.vector_norm(g, dim=-1)
    if normalization == "none":
        return torch.ones_like(norm)
    tiny = torch.finfo(g.dtype).tiny
    if normalization == "l2":
        return norm.clamp(min=tiny)
    if loss is None:
        raise ValueError(f"normalization={normalization!r} needs the loss values l_ce and l_emin")
    lval = torch.as_tensor(loss, device=g.device).detach().to(g.dtype).abs()
    if normalization == "loss":
        return lval.clamp(min=tiny)
    if normalization == "loss+":
        return (lval * norm).clamp(min=tiny)
    raise TrainingConfigError(
        f"normalization must be 'none', 'l2', 'loss' or 'loss+', got {normalization!r}",
        field="mgda_normalization",
        fix="use one of none, l2, loss, loss+",
    )


def mgda_alpha(
    g_ce: Tensor,
    g_emin: Tensor,
    normalization: Normalization = "none",
    l_ce: Tensor | float | None = None,
    l_emin: Tensor | float | None = None,
) -> Tensor:
    """Exact MGDA weight on the CE gradient for two objectives (Sener & Koltun 2018, Alg. 1 / Eq. 4).

    With ``g1 = g_ce / n1`` and ``g2 = g_emin / n2`` (``n`` from
    ``normalization``: ``"none"`` 1, ``"l2"`` the gradient norm, ``"loss"``
    the loss value, ``"loss+"`` loss × norm), returns the minimiser of
    ``‖α g1 + (1 − α) g2‖²`` over ``α ∈ [0, 1]``::

        α = clamp(((g2 − g1)·g2) / ‖g1 − g2‖², 0, 1)

    and 0.5 when ``g1 = g2`` (every α is optimal). As in the reference
    implementation the weight found on normalised gradients is then applied
    to the raw losses. Batched: gradients ``[P]`` give a 0-d α, gradients
    ``[K, P]`` (one row per stacked trial, losses ``[K]``) give α ``[K]``,
    row by row the same formula. Returns a detached tensor (float64 is used
    for the dot products) of ``g_ce``'s dtype, on the gradients' device.
    """
    if g_ce.dim() > 2 or g_ce.shape != g_emin.shape:
        raise ValueError(
            f"gradients must both be [P] or [K, P], got {tuple(g_ce.shape)} vs {tuple(g_emin.shape)}"
        )
    g1 = g_ce.detach().double()
    g2 = g_emin.detach().double()
    g1 = g1 / _normaliser(g1, l_ce, normalization).unsqueeze(-1)
    g2 = g2 / _normaliser(g2, l_emin, normalization).unsqueeze(-1)
    diff = g1 - g2
    denom = (diff * diff).sum(dim=-1)
    num = (-diff * g2).sum(dim=-1)
    scale = (g1 * g1).sum(dim=-1) + (g2 * g2).sum(dim=-1)
    degenerate = denom <= 1e-30 * scale.clamp(min=torch.finfo(torch.float64).tiny)
    alpha = torch.where(degenerate, torch.full_like(denom, 0.5), num / torch.where(degenerate, 1.0, denom))
    return alpha.clamp(0.0, 1.0).to(g_ce.dtype)


def _solve_affine(gram: Tensor) -> Tensor:
    """Minimiser of ``wᵀ G w`` subject to ``Σ w = 1`` (no sign constraint), via the bordered KKT system."""
    k = gram.shape[0]
    kkt = torch.zeros((k + 1, k + 1), dtype=gram.dtype)
    kkt[:k, :k] = gram
    kkt[:k, k] = 1.0
    kkt[k, :k] = 1.0
    rhs = torch.zeros(k + 1, dtype=gram.dtype)
    rhs[k] = 1.0
    sol = torch.linalg.lstsq(kkt, rhs.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    w = sol[:k]
    return w / w.sum()


def min_norm_weights(grads: Tensor, *, tol: float = 1e-12, max_iter: int = 1000) -> Tensor:
    """Min-norm point of the convex hull of K gradients: ``argmin_{w ∈ Δ} ‖Σ_k w_k g_k‖²``.

    ``grads`` is ``[K, P]``; returns weights ``[K]`` on the simplex (same
    dtype/device as ``grads``). Solved exactly with Wolfe's (1976) active-set
    min-norm-point algorithm on the ``K × K`` Gram matrix in float64 on the
    CPU: finite, deterministic, and the result satisfies the KKT conditions
    (``g_k·v = ‖v‖²`` on the support, ``≥ ‖v‖²`` off it, ``v = Σ w_k g_k``)
    to ~``tol`` relative to ``max_k ‖g_k‖²``. This is the problem that
    Sener & Koltun's Frank–Wolfe loop approximates; K = 2 reduces to
    :func:`mgda_alpha`.
    """
    if grads.dim() != 2 or grads.shape[0] < 1:
        raise ValueError(f"grads must be [K, P] with K >= 1, got shape {tuple(grads.shape)}")
    g64 = grads.detach().double()
    gram = (g64 @ g64.T).cpu()
    k_tot = gram.shape[0]
    scale = float(gram.diagonal().max().clamp(min=torch.finfo(torch.float64).tiny))
    eps = tol * scale
    w = torch.zeros(k_tot, dtype=torch.float64)
    start = int(torch.argmin(gram.diagonal()))
    w[start] = 1.0
    support = [start]
    for _ in range(max_iter):
        gw = gram @ w
        vv = float(w @ gw)
        j = int(torch.argmin(gw))
        if float(gw[j]) >= vv - eps or j in support:
            break
        support.append(j)
        while True:  # minor cycle: affine min-norm on the support, step back while it leaves the simplex
            idx = torch.tensor(support)
            u = _solve_affine(gram[idx][:, idx])
            if bool((u > 1e-15).all()):
                w = torch.zeros_like(w)
                w[idx] = u
                break
            cur = w[idx]
            neg = u <= 1e-15
            gap = cur[neg] - u[neg]
            ratios = torch.where(gap > 0, cur[neg] / torch.where(gap > 0, gap, 1.0), torch.inf)
            theta = min(max(float(ratios.min()), 0.0), 1.0)
            new = cur + theta * (u - cur)
            new = torch.where(new > 1e-15, new, torch.zeros_like(new))
            w = torch.zeros_like(w)
            w[idx] = new
            support = [int(i) for i, keep in zip(idx.tolist(), (new > 0).tolist(), strict=True) if keep]
            if len(support) == 1:
                break
        w = w.clamp(min=0.0)
        w = w / w.sum()
    return w.to(device=grads.device, dtype=grads.dtype)
