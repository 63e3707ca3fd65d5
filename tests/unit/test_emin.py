"""EMIN losses checked against explicit per-sample / per-event loops and analytic gradients."""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pyproj
import pytest
import scipy.stats
import torch

from models import emin
from models.emin import event_centres, gaussian_emin, gaussian_entropy, seismic_emin, student_teacher_emin

GEOD = pyproj.Geod(a=6378100.0, f=0.0)


def _random_case(seed: int, m: int = 5, b: int = 40, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions with a mask that covers 0, 1, 2 and all present modalities; NaN/inf in masked slots."""
    g = torch.Generator().manual_seed(seed)
    preds = torch.randn(m, b, d, generator=g, dtype=torch.float64)
    mask = torch.rand(m, b, generator=g) < 0.6
    mask[:, 0] = False  # none present
    mask[:, 1] = False
    mask[2, 1] = True  # exactly one
    mask[:, 2] = False
    mask[[0, 3], 2] = True  # exactly two
    mask[:, 3] = True  # all
    preds = preds.masked_fill(~mask.unsqueeze(-1), float("nan"))
    preds[0][~mask[0]] = float("inf")
    return preds, mask


def _loop_gaussian(preds: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample population variance (mean over D) by an explicit loop; and which samples count."""
    m, b, _ = preds.shape
    out = np.zeros(b)
    valid = np.zeros(b, dtype=bool)
    for j in range(b):
        vals = np.array([preds[i, j] for i in range(m) if mask[i, j]])
        if len(vals) >= 2:
            out[j] = np.var(vals, axis=0, ddof=0).mean()
            valid[j] = True
    return out, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_emin_matches_loop_with_nan_in_masked_slots(seed: int) -> None:
    preds, mask = _random_case(seed)
    ref, valid = _loop_gaussian(preds.numpy(), mask.numpy())
    per = gaussian_emin(preds, mask, reduction="none")
    assert per.shape == (preds.shape[1],)
    np.testing.assert_allclose(per.numpy(), ref, rtol=1e-12, atol=1e-14)
    assert per[0] == 0 and per[1] == 0 and per[2] > 0
    np.testing.assert_allclose(gaussian_emin(preds, mask).item(), ref[valid].mean(), rtol=1e-12)


def test_gaussian_emin_two_dim_input_is_d1() -> None:
    preds = torch.tensor([[1.0, 5.0], [3.0, 2.0], [8.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False], [False, True]])
    # sample 0: {1, 3} -> var 1; sample 1: {5, 0} -> var 6.25
    np.testing.assert_allclose(gaussian_emin(preds, mask, reduction="none").numpy(), [1.0, 6.25])
    np.testing.assert_allclose(gaussian_emin(preds, mask).item(), 3.625)


def test_gaussian_emin_gradient_is_analytic_and_finite_with_nan() -> None:
    preds, mask = _random_case(3)
    x = preds.clone().requires_grad_(True)
    gaussian_emin(x, mask).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    p = preds.numpy()
    mk = mask.numpy()
    _, valid = _loop_gaussian(p, mk)
    n_valid = valid.sum()
    d = p.shape[2]
    expect = np.zeros_like(p)
    for j in range(p.shape[1]):
        if not valid[j]:
            continue
        idx = [i for i in range(p.shape[0]) if mk[i, j]]
        n = len(idx)
        mean = p[idx, j].mean(axis=0)
        for i in idx:  # d/dx_i mean((x - mean)^2) = 2 (x_i - mean) / n; then 1/D and 1/n_valid
            expect[i, j] = 2.0 * (p[i, j] - mean) / n / d / n_valid
    np.testing.assert_allclose(x.grad.numpy(), expect, rtol=1e-10, atol=1e-14)
    assert (x.grad[~mask] == 0).all()


def test_gaussian_emin_gradcheck() -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(4, 6, generator=g) < 0.7
    mask[:, 0] = False
    mask[:2, 1] = True
    assert torch.autograd.gradcheck(lambda t: gaussian_emin(t, mask), (x,))
    assert torch.autograd.gradcheck(lambda t: gaussian_emin(t, mask, reduction="none"), (x,))


def test_gaussian_emin_no_valid_sample_is_zero_with_graph() -> None:
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[1, :] = True  # one modality only everywhere
    loss = gaussian_emin(x, mask)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert x.grad is not None and (x.grad == 0).all()


def test_gaussian_emin_rejects_bad_shapes_and_reduction() -> None:
    with pytest.raises(ValueError):
        gaussian_emin(torch.zeros(2, 3, 1), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError):
        gaussian_emin(torch.zeros(2, 3, 1), torch.ones(2, 3, dtype=torch.bool), reduction="sum")  # type: ignore[arg-type]


def test_gaussian_entropy_matches_scipy() -> None:
    var = torch.tensor([1e-4, 0.3, 1.0, 7.5], dtype=torch.float64)
    ref = [scipy.stats.norm(scale=math.sqrt(v)).entropy() for v in var.tolist()]
    np.testing.assert_allclose(gaussian_entropy(var).numpy(), ref, rtol=1e-12)
    assert torch.isfinite(gaussian_entropy(torch.zeros(1))).all()


def _loop_student_teacher(
    p: np.ndarray, mk: np.ndarray, teacher: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    m, b, _ = p.shape
    out = np.zeros(b)
    valid = np.zeros(b, dtype=bool)
    for j in range(b):
        t = [p[i, j] for i in range(m) if mk[i, j] and teacher[i]]
        s = [p[i, j] for i in range(m) if mk[i, j] and not teacher[i]]
        if t and s:
            centre = np.mean(t, axis=0)
            out[j] = np.mean([np.mean((x - centre) ** 2) for x in s])
            valid[j] = True
    return out, valid


@pytest.mark.parametrize("seed", [0, 1])
def test_student_teacher_matches_loop_and_teachers_get_zero_grad(seed: int) -> None:
    preds, mask = _random_case(seed, m=6)
    teacher = torch.tensor([True, False, True, False, False, True])
    ref, valid = _loop_student_teacher(preds.numpy(), mask.numpy(), teacher.numpy())
    assert valid.sum() >= 5 and (~valid).sum() >= 2
    per = student_teacher_emin(preds, mask, teacher, reduction="none")
    np.testing.assert_allclose(per.numpy(), ref, rtol=1e-12, atol=1e-14)
    x = preds.clone().requires_grad_(True)
    loss = student_teacher_emin(x, mask, teacher)
    np.testing.assert_allclose(loss.item(), ref[valid].mean(), rtol=1e-12)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad[teacher] == 0).all()  # exactly zero, not just small
    # students: d/dx_s mean_s mean_d (x_s - c)^2 = 2 (x_s - c) / (n_s D), then / n_valid
    p, mk, tch = preds.numpy(), mask.numpy(), teacher.numpy()
    d = p.shape[2]
    expect = np.zeros_like(p)
    for j in np.flatnonzero(valid):
        c = np.mean([p[i, j] for i in range(p.shape[0]) if mk[i, j] and tch[i]], axis=0)
        st = [i for i in range(p.shape[0]) if mk[i, j] and not tch[i]]
        for i in st:
            expect[i, j] = 2 * (p[i, j] - c) / (len(st) * d * valid.sum())
    np.testing.assert_allclose(x.grad.numpy(), expect, rtol=1e-10, atol=1e-14)


def test_student_teacher_gradcheck_on_students() -> None:
    # teachers are detached by design, so gradcheck differentiates w.r.t. the student rows only
    g = torch.Generator().manual_seed(11)
    t_rows = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    s_rows = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[0, 1] = False
    mask[3, 2] = False
    teacher = torch.tensor([True, True, False, False])
    assert torch.autograd.gradcheck(
        lambda s: student_teacher_emin(torch.cat([t_rows, s]), mask, teacher), (s_rows,)
    )


# ----------------------------------------------------------------------------------------------
# seismic
# ----------------------------------------------------------------------------------------------


def _wrap180(x: np.ndarray | float) -> np.ndarray:
    return (np.asarray(x) + 180.0) % 360.0 - 180.0


def _seismic_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Traces of many events with random sizes; event 17 straddles the antimeridian."""
    rng = np.random.default_rng(seed)
    ids, lat, lon = [], [], []
    for e in range(30):
        n = int(rng.integers(1, 9))
        c_lat, c_lon = rng.uniform(-60, 60), rng.uniform(-180, 180)
        if e == 17:
            c_lon = 179.9
        ids += [e * 3 + 5] * n  # non-contiguous ids
        lat += list(c_lat + rng.normal(0, 0.5, n))
        lon += list(_wrap180(c_lon + rng.normal(0, 0.5, n)))
    perm = rng.permutation(len(ids))  # traces not grouped by event
    return (
        torch.tensor(np.array(lat)[perm]),
        torch.tensor(np.array(lon)[perm]),
        torch.tensor(np.array(ids)[perm]),
    )


def _loop_centres(
    lat: np.ndarray, lon: np.ndarray, ids: np.ndarray, fn: str
) -> dict[int, tuple[float, float]]:
    """Per-event centre by a Python loop with numpy median/mean; longitudes unwrapped about the event mean
    direction (a different reference from the code's first-trace reference)."""
    out = {}
    for e in np.unique(ids):
        la, lo = lat[ids == e], lon[ids == e]
        ref = np.degrees(np.arctan2(np.sin(np.radians(lo)).mean(), np.cos(np.radians(lo)).mean()))
        rel = _wrap180(lo - ref)
        f = np.median if fn == "median" else np.mean
        out[int(e)] = (float(f(la)), float(_wrap180(ref + f(rel))))
    return out


@pytest.mark.parametrize("centre", ["median", "mean"])
def test_event_centres_match_numpy_loop(centre: str) -> None:
    lat, lon, ids = _seismic_case(0)
    c = event_centres(lat, lon, ids, centre=centre)  # type: ignore[arg-type]
    ref = _loop_centres(lat.numpy(), lon.numpy(), ids.numpy(), centre)
    assert c.event_ids.tolist() == sorted(ref)
    for k, e in enumerate(c.event_ids.tolist()):
        assert c.lat[k].item() == pytest.approx(ref[e][0], abs=1e-10)
        assert abs(_wrap180(c.lon[k].item() - ref[e][1])) < 1e-10
        assert c.n_members[k].item() == int((ids == e).sum())
    # every trace maps to its own event
    assert (c.event_ids[c.inverse] == ids).all()


def test_event_centre_straddling_antimeridian_by_hand() -> None:
    lat = torch.tensor([10.0, 11.0, 12.0, 40.0, 41.0], dtype=torch.float64)
    lon = torch.tensor([179.0, -179.0, 178.5, -179.5, 179.5], dtype=torch.float64)
    ids = torch.tensor([1, 1, 1, 2, 2])
    c = event_centres(lat, lon, ids)
    # event 1: unwrapped {179, 181, 178.5} -> median 179; event 2: {180.5, 179.5} -> 180 (= -180)
    assert c.lat.tolist() == pytest.approx([11.0, 40.5])
    assert c.lon[0].item() == pytest.approx(179.0)
    assert abs(_wrap180(c.lon[1].item() - 180.0)) < 1e-12
    # a naive numpy median on the raw longitudes is far off: the unwrap matters
    assert abs(np.median([179.0, -179.0, 178.5]) - 178.5) < 1e-12
    assert c.lon.min() >= -180.0 and c.lon.max() < 180.0


def test_event_centre_teacher_selection_and_empty_event() -> None:
    lat = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    lon = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    ids = torch.tensor([0, 0, 0, 0, 1, 1])
    sel = torch.tensor([True, False, True, True, False, False])
    c = event_centres(lat, lon, ids, select=sel)
    assert c.lat[0].item() == pytest.approx(3.0) and c.lon[0].item() == pytest.approx(30.0)
    assert torch.isnan(c.lat[1]) and c.n_members.tolist() == [3, 0]
    c2 = event_centres(lat, lon, ids, select=torch.tensor([True, True, False, True, True, True]))
    # even count: numpy-style median = mean of the two middle values
    assert c2.lat[0].item() == pytest.approx(np.median([1.0, 2.0, 4.0]))
    assert c2.lat[1].item() == pytest.approx(5.5) and c2.lon[1].item() == pytest.approx(55.0)


def _loop_seismic(
    lat: np.ndarray,
    lon: np.ndarray,
    ids: np.ndarray,
    teacher: np.ndarray | None,
    centre: str,
    deviation: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-event loss by a loop: centre from (teacher) traces, squared deviations of (student) traces."""
    events = np.unique(ids)
    out = np.zeros(len(events))
    valid = np.zeros(len(events), dtype=bool)
    for k, e in enumerate(events):
        sel = ids == e
        c_sel = sel if teacher is None else sel & teacher
        l_sel = sel if teacher is None else sel & ~teacher
        if (teacher is None and sel.sum() < 2) or (
            teacher is not None and (c_sel.sum() < 1 or l_sel.sum() < 1)
        ):
            continue
        ref = _loop_centres(lat[c_sel], lon[c_sel], ids[c_sel], centre)[int(e)]
        la, lo = lat[l_sel], lon[l_sel]
        if deviation == "component":
            d_lat = np.radians(la - ref[0])
            d_lon = np.radians(_wrap180(lo - ref[1]))
            sq = 0.5 * (d_lat**2 + d_lon**2)
        else:  # great circle via pyproj on the unit-free sphere: angle = distance / a
            _, _, dist = GEOD.inv(lo, la, np.full(la.shape, ref[1]), np.full(la.shape, ref[0]))
            sq = (dist / 6378100.0) ** 2
        out[k] = sq.mean()
        valid[k] = True
    return out, valid


@pytest.mark.parametrize("centre", ["median", "mean"])
@pytest.mark.parametrize("deviation", ["component", "great_circle"])
@pytest.mark.parametrize("with_teacher", [False, True])
def test_seismic_emin_matches_loop(centre: str, deviation: str, with_teacher: bool) -> None:
    lat, lon, ids = _seismic_case(1)
    teacher = None
    if with_teacher:
        teacher = torch.from_numpy(np.random.default_rng(5).random(lat.shape[0]) < 0.4)
    ref, valid = _loop_seismic(
        lat.numpy(), lon.numpy(), ids.numpy(), None if teacher is None else teacher.numpy(), centre, deviation
    )
    assert valid.sum() >= 10 and (~valid).sum() >= 1
    kw = {"is_teacher": teacher, "centre": centre, "deviation": deviation}
    per = seismic_emin(lat, lon, ids, reduction="none", **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(per.numpy(), ref, rtol=1e-8, atol=1e-15)
    total = seismic_emin(lat, lon, ids, **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(total.item(), ref[valid].mean(), rtol=1e-8)


def test_seismic_emin_radians_input_gives_same_loss() -> None:
    lat, lon, ids = _seismic_case(2)
    a = seismic_emin(lat, lon, ids)
    b = seismic_emin(torch.deg2rad(lat), torch.deg2rad(lon), ids, degrees=False)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)


def test_seismic_mean_centre_is_per_event_population_variance() -> None:
    # independent route: with a mean centre, component deviation is the per-event population variance
    lat, lon, ids = _seismic_case(3)
    ev = np.unique(ids.numpy())
    per = seismic_emin(lat, lon, ids, centre="mean", reduction="none").numpy()
    for k, e in enumerate(ev):
        sel = ids.numpy() == e
        if sel.sum() < 2:
            assert per[k] == 0.0
            continue
        la = np.radians(lat.numpy()[sel])
        lo = np.unwrap(np.radians(lon.numpy()[sel]))
        assert per[k] == pytest.approx(0.5 * (np.var(la) + np.var(lo)), rel=1e-9)


def test_seismic_student_teacher_gradients() -> None:
    lat, lon, ids = _seismic_case(4)
    teacher = torch.from_numpy(np.random.default_rng(9).random(lat.shape[0]) < 0.5)
    la = lat.clone().requires_grad_(True)
    lo = lon.clone().requires_grad_(True)
    for deviation in ("component", "great_circle"):
        la.grad = lo.grad = None
        seismic_emin(la, lo, ids, is_teacher=teacher, deviation=deviation).backward()  # type: ignore[arg-type]
        assert la.grad is not None and lo.grad is not None
        assert torch.isfinite(la.grad).all() and torch.isfinite(lo.grad).all()
        assert (la.grad[teacher] == 0).all() and (lo.grad[teacher] == 0).all()
        assert (la.grad[~teacher] != 0).any()


def test_seismic_emin_gradcheck() -> None:
    lat, lon, ids = _seismic_case(6)
    keep = ids < 40
    lat, lon, ids = lat[keep], lon[keep], ids[keep]
    teacher = torch.arange(lat.shape[0]) % 3 == 0
    for centre in ("mean", "median"):
        for dev in ("component", "great_circle"):
            for with_teacher in (False, True):
                # teachers are detached by design: differentiate w.r.t. the loss-carrying traces only
                var = ~teacher if with_teacher else torch.ones_like(teacher)
                la = lat[var].clone().requires_grad_(True)
                lo = lon[var].clone().requires_grad_(True)

                def f(
                    a: torch.Tensor,
                    b: torch.Tensor,
                    c: str = centre,
                    d: str = dev,
                    t: bool = with_teacher,
                    v: torch.Tensor = var,
                ) -> torch.Tensor:
                    full_lat = lat.masked_scatter(v, a) if t else a
                    full_lon = lon.masked_scatter(v, b) if t else b
                    return seismic_emin(
                        full_lat, full_lon, ids, is_teacher=teacher if t else None, centre=c, deviation=d
                    )  # type: ignore[arg-type]

                assert torch.autograd.gradcheck(f, (la, lo), eps=1e-7, atol=1e-6)


def test_seismic_emin_gradient_finite_at_exact_centre_and_undefined_events() -> None:
    # odd count: the median trace sits exactly at the centre (zero great-circle distance)
    lat = torch.tensor([10.0, 10.0, 10.5, 3.0, 7.0], dtype=torch.float64, requires_grad=True)
    lon = torch.tensor([20.0, 20.0, 20.2, 5.0, 9.0], dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 0, 0, 1, 2])
    teacher = torch.tensor([False, False, False, True, False])  # event 0 has no teacher, 2 no student
    for kw in ({}, {"is_teacher": teacher}):
        loss = seismic_emin(lat, lon, ids, deviation="great_circle", **kw)  # type: ignore[arg-type]
        lat.grad = lon.grad = None
        loss.backward()
        assert torch.isfinite(loss) and lat.grad is not None and lon.grad is not None
        assert torch.isfinite(lat.grad).all() and torch.isfinite(lon.grad).all()
    assert loss.item() == 0.0  # no event is defined for student-teacher here


def _loops_in(fn: object) -> list[str]:
    tree = ast.parse(inspect.getsource(fn))  # type: ignore[arg-type]
    return [
        type(n).__name__ for n in ast.walk(tree) if isinstance(n, ast.For | ast.While | ast.comprehension)
    ]


def test_losses_have_no_python_loops() -> None:
    for fn in (
        emin.gaussian_emin,
        emin.student_teacher_emin,
        emin.seismic_emin,
        emin.event_centres,
        emin._group,
        emin._segment_median,
        emin._segment_mean,
    ):
        assert _loops_in(fn) == [], fn.__name__
