"""Loss weighting: α strategies, MGDA against brute force / scipy, the K-objective min-norm solver vs KKT
and SLSQP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar

from models.training.loop import mix
from models.weighting import (
    FinetuneSchedule,
    FixedAlpha,
    SampledAlpha,
    combine,
    flat_grad,
    mgda_alpha,
    min_norm_weights,
    sample_alpha,
)

GRID = np.linspace(0.0, 1.0, 200_001)


def _brute_alpha(g1: np.ndarray, g2: np.ndarray) -> tuple[float, float]:
    """argmin over a fine grid of ||a g1 + (1-a) g2||^2 and the minimum (expanded to avoid a [grid, P] array)."""
    a11, a22, a12 = g1 @ g1, g2 @ g2, g1 @ g2
    f = GRID**2 * a11 + (1 - GRID) ** 2 * a22 + 2 * GRID * (1 - GRID) * a12
    i = int(np.argmin(f))
    return float(GRID[i]), float(f[i])


def _norm2(a: float, g1: np.ndarray, g2: np.ndarray) -> float:
    v = a * g1 + (1 - a) * g2
    return float(v @ v)


def test_combine_is_equation_1() -> None:
    l_ce, l_em = torch.tensor(2.0), torch.tensor(10.0)
    assert combine(l_ce, l_em, 0.25).item() == pytest.approx(0.25 * 2 + 0.75 * 10)
    assert combine(l_ce, l_em, torch.tensor(1.0)).item() == pytest.approx(2.0)


def test_fixed_and_finetune_schedules() -> None:
    assert [FixedAlpha(0.3)(e) for e in (0, 5, 500)] == [0.3, 0.3, 0.3]
    with pytest.raises(ValueError):
        FixedAlpha(1.5)
    s = FinetuneSchedule(switch_epoch=3)
    assert [s(e) for e in range(6)] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    s2 = FinetuneSchedule(switch_epoch=1, after=0.2)
    assert (s2(0), s2(1), s2(100)) == (1.0, 0.2, 0.2)


def test_sampled_alpha_is_seeded_and_in_range() -> None:
    a = [sample_alpha(0.1, 0.4, generator=torch.Generator().manual_seed(s)) for s in range(200)]
    b = [sample_alpha(0.1, 0.4, generator=torch.Generator().manual_seed(s)) for s in range(200)]
    assert a == b and all(0.1 <= x <= 0.4 for x in a) and len(set(a)) == 200
    assert max(a) - min(a) > 0.25  # spans the range
    c = [sample_alpha(1e-4, 1e-1, rng=np.random.default_rng(s), log_uniform=True) for s in range(400)]
    assert all(1e-4 <= x <= 1e-1 for x in c)
    # log-uniform: about a third of draws per decade
    frac_low = np.mean(np.array(c) < 1e-3)
    assert 0.22 < frac_low < 0.45
    run = SampledAlpha.draw(0.0, 1.0, rng=np.random.default_rng(1))
    assert run(0) == run(99) == SampledAlpha.draw(0.0, 1.0, rng=np.random.default_rng(1)).value
    with pytest.raises(ValueError):
        sample_alpha(0.5, 0.2)


@pytest.mark.parametrize("seed", range(12))
def test_mgda_alpha_matches_brute_force_and_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = int(rng.integers(2, 30))
    g1 = rng.normal(size=p) * rng.uniform(0.01, 5)
    g2 = rng.normal(size=p) * rng.uniform(0.01, 5)
    if seed % 3 == 0:  # nearly aligned, very different norms: the clamp at 0 or 1 is active
        g2 = g1 * 7.0 + rng.normal(size=p) * 0.01
    a = mgda_alpha(torch.tensor(g1), torch.tensor(g2)).item()
    grid_a, grid_f = _brute_alpha(g1, g2)
    res = minimize_scalar(
        lambda t: _norm2(t, g1, g2), bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-12}
    )
    assert 0.0 <= a <= 1.0
    assert _norm2(a, g1, g2) <= grid_f + 1e-12 * (1 + grid_f)
    assert _norm2(a, g1, g2) <= res.fun + 1e-12 * (1 + res.fun)
    assert a == pytest.approx(grid_a, abs=2e-5) or abs(_norm2(a, g1, g2) - grid_f) < 1e-12


def test_mgda_alpha_clamps_and_degenerate_cases() -> None:
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    assert mgda_alpha(g, g).item() == 0.5  # every alpha is optimal
    assert mgda_alpha(g * 0.1, g).item() == 1.0  # the smaller gradient is the min-norm point
    assert mgda_alpha(g, g * 0.1).item() == 0.0
    # orthogonal equal-norm gradients: the midpoint
    assert mgda_alpha(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(0.5)
    # opposite gradients of norms 1 and 3: v = 0 at alpha = 3/4
    assert mgda_alpha(torch.tensor([1.0, 0.0]), torch.tensor([-3.0, 0.0])).item() == pytest.approx(0.75)
    out = mgda_alpha(torch.tensor([1.0, 0.0], dtype=torch.float32), torch.tensor([0.0, 2.0]))
    assert out.dtype == torch.float32 and out.dim() == 0


@pytest.mark.parametrize("normalization", ["l2", "loss", "loss+"])
def test_mgda_normalizations_as_sener_koltun(normalization: str) -> None:
    rng = np.random.default_rng(4)
    g1, g2 = rng.normal(size=9) * 3.0, rng.normal(size=9) * 0.2
    l1, l2 = 2.5, 0.04
    n1 = {"l2": np.linalg.norm(g1), "loss": l1, "loss+": l1 * np.linalg.norm(g1)}[normalization]
    n2 = {"l2": np.linalg.norm(g2), "loss": l2, "loss+": l2 * np.linalg.norm(g2)}[normalization]
    a = mgda_alpha(
        torch.tensor(g1), torch.tensor(g2), normalization, torch.tensor(l1), torch.tensor(l2)
    ).item()  # type: ignore[arg-type]
    grid_a, _ = _brute_alpha(g1 / n1, g2 / n2)
    assert a == pytest.approx(grid_a, abs=2e-5)
    # normalisation changes the answer here (else the test could not tell them apart)
    assert abs(a - mgda_alpha(torch.tensor(g1), torch.tensor(g2)).item()) > 0.05
    with pytest.raises(ValueError):
        mgda_alpha(torch.tensor(g1), torch.tensor(g2), "loss")


def _tiny_model() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    x = torch.randn(8, 4)
    return net, x


def test_flat_grad_matches_backward() -> None:
    net, x = _tiny_model()
    unused = torch.nn.Parameter(torch.ones(5))
    params = [*net.parameters(), unused]
    loss = net(x).pow(2).sum()
    g = flat_grad(loss, params)
    loss.backward()
    ref = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in params])
    torch.testing.assert_close(g, ref)
    assert (g[-5:] == 0).all()


def test_mgda_step_combines_gradients() -> None:
    net, x = _tiny_model()
    params = list(net.parameters())
    out = net(x)
    l_ce = out[:, 0].pow(2).mean()
    l_em = (out[:, 1] - 1).pow(2).mean()
    g1 = flat_grad(l_ce, params).double().numpy()
    g2 = flat_grad(l_em, params).double().numpy()
    # the trainers' step (MGDAAlpha, its former wrapper, is gone): alpha=None = MGDA on params
    total, alpha = mix(l_ce, l_em, None, params, "none")
    total.backward()
    a = float(alpha)
    assert a == pytest.approx(_brute_alpha(g1, g2)[0], abs=2e-5)
    got = torch.cat([p.grad.reshape(-1) for p in params]).double().numpy()
    np.testing.assert_allclose(got, a * g1 + (1 - a) * g2, rtol=1e-5, atol=1e-7)


def _check_kkt(grads: np.ndarray, w: np.ndarray, tol: float = 1e-9) -> None:
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-12
    v = w @ grads
    vv = v @ v
    gv = grads @ v
    scale = max(np.max(np.sum(grads**2, axis=1)), 1e-300)
    active = w > 1e-10
    assert np.all(np.abs(gv[active] - vv) <= tol * scale), (gv, vv, w)
    assert np.all(gv[~active] >= vv - tol * scale), (gv, vv, w)


def _slsqp(grads: np.ndarray) -> float:
    gram = grads @ grads.T
    k = gram.shape[0]
    res = minimize(
        lambda x: x @ gram @ x,
        np.full(k, 1.0 / k),
        jac=lambda x: 2 * gram @ x,
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return float(res.fun)


@pytest.mark.parametrize("seed", range(40))
def test_min_norm_weights_kkt_and_slsqp(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 8))
    p = int(rng.integers(2, 12))  # includes K > P (affinely dependent gradients)
    grads = rng.normal(size=(k, p)) + rng.normal(size=(1, p)) * rng.uniform(0, 3)
    w = min_norm_weights(torch.tensor(grads)).numpy()
    _check_kkt(grads, w)
    v = w @ grads
    assert v @ v <= _slsqp(grads) + 1e-12 * (1 + np.max(np.sum(grads**2, axis=1)))
    # deterministic
    np.testing.assert_array_equal(w, min_norm_weights(torch.tensor(grads)).numpy())


def test_min_norm_weights_special_cases() -> None:
    # K = 2 agrees with the closed form
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2, 6))
    w = min_norm_weights(torch.tensor(g))
    assert w[0].item() == pytest.approx(mgda_alpha(torch.tensor(g[0]), torch.tensor(g[1])).item(), abs=1e-12)
    # origin inside the hull: v = 0
    tri = np.array([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])
    w = min_norm_weights(torch.tensor(tri)).numpy()
    np.testing.assert_allclose(w @ tri, 0.0, atol=1e-12)
    np.testing.assert_allclose(w, [0.5, 0.25, 0.25], atol=1e-12)
    # duplicated and zero gradients
    dup = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, -1.0]])
    _check_kkt(dup, min_norm_weights(torch.tensor(dup)).numpy())
    zero = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    np.testing.assert_allclose(min_norm_weights(torch.tensor(zero)).numpy(), [0.0, 1.0, 0.0])
    # one objective, dtype kept
    one = min_norm_weights(torch.ones(1, 3, dtype=torch.float32))
    assert one.tolist() == [1.0] and one.dtype == torch.float32
    with pytest.raises(ValueError):
        min_norm_weights(torch.ones(3))
