"""New report metrics checked against brute-force / library routes: per-km location error,
the variance–error Spearman relation (scipy), variance distributions (numpy), label budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from models.data import stratified_label_split
from models.geo import REPORT_EARTH_RADIUS_KM, destination
from models.metrics import seismic_metrics, variance_distribution, variance_error_relation


def _hav(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * REPORT_EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))


def test_location_error_per_km_distance() -> None:
    rng = np.random.default_rng(0)
    n = 40
    s_lat, s_lon = 40 + rng.uniform(-1, 1, n), -112 + rng.uniform(-1, 1, n)
    t_dist, t_baz = rng.uniform(2, 150, n), rng.uniform(0, 360, n)
    e_lat, e_lon = (
        v.numpy()
        for v in destination(
            torch.tensor(s_lat), torch.tensor(s_lon), torch.tensor(t_baz), torch.tensor(t_dist)
        )
    )
    p_dist, p_baz = t_dist + rng.normal(0, 3, n), t_baz + rng.normal(0, 5, n)
    m = seismic_metrics(
        pred_dist_km=torch.tensor(p_dist), pred_baz_deg=torch.tensor(p_baz), true_dist_km=torch.tensor(t_dist),
        true_baz_deg=torch.tensor(t_baz), station_lat=torch.tensor(s_lat), station_lon=torch.tensor(s_lon),
        event_lat=torch.tensor(e_lat), event_lon=torch.tensor(e_lon),
    )  # fmt: skip
    h_lat, h_lon = (
        v.numpy()
        for v in destination(
            torch.tensor(s_lat), torch.tensor(s_lon), torch.tensor(p_baz), torch.tensor(p_dist)
        )
    )
    per_km = _hav(h_lat, h_lon, e_lat, e_lon) / t_dist
    assert m["overall"]["location_error_per_km_median"] == pytest.approx(float(np.median(per_km)), rel=1e-9)
    assert m["overall"]["location_error_per_km_mean"] == pytest.approx(float(np.mean(per_km)), rel=1e-9)


def test_variance_error_relation_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    n_ev, k = 12, 5
    ev = np.repeat(np.arange(n_ev), k)
    lat = 40 + rng.normal(0, 0.05, ev.size) * (1 + ev % 3)
    lon = -112 + rng.normal(0, 0.05, ev.size)
    err = rng.uniform(0, 20, ev.size)
    out = variance_error_relation(torch.tensor(lat), torch.tensor(lon), torch.tensor(err), torch.tensor(ev))
    dev2 = np.empty(ev.size)
    ev_var, ev_err = [], []
    for e in range(n_ev):
        sel = ev == e
        c_lat, c_lon = np.median(lat[sel]), np.median(lon[sel])
        dev2[sel] = _hav(lat[sel], lon[sel], c_lat, c_lon) ** 2
        ev_var.append(dev2[sel].mean())
        ev_err.append(np.median(err[sel]))
    assert out["trace_spearman"] == pytest.approx(spearmanr(dev2, err).statistic, abs=1e-9)
    assert out["event_spearman"] == pytest.approx(spearmanr(ev_var, ev_err).statistic, abs=1e-9)
    assert out["n_events"] == n_ev


def test_variance_distribution_quantiles_and_histogram() -> None:
    v = np.random.default_rng(2).lognormal(-6, 1, 500)
    v[:7] = np.nan
    d = variance_distribution(v, bins=10)
    finite = v[np.isfinite(v)]
    assert d["n"] == finite.size
    assert d["quantiles"]["q50"] == pytest.approx(np.median(finite))
    assert d["quantiles"]["q95"] == pytest.approx(np.quantile(finite, 0.95))
    assert sum(d["histogram"]["counts"]) == finite.size


def test_label_budget_by_count_nested_and_seeded() -> None:
    labels = np.random.default_rng(3).integers(0, 4, 200)
    k5, _ = stratified_label_split(labels, seed=7, per_class=5)
    k9, _ = stratified_label_split(labels, seed=7, per_class=9)
    assert np.bincount(labels[k5]).tolist() == [5, 5, 5, 5]
    assert set(k5) <= set(k9)  # the subset depends only on (seed, budget): smaller nested in larger
    assert not np.array_equal(k5, stratified_label_split(labels, seed=8, per_class=5)[0])
    # the fraction path is unchanged: same draw as the positional signature
    np.testing.assert_array_equal(
        stratified_label_split(labels, 0.2, 7)[0], stratified_label_split(labels, fraction=0.2, seed=7)[0]
    )
