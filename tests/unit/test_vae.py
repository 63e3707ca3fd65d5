"""Acceptance tests of models.vae: every check is against an independent route (numerical
integration, Monte Carlo, torch.distributions, brute force, numpy), never the code's own output."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from models.synthetic import hsi_to_dataset, synthetic_hsi
from models.vae import (
    MultimodalVAE,
    SpectralLibrary,
    VAEData,
    VAETrainConfig,
    load_vae,
    load_vae_data,
    read_library_csv,
    resample_library,
    train_vae,
    write_library_csv,
)
from models.vae.gaussians import (
    StreamingMeans,
    kl_diag_gaussians,
    latent_elbo_terms,
    latent_expected_log_lik,
    marginal_cluster_posterior,
    mixture_moments,
    product_of_experts,
)
from models.vae.metrics import cluster_accuracy
from models.vae.train import reseed_dead_clusters
from pipeline.errors import InputError, MissingInputError, SchemaError

torch.set_num_threads(1)


# ------------------------------------------------------------------ product of experts


def _grid_moments(log_density: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    w = np.exp(log_density - log_density.max())
    w /= w.sum()
    mean = float((w * grid).sum())
    return mean, float((w * (grid - mean) ** 2).sum())


def _log_normal(z: np.ndarray, m: float, v: float) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * v) + (z - m) ** 2 / v)


def test_product_of_experts_matches_numerical_integration_1d() -> None:
    mus, vars_ = [1.3, -0.4, 2.0], [0.5, 2.0, 0.3]
    grid = np.linspace(-12, 12, 200_001)
    logd = _log_normal(grid, 0.0, 1.0) + sum(_log_normal(grid, m, v) for m, v in zip(mus, vars_, strict=True))
    mean_num, var_num = _grid_moments(logd, grid)
    mu = torch.tensor(mus, dtype=torch.float64).view(3, 1, 1)
    lv = torch.log(torch.tensor(vars_, dtype=torch.float64)).view(3, 1, 1)
    m, logv = product_of_experts(mu, lv, torch.ones(3, 1, dtype=torch.bool))
    assert float(m) == pytest.approx(mean_num, abs=1e-8)
    assert float(torch.exp(logv)) == pytest.approx(var_num, rel=1e-6)


def test_product_of_experts_matches_2d_grid_and_ignores_absent_nan() -> None:
    # two present experts in 2-D (diagonal), one absent expert full of NaN
    mu = torch.tensor([[[0.5, -1.0]], [[2.0, 1.0]], [[math.nan, math.nan]]], dtype=torch.float64)
    lv = torch.log(torch.tensor([[[0.4, 1.5]], [[1.0, 0.2]], [[1.0, 1.0]]], dtype=torch.float64))
    lv[2] = math.nan
    mask = torch.tensor([[True], [True], [False]])
    m, logv = product_of_experts(mu, lv, mask)
    g = np.linspace(-8, 8, 1601)
    zx, zy = np.meshgrid(g, g, indexing="ij")
    logd = _log_normal(zx, 0, 1) + _log_normal(zy, 0, 1)
    for e in range(2):
        logd = logd + _log_normal(zx, float(mu[e, 0, 0]), float(lv[e, 0, 0].exp()))
        logd = logd + _log_normal(zy, float(mu[e, 0, 1]), float(lv[e, 0, 1].exp()))
    w = np.exp(logd - logd.max())
    w /= w.sum()
    mx, my = (w * zx).sum(), (w * zy).sum()
    vx, vy = (w * (zx - mx) ** 2).sum(), (w * (zy - my) ** 2).sum()
    assert torch.isfinite(m).all() and torch.isfinite(logv).all()
    np.testing.assert_allclose(m[0].numpy(), [mx, my], atol=1e-6)
    np.testing.assert_allclose(torch.exp(logv[0]).numpy(), [vx, vy], rtol=1e-4)


# ------------------------------------------------------------------ KL and ELBO


def test_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(1)
    mq, mp = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    lq, lp = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ref = kl_divergence(
        Independent(Normal(mq, torch.exp(0.5 * lq)), 1), Independent(Normal(mp, torch.exp(0.5 * lp)), 1)
    )
    torch.testing.assert_close(kl_diag_gaussians(mq, lq, mp, lp), ref, rtol=1e-5, atol=1e-5)


def test_latent_elbo_matches_monte_carlo() -> None:
    """Closed form vs a Monte-Carlo estimate of the same bound: Z ~ q(Z), c ~ gamma, 400k draws.

    Tolerance: 5 Monte-Carlo standard errors (the closed form is exact)."""
    g = torch.Generator().manual_seed(3)
    L, C, n = 3, 4, 400_000
    mu, lv = (
        torch.randn(1, L, generator=g, dtype=torch.float64),
        0.5 * torch.randn(1, L, generator=g, dtype=torch.float64),
    )
    gamma = torch.softmax(torch.randn(1, C, generator=g, dtype=torch.float64), -1)
    log_pi = torch.log_softmax(torch.randn(C, generator=g, dtype=torch.float64), 0)
    mu_c = 2 * torch.randn(C, L, generator=g, dtype=torch.float64)
    lv_c = 0.3 * torch.randn(C, L, generator=g, dtype=torch.float64)
    closed = float(latent_elbo_terms(mu, lv, gamma, log_pi, mu_c, lv_c)[0])
    torch.manual_seed(0)
    z = Normal(mu[0], torch.exp(0.5 * lv[0])).sample((n,))
    c = Categorical(probs=gamma[0]).sample((n,))
    sample = (
        Normal(mu_c[c], torch.exp(0.5 * lv_c[c])).log_prob(z).sum(-1)
        + log_pi[c]
        - torch.log(gamma[0, c])
        - Normal(mu[0], torch.exp(0.5 * lv[0])).log_prob(z).sum(-1)
    )
    se = float(sample.std()) / math.sqrt(n)
    assert abs(float(sample.mean()) - closed) < 5 * se, (float(sample.mean()), closed, se)


def _physics_model(in_dims: list[int], libs: list[np.ndarray], n_clusters: int = 3) -> MultimodalVAE:
    return MultimodalVAE(
        in_dims,
        latent_dim=2,
        n_clusters=n_clusters,
        hidden=8,
        decoders=["physics"] * len(in_dims),
        libraries=libs,
    ).double()


def test_physics_reconstruction_term_matches_monte_carlo() -> None:
    """E_{c~gamma}[log N(x; E_c, var)] in closed form vs sampling c (torch.distributions)."""
    g = torch.Generator().manual_seed(5)
    lib = np.abs(np.random.default_rng(0).normal(size=(2, 6)))
    model = _physics_model([6], [lib])
    with torch.no_grad():
        model.physics.raw_abundance.copy_(torch.randn(3, 2, generator=g))  # type: ignore[union-attr]
        model.dec_logvar.fill_(math.log(0.3))
    x = torch.rand(1, 1, 6, generator=g, dtype=torch.float64)
    gamma = torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64)
    closed = float(
        model.recon_log_lik(x, torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 2), gamma)[0].detach()
    )
    means = (torch.nn.functional.softplus(model.physics.raw_abundance) @ torch.as_tensor(lib)).detach()  # type: ignore[union-attr]
    sd = torch.exp(0.5 * model.dec_var_logs(0)).detach()
    torch.manual_seed(1)
    c = Categorical(probs=gamma[0]).sample((200_000,))
    s = Normal(means[c], sd).log_prob(x[0, 0]).sum(-1)
    se = float(s.std()) / math.sqrt(s.numel())
    assert abs(float(s.mean()) - closed) < 5 * se


def test_cluster_posterior_and_mixture_moments_match_sampling() -> None:
    g = torch.Generator().manual_seed(7)
    mu, lv = torch.randn(1, 2, generator=g, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64) - 0.5
    log_pi = torch.log(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64))
    mu_c, lv_c = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)
    p = marginal_cluster_posterior(mu, lv, log_pi, mu_c, lv_c)[0]
    torch.manual_seed(2)
    z = Normal(mu[0], torch.exp(0.5 * lv[0])).sample((400_000,))
    lik = torch.stack([Normal(mu_c[k], 1.0).log_prob(z).sum(-1).exp().mean() for k in range(3)])
    ref = log_pi.exp() * lik
    torch.testing.assert_close(p, ref / ref.sum(), atol=3e-3, rtol=0)
    # mixture mean/variance vs numpy sampling of the mixture
    w = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    m = torch.tensor([[[0.0, 1.0], [2.0, -1.0]]], dtype=torch.float64)
    v = torch.tensor([[[1.0, 0.5], [0.2, 2.0]]], dtype=torch.float64)
    mean, var = mixture_moments(w, m, v)
    rng = np.random.default_rng(0)
    k = rng.choice(2, size=1_000_000, p=[0.3, 0.7])
    draws = rng.normal(m[0].numpy()[k], np.sqrt(v[0].numpy()[k]))
    np.testing.assert_allclose(mean[0].numpy(), draws.mean(0), atol=5e-3)
    np.testing.assert_allclose(var[0].numpy(), draws.var(0), rtol=5e-3)


# ------------------------------------------------------------------ EM


def test_streaming_em_mean_matches_numpy_weighted_mean_and_zeroes_the_gradient() -> None:
    rng = np.random.default_rng(0)
    C, L = 3, 2
    mus = [rng.normal(size=(n, L)) for n in (5, 7, 4)]
    gammas = [rng.dirichlet(np.ones(C), size=len(m)) for m in mus]
    em = StreamingMeans(C, L)
    for m, g in zip(mus, gammas, strict=True):
        em.update(torch.as_tensor(g), torch.as_tensor(m))
    est = em.means(torch.zeros(C, L, dtype=torch.float64))
    allm, allg = np.concatenate(mus), np.concatenate(gammas)
    ref = np.stack([(allg[:, c : c + 1] * allm).sum(0) / allg[:, c].sum() for c in range(C)])
    np.testing.assert_allclose(est.numpy(), ref, rtol=1e-12)
    # the EM mean is the stationary point of the ELBO in mu_c for fixed gamma (autograd route)
    mu_c = est.clone().requires_grad_()
    lv = torch.as_tensor(rng.normal(size=allm.shape) * 0.3)
    lv_c = torch.as_tensor(rng.normal(size=(C, L)) * 0.3)
    elbo = latent_elbo_terms(
        torch.as_tensor(allm), lv, torch.as_tensor(allg), torch.zeros(C).double(), mu_c, lv_c
    )
    (grad,) = torch.autograd.grad(elbo.sum(), mu_c)
    assert float(grad.abs().max()) < 1e-10


# ------------------------------------------------------------------ Hungarian accuracy


def _brute_force_accuracy(clusters: np.ndarray, labels: np.ndarray) -> float:
    k = max(clusters.max(), labels.max()) + 1
    return max(float(np.mean(np.array(p)[clusters] == labels)) for p in itertools.permutations(range(k)))


def test_cluster_accuracy_hand_cases_scipy_and_brute_force() -> None:
    assert cluster_accuracy(np.array([0, 0, 1, 1, 2, 2]), np.array([1, 1, 0, 0, 2, 2])) == 1.0
    # clusters 0→label 1 (2 of 3), 1→label 0 (2 of 2), 2→label 2 (1 of 1): 5/6
    assert cluster_accuracy(np.array([0, 0, 0, 1, 1, 2]), np.array([1, 1, 0, 0, 0, 2])) == pytest.approx(
        5 / 6
    )
    # more clusters than labels: one cluster must stay unmatched
    assert cluster_accuracy(np.array([0, 1, 2, 2]), np.array([0, 0, 1, 1])) == pytest.approx(3 / 4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(2, 6))
        c, y = rng.integers(0, k, 30), rng.integers(0, k, 30)
        table = np.zeros((k, k))
        np.add.at(table, (c, y), 1)
        r, col = linear_sum_assignment(table, maximize=True)
        assert cluster_accuracy(c, y) == pytest.approx(table[r, col].sum() / 30)
        assert cluster_accuracy(c, y) == pytest.approx(_brute_force_accuracy(c, y))


# ------------------------------------------------------------------ masking


def test_absent_modalities_change_nothing_nan_does_not_leak() -> None:
    lib = np.abs(np.random.default_rng(1).normal(size=(2, 5)))
    model = MultimodalVAE(
        [4, 5], latent_dim=2, n_clusters=3, hidden=8, decoders=["mlp", "physics"], libraries=[None, lib]
    )
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 6, 5, generator=g)
    mask = torch.tensor([[True, True, False, True, False, True], [True, False, True, True, True, False]])
    outs = []
    for fill in (math.nan, 0.0, 123.0):
        xf = x.clone()
        xf[~mask] = fill
        model.zero_grad()
        out = model.elbo(xf, mask, torch.Generator().manual_seed(4))
        loss = -out["elbo"].mean()
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        assert torch.isfinite(loss) and all(torch.isfinite(gr).all() for gr in grads)
        outs.append((loss.detach(), grads, out["mu"].detach()))
        kl = model.cross_kl(xf, mask)
        assert torch.isfinite(kl).all() and bool((kl[~mask] == 0).all())
    for loss, grads, mu in outs[1:]:
        assert torch.equal(loss, outs[0][0]) and torch.equal(mu, outs[0][2])
        assert all(torch.equal(a, b) for a, b in zip(grads, outs[0][1], strict=True))


# ------------------------------------------------------------------ physics expert / library


def test_physics_abundances_nonnegative_and_library_resampling_matches_np_interp(tmp_path: Path) -> None:
    wl = np.array([400.0, 500.0, 700.0, 1000.0, 2000.0])
    spectra = np.array([[0.1, 0.2, 0.4, 0.3, 0.1], [0.5, 0.5, 0.6, 0.2, 0.05]])
    csv = write_library_csv(tmp_path / "lib.csv", SpectralLibrary(wl, spectra, ["a", "b"]))
    lib = read_library_csv(csv)
    target = np.array([450.0, 650.0, 1500.0, 2100.0])
    expect = np.stack([np.interp(target, wl, s) for s in spectra])
    np.testing.assert_allclose(lib.resample(target), expect, rtol=1e-7)
    # hand check of linear interpolation (independent of np.interp)
    np.testing.assert_allclose(resample_library(wl, spectra, np.array([450.0]))[:, 0], [0.15, 0.5])
    model = _physics_model([4], [lib.resample(target)])
    with torch.no_grad():
        model.physics.raw_abundance.fill_(-50.0)  # type: ignore[union-attr]
        model.physics.raw_abundance[0, 0] = -3.0  # type: ignore[union-attr]
    a = model.physics.abundances()  # type: ignore[union-attr]
    assert bool((a >= 0).all())
    means = model.cluster_spectra(0)
    np.testing.assert_allclose(means.numpy(), a.detach().numpy() @ expect, rtol=1e-6)


def test_library_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError):
        read_library_csv(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("nm,a\n400,0.1\n500,0.2\n")
    with pytest.raises(SchemaError):
        read_library_csv(bad)
    with pytest.raises(InputError, match="library"):
        train_vae(VAETrainConfig(decoder="physics", epochs=0), data=_tiny_data())


# ------------------------------------------------------------------ training runs


def _tiny_data(seed: int = 0) -> VAEData:
    h = synthetic_hsi(n=160, in_dims=(6, 5), n_classes=3, seed=seed, separation=2.0)
    wls = [np.linspace(400, 900, 6), np.linspace(1000, 2400, 5)]
    return VAEData(hsi=h, wavelengths=wls)


def _tiny_config(**kw: object) -> VAETrainConfig:
    base = {
        "latent_dim": 2,
        "hidden": 16,
        "warmup_epochs": 2,
        "epochs": 3,
        "cross_epochs": 2,
        "batch_size": 64,
    }
    base.update(kw)
    return VAETrainConfig(**base)  # type: ignore[arg-type]


def test_training_is_deterministic_on_cpu() -> None:
    a = train_vae(_tiny_config(seed=3), data=_tiny_data())
    b = train_vae(_tiny_config(seed=3), data=_tiny_data())
    c = train_vae(_tiny_config(seed=4), data=_tiny_data())
    la = [r["loss"] for r in a.history]
    assert la == [r["loss"] for r in b.history]
    assert la != [r["loss"] for r in c.history]
    assert all(math.isfinite(v) for v in la)


def test_run_folder_and_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    lib = SpectralLibrary(
        np.linspace(300, 2500, 12), np.abs(np.random.default_rng(0).normal(size=(3, 12))), ["p", "q", "r"]
    )
    csv = write_library_csv(tmp_path / "lib.csv", lib)
    out = tmp_path / "run"
    res = train_vae(
        _tiny_config(decoder="physics", library_csv=str(csv), out_dir=str(out)), data=_tiny_data()
    )
    for f in (
        "config.json",
        "metrics.json",
        "history.csv",
        "model.pt",
        "latent_scatter.png",
        "fingerprints.png",
        "reconstructions.png",
    ):
        assert (out / f).is_file(), f
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["kind"] == "vae" and "model" in ckpt
    model, _ = load_vae(out)
    data = _tiny_data()
    x, mask = data.hsi.x[:, :20], data.hsi.mask[:, :20]
    with torch.no_grad():
        torch.testing.assert_close(model.posterior(x, mask)[0], res.model.posterior(x, mask)[0])
    # the physics library buffers are the CSV resampled by np.interp to the modality bands
    for i, wl in enumerate(data.wavelengths):
        expect = np.stack([np.interp(wl, lib.wavelength_nm, s) for s in lib.spectra])
        np.testing.assert_allclose(model.physics.library(i).numpy(), expect, rtol=1e-6)  # type: ignore[union-attr]
    assert bool((torch.tensor(res.metrics["abundances"]) >= 0).all())
    m = res.metrics
    assert set(m["cross_modal_rmse"]) <= set(data.modalities) and "linear_probe" in m


def test_load_vae_data_reads_store_with_wavelengths(tmp_path: Path) -> None:
    h = synthetic_hsi(n=40, in_dims=(6, 5), n_classes=3, seed=1, modalities=["VNIR1", "SWIR1"])
    ds = hsi_to_dataset(h)
    wls = {"VNIR1": np.linspace(400, 900, 6), "SWIR1": np.linspace(1000, 2400, 5)}
    ds = ds.assign_coords({f"wavelength_{k}": (f"band_{k}", v) for k, v in wls.items()})
    path = tmp_path / "data.zarr"
    ds.to_zarr(path)
    data = load_vae_data(path)
    assert data.modalities == ["VNIR1", "SWIR1"]
    np.testing.assert_array_equal(data.wavelengths[1], wls["SWIR1"])
    np.testing.assert_array_equal(data.hsi.mask.numpy(), h.mask.numpy())
    with pytest.raises(MissingInputError):
        load_vae_data(tmp_path / "missing.zarr")


def test_expected_cluster_log_likelihood_matches_monte_carlo() -> None:
    g = torch.Generator().manual_seed(11)
    mu, lv = (
        torch.randn(1, 3, generator=g, dtype=torch.float64),
        0.3 * torch.randn(1, 3, generator=g, dtype=torch.float64),
    )
    mu_c, lv_c = (
        torch.randn(2, 3, generator=g, dtype=torch.float64),
        0.3 * torch.randn(2, 3, generator=g, dtype=torch.float64),
    )
    closed = latent_expected_log_lik(mu, lv, mu_c, lv_c)[0]
    torch.manual_seed(3)
    z = Normal(mu[0], torch.exp(0.5 * lv[0])).sample((300_000,))
    for c in range(2):
        s = Normal(mu_c[c], torch.exp(0.5 * lv_c[c])).log_prob(z).sum(-1)
        assert abs(float(s.mean()) - float(closed[c])) < 5 * float(s.std()) / math.sqrt(s.numel())


def test_reseed_dead_cluster_splits_the_heaviest() -> None:
    model = MultimodalVAE([3], latent_dim=2, n_clusters=3, hidden=4)
    with torch.no_grad():
        model.mu_c.copy_(torch.tensor([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]]))
        model.logvar_c.copy_(torch.log(torch.tensor([[1.0, 4.0], [1.0, 1.0], [1.0, 1.0]])))
    moved = reseed_dead_clusters(model, torch.tensor([100.0, 0.0, 50.0]), 0.2)
    assert moved == [1]
    torch.testing.assert_close(model.mu_c[0], torch.tensor([0.0, -1.0]))  # -1/2 sigma along the wide axis
    torch.testing.assert_close(model.mu_c[1], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(model.pi_logits[0], model.pi_logits[1])


def test_physics_expert_recovers_true_abundances() -> None:
    """Data drawn from x = a_c S + noise (known a_c >= 0): the fitted abundances match a_c
    after the Hungarian cluster → class map (independent ground truth)."""
    rng = np.random.default_rng(0)
    wl = np.linspace(400, 2400, 30)
    lib = np.stack([np.exp(-(((wl - m) / 300) ** 2)) for m in (600, 1300, 2000)])
    truth = np.array([[0.8, 0.1, 0.0], [0.0, 0.6, 0.3], [0.2, 0.0, 0.9]])
    y = rng.integers(0, 3, 240)
    x = truth[y] @ lib + rng.normal(0, 0.01, (240, 30))
    data = VAEData.from_arrays([x[:, :15], x[:, 15:]], y, wavelengths=[wl[:15], wl[15:]])
    res = train_vae(
        _tiny_config(decoder="physics", epochs=5),
        data=data,
        library=SpectralLibrary(wl, lib, ["a", "b", "c"]),
    )
    ab = np.asarray(res.metrics["abundances"])
    assert (ab >= 0).all()
    cmap = {int(k): res.metrics["class_names"].index(v) for k, v in res.metrics["cluster_to_label"].items()}
    for c, lab in cmap.items():
        np.testing.assert_allclose(ab[c], truth[lab], atol=0.03)
    assert res.metrics["clustering_accuracy"]["fused_elbo_optimal"] == 1.0


def test_physics_brightness_scale_matches_weighted_least_squares() -> None:
    rng = np.random.default_rng(2)
    lib = np.abs(rng.normal(size=(2, 7)))
    model = MultimodalVAE(
        [7], latent_dim=2, n_clusters=3, hidden=4, decoders=["physics"], libraries=[lib], physics_scale=True
    ).double()
    with torch.no_grad():
        model.dec_logvar[0] = torch.as_tensor(rng.normal(size=7) * 0.5 - 3)
    x = torch.as_tensor(np.abs(rng.normal(size=(4, 7))))
    with torch.no_grad():
        ll, scale = model.physics_log_lik(0, x)
    e = model.physics.means(0).detach().numpy()  # type: ignore[union-attr]
    w = np.exp(-model.dec_var_logs(0).detach().numpy())
    for b in range(4):
        for c in range(3):
            s_ref = np.linalg.lstsq((e[c] * np.sqrt(w))[:, None], x[b].numpy() * np.sqrt(w), rcond=None)[0][0]
            assert float(scale[b, c]) == pytest.approx(max(s_ref, 0.0), rel=1e-9)
            ref = (
                Normal(torch.as_tensor(max(s_ref, 0.0) * e[c]), torch.as_tensor(1 / np.sqrt(w)))
                .log_prob(x[b])
                .sum()
            )
            assert float(ll[b, c]) == pytest.approx(float(ref), rel=1e-9)


def test_conv_encoder_and_em_every_run() -> None:
    res = train_vae(
        _tiny_config(encoder="conv", em_every=2, warmup_epochs=1, epochs=2, cross_epochs=1), data=_tiny_data()
    )
    assert res.model.architecture()["encoder"] == "conv"
    assert all(math.isfinite(r["loss"]) for r in res.history)
    assert 0.0 <= res.metrics["clustering_accuracy"]["fused"] <= 1.0
