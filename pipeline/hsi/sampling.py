"""Seeded, vectorised random point sampling inside and outside polygons.

A rejection sampler: candidates are drawn uniformly in each polygon's bounding
box and kept with one vectorised ``shapely.contains_xy`` call per round, so the
work is a handful of numpy passes whatever the number of polygons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS

from pipeline.hsi.polygons import PolygonReport

_MAX_ROUNDS = 200


def points_in_polygons(
    geoms: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``counts[i]`` uniform points strictly inside ``geoms[i]``.

    Returns (x, y, owner) with points grouped by owner in input order.
    """
    counts = np.asarray(counts, dtype=np.int64)
    bounds = shapely.bounds(geoms)
    bbox_area = np.maximum((bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1]), 1e-12)
    fill = np.clip(shapely.area(geoms) / bbox_area, 1e-3, 1.0)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    remaining = counts.copy()
    for _ in range(_MAX_ROUNDS):
        todo = np.flatnonzero(remaining > 0)
        if todo.size == 0:
            break
        draws = np.ceil(remaining[todo] / fill[todo] * 1.25).astype(np.int64) + 4
        owner = np.repeat(todo, draws)
        b = bounds[owner]
        x = b[:, 0] + rng.random(owner.size) * (b[:, 2] - b[:, 0])
        y = b[:, 1] + rng.random(owner.size) * (b[:, 3] - b[:, 1])
        ok = shapely.contains_xy(geoms[owner], x, y)
        x, y, owner = x[ok], y[ok], owner[ok]
        # keep the first `remaining` hits of each owner (owner is sorted, so rank within group)
        first = np.searchsorted(owner, owner, side="left")
        rank = np.arange(owner.size) - first
        take = rank < remaining[owner]
        xs.append(x[take])
        ys.append(y[take])
        owners.append(owner[take])
        np.subtract.at(remaining, owner[take], 1)
    if (remaining > 0).any():
        bad = np.flatnonzero(remaining > 0)[:5].tolist()
        raise RuntimeError(f"rejection sampling did not converge for polygons {bad}")
    x_all, y_all, o_all = np.concatenate(xs), np.concatenate(ys), np.concatenate(owners)
    order = np.argsort(o_all, kind="stable")
    return x_all[order], y_all[order], o_all[order]


def points_outside(
    region: shapely.Geometry, exclude: shapely.Geometry, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` uniform points in ``region`` that do not touch ``exclude``."""
    shapely.prepare(exclude)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    need = count
    minx, miny, maxx, maxy = region.bounds
    for _ in range(_MAX_ROUNDS):
        if need <= 0:
            break
        n = int(need * 1.5) + 16
        x = minx + rng.random(n) * (maxx - minx)
        y = miny + rng.random(n) * (maxy - miny)
        ok = shapely.contains_xy(region, x, y) & ~shapely.intersects_xy(exclude, x, y)
        x, y = x[ok][:need], y[ok][:need]
        xs.append(x)
        ys.append(y)
        need -= x.size
    if need > 0:
        raise RuntimeError("background sampling did not converge: the region is (almost) all polygons")
    return np.concatenate(xs), np.concatenate(ys)


def capped_counts(counts: np.ndarray, groups: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Per-polygon point counts after keeping at most ``cap`` random points of each group.

    Drawing every point at the full density and then keeping a uniform random subset of
    ``cap`` gives per-polygon counts that follow a multivariate hypergeometric law, with the
    kept points uniform inside their polygons. Drawing those counts first and only the kept
    points afterwards is the same distribution without materialising the discarded points.
    """
    out = np.asarray(counts, dtype=np.int64).copy()
    for value in np.unique(groups):
        members = np.flatnonzero(groups == value)
        if out[members].sum() > cap:
            out[members] = rng.multivariate_hypergeometric(out[members], cap)
    return out


@dataclass
class SampledPoints:
    """Every sampled point (after the per-class cap), in the working CRS."""

    x: np.ndarray
    y: np.ndarray
    label_name: np.ndarray
    polygon_id: np.ndarray
    crs: CRS
    class_names: list[str]
    generated_per_class: dict[str, int]
    report: PolygonReport
    region_bounds: tuple[float, float, float, float]

    @property
    def size(self) -> int:
        return int(self.x.size)


def seed_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per step, so changing one step never shifts another's draws."""
    names = ("targets", "background", "cap", "folds")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, children, strict=True)}
