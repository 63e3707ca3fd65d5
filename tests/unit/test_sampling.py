"""Rejection samplers and caps, checked with independent shapely predicates."""

from __future__ import annotations

import numpy as np
import shapely

from pipeline.hsi.sampling import capped_counts, points_in_polygons, points_outside


def _polys() -> np.ndarray:
    ring = shapely.Polygon([(0, 0), (10, 0), (10, 10), (5, 3), (0, 10)])  # concave
    multi = shapely.MultiPolygon([shapely.box(20, 0, 22, 2), shapely.box(30, 0, 31, 8)])
    holed = shapely.box(40, 0, 50, 10).difference(shapely.box(42, 2, 48, 8))
    return np.array([ring, multi, holed], dtype=object)


def test_points_inside_their_polygon_with_exact_counts() -> None:
    geoms = _polys()
    counts = np.array([500, 37, 200])
    x, y, owner = points_in_polygons(geoms, counts, np.random.default_rng(1))
    assert np.bincount(owner, minlength=3).tolist() == counts.tolist()
    for i, g in enumerate(geoms):
        pts = shapely.points(x[owner == i], y[owner == i])
        assert shapely.contains(g, pts).all()


def test_points_are_uniform_over_area() -> None:
    # a box split in halves: each half should receive half the points (binomial 5-sigma bound)
    geoms = np.array([shapely.box(0, 0, 2, 1)], dtype=object)
    x, _, _ = points_in_polygons(geoms, np.array([20000]), np.random.default_rng(2))
    left = np.sum(x < 1.0)
    assert abs(left - 10000) < 5 * np.sqrt(20000 * 0.25)


def test_background_points_outside_every_polygon() -> None:
    geoms = _polys()
    region = shapely.box(-5, -5, 55, 15)
    union = shapely.union_all(geoms)
    x, y = points_outside(region, union, 3000, np.random.default_rng(3))
    assert x.size == 3000
    pts = shapely.points(x, y)
    assert not shapely.intersects(union, pts).any()
    assert shapely.contains(region, pts).all()


def test_sampling_is_reproducible() -> None:
    geoms = _polys()
    a = points_in_polygons(geoms, np.array([50, 5, 20]), np.random.default_rng(7))
    b = points_in_polygons(geoms, np.array([50, 5, 20]), np.random.default_rng(7))
    c = points_in_polygons(geoms, np.array([50, 5, 20]), np.random.default_rng(8))
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_capped_counts_keep_at_most_cap_per_group() -> None:
    counts = np.array([3000, 2000, 10, 1500, 501])
    groups = np.array(["a", "a", "b", "c", "c"])
    out = capped_counts(counts, groups, 2000, np.random.default_rng(0))
    assert [out[groups == g].sum() for g in ("a", "b", "c")] == [2000, 10, 2000]
    assert (out <= counts).all()
    assert out[2] == 10  # groups under the cap are untouched


def test_capped_counts_follow_the_hypergeometric_mean() -> None:
    # keeping a uniform random subset of 2000 of 5000 points: polygon i keeps 2000 * n_i / 5000
    # on average (closed form); check over many draws with a 5-sigma bound
    counts = np.array([3000, 1500, 500])
    groups = np.zeros(3, dtype=int)
    rng = np.random.default_rng(1)
    draws = np.stack([capped_counts(counts, groups, 2000, rng) for _ in range(400)])
    expected = 2000 * counts / counts.sum()
    var = 2000 * (counts / 5000) * (1 - counts / 5000) * (5000 - 2000) / (5000 - 1)
    assert (np.abs(draws.mean(axis=0) - expected) < 5 * np.sqrt(var / 400)).all()
