"""Balancing cross entropy and EMIN: ``L = α·L_ce + (1 − α)·L_emin`` (report Equation 1).

α strategies (report sections 3.3, 3.6): a fixed value, a value sampled once
per run, a supervised-then-EMIN fine-tuning schedule, and MGDA (Sener &
Koltun, 2018), which picks α every step as the min-norm convex combination
of the two gradients on the shared parameters. :func:`min_norm_weights`
solves the same problem exactly for K > 2 objectives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

Normalization = Literal["none", "l2", "loss", "loss+"]

__all__ = [
    "AlphaStrategy",
    "FinetuneSchedule",
    "FixedAlpha",
    "MGDAAlpha",
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


class AlphaStrategy(Protocol):
    """Anything that gives the CE weight α for an epoch (MGDA is per step, see :class:`MGDAAlpha`)."""

    def __call__(self, epoch: int) -> float: ...


@dataclass(frozen=True)
class FixedAlpha:
    """The same α every epoch."""

    value: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.value}")

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
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    if generator is not None and rng is not None:
        raise ValueError("give either a torch generator or a numpy rng, not both")
    if log_uniform and low <= 0.0:
        raise ValueError("log-uniform sampling needs low > 0")
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


def flat_grad(loss: Tensor, params: Iterable[Tensor], *, retain_graph: bool = True) -> Tensor:
    """Gradient of ``loss`` w.r.t. ``params`` flattened into one vector (zeros for unused params).

    ``retain_graph=True`` by default so a second objective's gradient (and
    the final backward of the combined loss) can reuse the graph.
    """
    ps = [p for p in params if p.requires_grad]
    if not ps:
        raise ValueError("no parameter requires grad")
    grads = torch.autograd.grad(loss, ps, retain_graph=retain_graph, allow_unused=True)
    flat = [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(ps, grads, strict=True)]
    return torch.cat(flat)


def _normaliser(g: Tensor, loss: Tensor | float | None, normalization: Normalization) -> Tensor:
    """Scale that Sener & Koltun divide a task gradient by (their ``gradient_normalizers``)."""
    one = torch.ones((), dtype=g.dtype, device=g.device)
    if normalization == "none":
        return one
    tiny = torch.finfo(g.dtype).tiny
    norm = torch.linalg.vector_norm(g)
    if normalization == "l2":
        return norm.clamp(min=tiny)
    if loss is None:
        raise ValueError(f"normalization={normalization!r} needs the loss values l_ce and l_emin")
    lval = torch.as_tensor(loss, dtype=g.dtype, device=g.device).detach().abs()
    if normalization == "loss":
        return lval.clamp(min=tiny)
    if normalization == "loss+":
        return (lval * norm).clamp(min=tiny)
    raise ValueError(f"normalization must be 'none', 'l2', 'loss' or 'loss+', got {normalization!r}")


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
    to the raw losses. Returns a detached 0-d tensor (float64 is used for
    the dot products), on the gradients' device.
    """
    g1 = g_ce.detach().reshape(-1).double()
    g2 = g_emin.detach().reshape(-1).double()
    if g1.shape != g2.shape:
        raise ValueError(f"gradients differ in size: {g1.numel()} vs {g2.numel()}")
    g1 = g1 / _normaliser(g1, l_ce, normalization)
    g2 = g2 / _normaliser(g2, l_emin, normalization)
    diff = g1 - g2
    denom = torch.dot(diff, diff)
    num = torch.dot(-diff, g2)
    scale = torch.dot(g1, g1) + torch.dot(g2, g2)
    degenerate = denom <= 1e-30 * scale.clamp(min=torch.finfo(torch.float64).tiny)
    alpha = torch.where(degenerate, torch.full_like(denom, 0.5), num / torch.where(degenerate, 1.0, denom))
    return alpha.clamp(0.0, 1.0).to(g_ce.dtype)


@dataclass
class MGDAAlpha:
    """Per-step MGDA α on the shared parameters (report section 3.3).

    Call :meth:`step` with the two losses after the forward pass; it returns
    the combined loss ready for ``backward()`` and records α in
    :attr:`history`.
    """

    params: Sequence[Tensor]
    normalization: Normalization = "none"
    history: list[float] = field(default_factory=list)

    def alpha(self, l_ce: Tensor, l_emin: Tensor) -> Tensor:
        """MGDA α for the current step (keeps the graph for the combined backward)."""
        g_ce = flat_grad(l_ce, self.params, retain_graph=True)
        g_emin = flat_grad(l_emin, self.params, retain_graph=True)
        return mgda_alpha(g_ce, g_emin, self.normalization, l_ce, l_emin)

    def step(self, l_ce: Tensor, l_emin: Tensor) -> Tensor:
        """Combined loss ``α·l_ce + (1 − α)·l_emin`` with this step's MGDA α (α is a constant)."""
        a = self.alpha(l_ce, l_emin)
        self.history.append(float(a))
        return combine(l_ce, l_emin, a)


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
