"""Metrics against hand-written loops (no sklearn) and pyproj."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
import torch

from models.metrics import (
    baz_error_deg,
    classification_metrics,
    confusion_matrix,
    fused_probs,
    location_error_km,
    macro_accuracy,
    predictive_variance,
    seismic_metrics,
)

GEOD = pyproj.Geod(a=6378100.0, f=0.0)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _loop_macro(pred: np.ndarray, y: np.ndarray) -> float:
    recalls = []
    for c in sorted(set(y.tolist())):
        idx = [i for i in range(len(y)) if y[i] == c]
        recalls.append(sum(pred[i] == c for i in idx) / len(idx))
    return float(np.mean(recalls))


def _case(seed: int, m: int = 4, b: int = 300, c: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c - 1, (b,), generator=g)  # class c-1 never occurs in labels
    logits = torch.randn(m, b, c, generator=g) * 2
    logits[torch.arange(m)[:, None], torch.arange(b)[None, :], y[None, :]] += 1.5  # better than chance
    mask = torch.rand(m, b, generator=g) < 0.6
    mask[:, :5] = False  # no modality at all
    mask[:, 5:10] = False
    mask[1, 5:10] = True  # one modality
    logits = torch.where(mask[..., None], logits, torch.nan)  # absent slots hold NaN
    return logits, y, mask


def test_confusion_matrix_and_macro_accuracy_vs_loops() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 5, 200))
    cm = confusion_matrix(torch.tensor(p), torch.tensor(y), 5)
    ref = np.zeros((5, 5), dtype=int)
    for yi, pi in zip(y, p, strict=True):
        ref[yi, pi] += 1
    np.testing.assert_array_equal(cm, ref)
    assert macro_accuracy(torch.tensor(p), torch.tensor(y)) == pytest.approx(_loop_macro(p, y), abs=1e-12)
    # by hand: class 0 recall 1/2, class 2 recall 1 (class 1 only predicted, never true -> ignored)
    assert macro_accuracy(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 2]), n_classes=3) == pytest.approx(
        0.75
    )
    assert math.isnan(macro_accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)))


def test_fused_probs_vs_loop() -> None:
    logits, _, mask = _case(1)
    fused = fused_probs(logits, mask).numpy()
    lg, mk = logits.numpy(), mask.numpy()
    for j in range(lg.shape[1]):
        present = [i for i in range(lg.shape[0]) if mk[i, j]]
        if not present:
            assert np.isnan(fused[j]).all()
        else:
            np.testing.assert_allclose(
                fused[j], np.mean([_softmax(lg[i, j]) for i in present], axis=0), atol=1e-6
            )


def test_classification_metrics_vs_loops() -> None:
    logits, y, mask = _case(2)
    res = classification_metrics(logits, y, mask, names=["a", "b", "c", "d"])
    lg, mk, yy = logits.numpy().astype(np.float64), mask.numpy(), y.numpy()
    fused_pred, fused_y = [], []
    for j in range(lg.shape[1]):
        present = [i for i in range(lg.shape[0]) if mk[i, j]]
        if present:
            fused_pred.append(int(np.argmax(np.mean([_softmax(lg[i, j]) for i in present], axis=0))))
            fused_y.append(yy[j])
    ref = _loop_macro(np.array(fused_pred), np.array(fused_y))
    assert res["fused"]["macro_accuracy"] == pytest.approx(ref, abs=1e-12)
    assert res["fused"]["macro_error"] == pytest.approx(1 - ref, abs=1e-12)
    assert res["fused"]["n"] == len(fused_y)
    assert res["fused"]["accuracy"] == pytest.approx(np.mean(np.array(fused_pred) == np.array(fused_y)))
    for i, name in enumerate(["a", "b", "c", "d"]):
        idx = [j for j in range(lg.shape[1]) if mk[i, j]]
        pred = np.array([int(np.argmax(lg[i, j])) for j in idx])
        assert res[name]["macro_accuracy"] == pytest.approx(_loop_macro(pred, yy[idx]), abs=1e-12)
        assert res[name]["n"] == len(idx)
    assert all(isinstance(v, float) for d in res.values() for v in d.values())
    # fusion helps here (independent modalities), so the test distinguishes fused from per-modality
    assert res["fused"]["macro_accuracy"] > max(res[n]["macro_accuracy"] for n in "abcd")


def test_predictive_variance_vs_loop() -> None:
    logits, _, mask = _case(3)
    got = predictive_variance(logits, mask)
    lg, mk = logits.numpy().astype(np.float64), mask.numpy()
    assert got.shape == (lg.shape[1],)
    for j in range(lg.shape[1]):
        present = [i for i in range(lg.shape[0]) if mk[i, j]]
        if len(present) < 2:
            assert np.isnan(got[j])
        else:
            probs = np.array([_softmax(lg[i, j]) for i in present])
            assert got[j] == pytest.approx(np.var(probs, axis=0, ddof=0).mean(), rel=1e-6)
    # identical modalities -> zero variance
    same = torch.randn(1, 4, 3).expand(3, 4, 3)
    np.testing.assert_allclose(predictive_variance(same, torch.ones(3, 4, dtype=torch.bool)), 0.0, atol=1e-15)


def test_baz_error_circular() -> None:
    pred = torch.tensor([350.0, 0.0, 90.0, -10.0, 720.0, 181.0])
    true = torch.tensor([10.0, 180.0, 90.0, 10.0, 359.0, 0.0])
    np.testing.assert_allclose(baz_error_deg(pred, true), [20.0, 180.0, 0.0, 20.0, 1.0, 179.0], atol=1e-9)
    rng = np.random.default_rng(4)
    a, b = rng.uniform(-720, 720, 1000), rng.uniform(0, 360, 1000)
    got = baz_error_deg(torch.tensor(a), torch.tensor(b))
    ref = [min(abs(x - y) % 360, 360 - abs(x - y) % 360) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert got.min() >= 0 and got.max() <= 180


def test_location_error_vs_pyproj() -> None:
    rng = np.random.default_rng(5)
    la1, lo1, la2, lo2 = (
        rng.uniform(-80, 80, 300),
        rng.uniform(-180, 180, 300),
        rng.uniform(-80, 80, 300),
        rng.uniform(-180, 180, 300),
    )
    _, _, ref = GEOD.inv(lo1, la1, lo2, la2)
    got = location_error_km(*(torch.tensor(v) for v in (la1, lo1, la2, lo2)))
    np.testing.assert_allclose(got * 1000.0, ref, rtol=1e-9)


def test_seismic_metrics_vs_loops() -> None:
    rng = np.random.default_rng(6)
    n_ev, per = 40, 6
    ev_lat = np.repeat(rng.uniform(35, 46, n_ev), per)
    ev_lon = np.repeat(rng.uniform(-117, -107, n_ev), per)
    ids = np.repeat(np.arange(n_ev) * 7 + 100, per)
    n = n_ev * per
    true_dist = rng.uniform(1, 300, n)
    true_baz = rng.uniform(0, 360, n)
    # stations: walk from each event by the reverse azimuth so that (dist, baz) are the true labels
    st_lon, st_lat, back = GEOD.fwd(ev_lon, ev_lat, (true_baz + 180) % 360, true_dist * 1000)
    # GEOD.fwd's back azimuth is the azimuth at the station toward the event: the true BAZ label
    true_baz = back % 360
    pred_dist = true_dist * rng.uniform(0.8, 1.2, n)
    pred_baz = (true_baz + rng.normal(0, 15, n)) % 360
    sensor = np.where(rng.random(n) < 0.4, "triaxial", "vertical")
    truth = {
        "true_dist_km": torch.tensor(true_dist),
        "true_baz_deg": torch.tensor(true_baz),
        "station_lat": torch.tensor(st_lat),
        "station_lon": torch.tensor(st_lon),
        "event_lat": torch.tensor(ev_lat),
        "event_lon": torch.tensor(ev_lon),
    }
    res = seismic_metrics(
        pred_dist_km=torch.tensor(pred_dist),
        pred_baz_deg=torch.tensor(pred_baz),
        **truth,
        sensor_type=sensor,
        distance_bins_km=(0, 50, 150, math.inf),
        event_ids=torch.tensor(ids),
    )
    hat_lon, hat_lat, _ = GEOD.fwd(st_lon, st_lat, pred_baz, pred_dist * 1000)
    _, _, loc_m = GEOD.inv(hat_lon, hat_lat, ev_lon, ev_lat)
    loc = loc_m / 1000
    d_err = np.abs(pred_dist - true_dist)
    b_err = np.array([min((p - t) % 360, (t - p) % 360) for p, t in zip(pred_baz, true_baz, strict=True)])

    def stats(sel: np.ndarray) -> dict[str, float]:
        return {
            "n": float(sel.sum()),
            "distance_error_km_median": float(np.median(d_err[sel])),
            "distance_error_km_mean": float(np.mean(d_err[sel])),
            "baz_error_deg_median": float(np.median(b_err[sel])),
            "baz_error_deg_mean": float(np.mean(b_err[sel])),
            "location_error_km_median": float(np.median(loc[sel])),
            "location_error_km_mean": float(np.mean(loc[sel])),
            "location_error_per_km_median": float(np.median(loc[sel] / np.maximum(true_dist[sel], 1.0))),
            "location_error_per_km_mean": float(np.mean(loc[sel] / np.maximum(true_dist[sel], 1.0))),
        }

    def close(a: dict[str, float], b: dict[str, float]) -> None:
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-7, abs=1e-9), k

    close(res["overall"], stats(np.ones(n, dtype=bool)))
    assert set(res["by_sensor"]) == {"triaxial", "vertical"}
    for s in ("triaxial", "vertical"):
        close(res["by_sensor"][s], stats(sensor == s))
    assert list(res["by_distance_bin"]) == ["0-50", "50-150", "150-inf"]
    for (lo, hi), key in zip([(0, 50), (50, 150), (150, np.inf)], res["by_distance_bin"], strict=True):
        close(res["by_distance_bin"][key], stats((true_dist >= lo) & (true_dist < hi)))
    # event level: component-wise median of each event's predicted locations
    ev_err = []
    for e in np.unique(ids):
        sel = ids == e
        c_lat, c_lon = np.median(hat_lat[sel]), np.median(hat_lon[sel])
        ev_err.append(GEOD.inv(c_lon, c_lat, ev_lon[sel][0], ev_lat[sel][0])[2] / 1000)
    assert res["event_level"]["n"] == n_ev
    assert res["event_level"]["location_error_km_median"] == pytest.approx(np.median(ev_err), rel=1e-7)
    assert res["event_level"]["location_error_km_mean"] == pytest.approx(np.mean(ev_err), rel=1e-7)
    # sanity: perfect predictions give zero errors
    perfect = seismic_metrics(
        pred_dist_km=torch.tensor(true_dist), pred_baz_deg=torch.tensor(true_baz), **truth
    )
    assert perfect["overall"]["location_error_km_mean"] < 1e-6
    assert "by_sensor" not in perfect and "event_level" not in perfect


def test_distance_bins_are_half_open_on_true_distance() -> None:
    true_dist = torch.tensor([0.0, 49.999, 50.0, 150.0, 400.0], dtype=torch.float64)
    z = torch.zeros(5, dtype=torch.float64)
    res = seismic_metrics(
        pred_dist_km=true_dist + torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64),
        pred_baz_deg=z,
        true_dist_km=true_dist,
        true_baz_deg=z,
        station_lat=z + 40.0,
        station_lon=z - 111.0,
        event_lat=z + 40.0,
        event_lon=z - 111.0,
        distance_bins_km=(0, 50, 150, math.inf),
    )
    bins = res["by_distance_bin"]
    assert [bins[k]["n"] for k in ("0-50", "50-150", "150-inf")] == [2.0, 1.0, 2.0]
    assert bins["50-150"]["distance_error_km_mean"] == pytest.approx(3.0)
    assert bins["150-inf"]["distance_error_km_median"] == pytest.approx(4.5)
    with pytest.raises(ValueError):
        seismic_metrics(
            pred_dist_km=z,
            pred_baz_deg=z,
            true_dist_km=z,
            true_baz_deg=z,
            station_lat=z,
            station_lon=z,
            event_lat=z,
            event_lon=z,
            distance_bins_km=(0, 50, 50),
        )
