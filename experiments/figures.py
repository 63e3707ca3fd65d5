"""The experiment report's figures (matplotlib Agg), each drawn from what the runs saved.

A figure function takes the :class:`~experiments.result.ExperimentResult` and returns a
:class:`Figure`: the PNG, a caption and ``data``, the numbers it plotted, so a test can
recompute them from the run folders. Bars are the mean over seeds ± the 95% Student t
interval (:func:`experiments.stats.t_interval`; no bar from one seed). Rows of a figure are
the experiment's (arm, grid cell) groups in spec order; a figure drawn from one run per
group uses the lowest seed. :func:`metric_bars` is drawn for every compared metric;
:data:`FIGURES` holds the report-specific figures a spec's ``figures:`` names:

- ``modality_errors`` (hsi-1, Fig. 6): per-modality and fused test macro error per arm.
- ``alpha_traces`` (hsi-2, Fig. 9): per probe sample and modality, the softmax probability of
  the true class over training (``traces.npz``), a row per arm and α.
- ``variance_shift`` (hsi-4, Fig. 11): per-sample cross-modality predictive variance of the
  test set at the fine-tuning switch and at the end (``predictions_before_switch.npz``,
  ``predictions.npz``; pooled over seeds), and the fused test error before/after.
- ``modality_deltas`` (hsi-4, Fig. 12): per modality, test macro accuracy after − before.
- ``location_breakdown`` (seis-1, Fig. 14): median location error per arm by distance bin, by
  sensor type and by catalogue subset (:data:`SUBSETS`, from the store's event attributes).
- ``variance_vs_error`` (seis-1, report 4.5): per test event, the spread of its station
  estimates against its error, with Spearman ρ.
- ``error_ellipses`` (seis-2, Fig. 16): for a few test events, each station's estimate of the
  event location, their median and their 2σ covariance ellipse, around the true location.

A figure whose inputs no run saved (every run of its arm failed, say) raises
:class:`FigureUnavailable`; the report says so in its place.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.result import ExperimentResult, Figure, is_member
from experiments.spec import FigureName
from experiments.stats import t_interval

__all__ = [
    "FIGURES",
    "SUBSETS",
    "Figure",
    "FigureUnavailable",
    "alpha_traces",
    "error_ellipses",
    "local_km",
    "location_breakdown",
    "mean_ci",
    "metric_bars",
    "modality_deltas",
    "modality_errors",
    "variance_shift",
    "variance_vs_error",
]

#: Catalogue subsets of seis-1's Fig. 14: name → (store coordinate, test on it). The report's
#: experiments used events with catalogue horizontal error < 1 km; magnitude splits at the
#: median magnitude of the test traces' events (``thr``).
SUBSETS: dict[str, tuple[str, Callable[[np.ndarray, float], np.ndarray]]] = {
    "horizontal error < 1 km": ("event_horizontal_error_km", lambda v, thr: v < 1.0),
    "horizontal error >= 1 km": ("event_horizontal_error_km", lambda v, thr: v >= 1.0),
    "M < median": ("event_magnitude", lambda v, thr: v < thr),
    "M >= median": ("event_magnitude", lambda v, thr: v >= thr),
}
Interval = tuple[float, float, float]  # mean, low, high


class FigureUnavailable(Exception):
    """No run saved what this figure is drawn from."""


def mean_ci(values: Any) -> Interval:
    """Mean and 95% t interval of the finite ``values`` (the mean twice from one value)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    lo, hi = t_interval(x) if x.size > 1 else (float(x[0]), float(x[0]))
    return float(x.mean()), lo, hi


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def _label(arm: str, cell: dict[str, Any]) -> str:
    return arm + "".join(f" {k}={v}" for k, v in cell.items())


def _groups(result: ExperimentResult) -> list[tuple[str, pd.DataFrame]]:
    """(label, finished rows) per arm and grid cell, in spec order (members left out)."""
    res = result.results
    ok = res[(res.status != "failed") & ~is_member(res)]
    factors = [c for c in ok.columns if c.startswith("factor.")]
    out = []
    for arm in result.spec.arms:
        rows = ok[ok.arm == arm]
        used = [f for f in factors if rows[f].notna().any()]
        cells = rows[used].drop_duplicates().to_dict("records") if used else [{}]
        for cell in cells:
            sel = rows
            for f, v in cell.items():
                sel = sel[sel[f] == v]
            if len(sel):
                out.append((_label(arm, {str(k).removeprefix("factor."): v for k, v in cell.items()}), sel))
    if not out:
        raise FigureUnavailable("no finished run")
    return out


def _first(rows: pd.DataFrame) -> pd.Series:
    """The run of the lowest seed."""
    return rows.sort_values("seed").iloc[0]


def _npz(run_dir: str, name: str) -> dict[str, np.ndarray]:
    path = Path(run_dir) / name
    if not path.exists():
        raise FigureUnavailable(f"{path} is missing")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _bars(ax: Any, groups: dict[str, dict[str, Interval]], ylabel: str) -> None:
    """Grouped bars: x = the inner keys, one bar per outer key, t-interval error bars."""
    keys = list(dict.fromkeys(k for g in groups.values() for k in g))
    x = np.arange(len(keys))
    w = 0.8 / max(len(groups), 1)
    for i, (name, g) in enumerate(groups.items()):
        m = np.array([g.get(k, (math.nan,) * 3)[0] for k in keys])
        lo = np.array([g.get(k, (math.nan,) * 3)[1] for k in keys])
        hi = np.array([g.get(k, (math.nan,) * 3)[2] for k in keys])
        ax.bar(x + (i - (len(groups) - 1) / 2) * w, m, w, yerr=[m - lo, hi - m], capsize=2, label=name)
    ax.set_xticks(x, keys, fontsize=7, rotation=20)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=6)


# --------------------------------------------------------------------------- every experiment


def metric_bars(result: ExperimentResult, metric: str) -> Figure:
    """Both sides of every comparison of ``metric`` (and grid cell), over the seeds it paired."""
    rows = [
        (f"{c.arm_b} vs {c.arm_a}" + (f"\n{', '.join(f'{k}={v}' for k, v in cell.items())}" if cell else ""), c, va, vb)
        for c, cell, (va, vb) in zip(result.comparisons, result.cells, result.values, strict=True)
        if c.metric == metric
    ]  # fmt: skip
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(rows) + 2), 3.6))
    x = np.arange(len(rows))
    data: dict[str, Any] = {}
    for offset, side in ((-0.2, "a"), (0.2, "b")):
        stats = [mean_ci(va if side == "a" else vb) for _, _, va, vb in rows]
        data[side] = stats
        m = np.array([s[0] for s in stats])
        err = [m - np.array([s[1] for s in stats]), np.array([s[2] for s in stats]) - m]
        names = sorted({(c.arm_a if side == "a" else c.arm_b) for _, c, _, _ in rows})
        ax.bar(x + offset, m, 0.4, yerr=err, capsize=3, label=" / ".join(names))
    ax.set_xticks(x, [r[0] for r in rows], fontsize=7)
    ax.set_ylabel(metric, fontsize=8)
    ax.set_title(f"{result.spec.name}: {metric} (mean ± 95% CI over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    data["labels"] = [r[0] for r in rows]
    return Figure(
        f"metric_{metric.replace('.', '_')}", f"{metric}: both arms of each comparison", _png(fig), data
    )


# --------------------------------------------------------------------------- HSI


def modality_errors(result: ExperimentResult) -> Figure:
    """Fig. 6: test macro error per modality and fused, per arm."""
    names = [*map(str, result.dataset.attrs.get("modalities", [])), "fused"]
    data = {
        label: {n: mean_ci(rows[f"test.{n}.macro_error"]) for n in names if f"test.{n}.macro_error" in rows}
        for label, rows in _groups(result)
    }
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 3.8))
    _bars(ax, data, "test macro error")
    ax.set_title(f"{result.spec.name}: per-modality and fused test error (mean ± 95% CI)", fontsize=9)
    return Figure(
        "modality_errors", "Fig. 6: test macro error per modality and fused, per arm", _png(fig), data
    )


def alpha_traces(result: ExperimentResult, n_probe: int = 4) -> Figure:
    """Fig. 9: the true-class probability of a few probe samples over training, per modality."""
    runs = [(label, _npz(_first(rows).run_dir, "traces.npz")) for label, rows in _groups(result)
            if (Path(_first(rows).run_dir) / "traces.npz").exists()]  # fmt: skip
    if not runs:
        raise FigureUnavailable("no run saved traces.npz (set trace_samples)")
    first = runs[0][1]
    seen = first["mask"].sum(axis=0)
    order = np.argsort(-seen, kind="stable")  # samples seen by the most modalities first
    probes = [int(first["sample_id"][i]) for i in order[:n_probe]]
    data: dict[str, Any] = {"probes": probes, "rows": {}, "epochs": {}}
    plt = _plt()
    fig, axes = plt.subplots(len(runs), len(probes), figsize=(3.0 * len(probes), 2.2 * len(runs)),
                             squeeze=False, sharey=True)  # fmt: skip
    for r, (label, tr) in enumerate(runs):
        epochs = tr["epochs"].tolist()
        data["epochs"][label] = epochs
        rows: dict[int, dict[str, list[float]]] = {}
        for c, sid in enumerate(probes):
            ax = axes[r, c]
            at = np.flatnonzero(tr["sample_id"] == sid)
            if not at.size:
                ax.set_axis_off()
                continue
            k, y = int(at[0]), int(tr["labels"][at[0]])
            curves = {
                str(m): tr["probs"][:, i, k, y].astype(float).tolist()
                for i, m in enumerate(tr["modalities"])
                if tr["mask"][i, k]
            }
            rows[sid] = curves
            for m, p in curves.items():
                ax.plot(epochs, p, label=m)
            ax.set_ylim(-0.02, 1.02)
            if r == 0:
                ax.set_title(f"sample {sid} (class {y})", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{label}\nP(true class)", fontsize=7)
            if r == len(runs) - 1:
                ax.set_xlabel("epoch", fontsize=7)
            ax.xaxis.get_major_locator().set_params(integer=True)
            if r == 0 and c == 0:
                ax.legend(fontsize=5)
        data["rows"][label] = rows
    return Figure(
        "alpha_traces",
        "Fig. 9: per-modality softmax probability of the true class of probe test samples over "
        "training (lowest seed), a row per arm and α",
        _png(fig),
        data,
    )


def variance_shift(result: ExperimentResult) -> Figure:
    """Fig. 11: per-sample cross-modality variance and fused error, at the switch vs at the end."""
    from models.metrics import predictive_variance

    def variances(rows: pd.DataFrame, name: str) -> np.ndarray:
        out = []
        for run_dir in rows.sort_values("seed").run_dir:
            p = _npz(run_dir, name)
            out.append(predictive_variance(p["probs"], p["mask"], from_logits=False))
        v = np.concatenate(out)
        return v[np.isfinite(v)]

    groups = [(label, rows) for label, rows in _groups(result)
              if (Path(_first(rows).run_dir) / "predictions_before_switch.npz").exists()]  # fmt: skip
    if not groups:
        raise FigureUnavailable("no run saved predictions_before_switch.npz (a fine-tuning switch)")
    plt = _plt()
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 3.4 * len(groups)), squeeze=False)
    data: dict[str, Any] = {}
    key = "test.classification.fused.macro_error"
    for r, (label, rows) in enumerate(groups):
        before, after = variances(rows, "predictions_before_switch.npz"), variances(rows, "predictions.npz")
        pos = np.concatenate([before, after])
        pos = pos[pos > 0]
        edges = (
            np.geomspace(pos.min(), max(pos.max(), pos.min() * 1.0001), 31) if pos.size else np.array([0, 1])
        )
        err = {"before": mean_ci(rows[f"before_switch.{key}"]), "after": mean_ci(rows[f"final.{key}"])}
        data[label] = {"variance_before": before, "variance_after": after, "edges": edges, "error": err}
        ax = axes[r, 0]
        for v, name in ((before, "before fine-tuning"), (after, "after fine-tuning")):
            ax.hist(
                np.clip(v, edges[0], edges[-1]), bins=edges, histtype="step", label=f"{name} (n={v.size})"
            )
        ax.set_xscale("log")
        ax.set_xlabel("per-sample cross-modality predictive variance (test)", fontsize=8)
        ax.set_ylabel(f"{label}\nsamples", fontsize=8)
        ax.legend(fontsize=7)
        _bars(axes[r, 1], {label: err}, "fused test macro error")
    return Figure(
        "variance_shift",
        "Fig. 11: distribution of the per-sample cross-modality predictive variance before vs after "
        "EMIN-only fine-tuning (test set, pooled over seeds) and the fused test error (mean ± 95% CI)",
        _png(fig),
        data,
    )


def modality_deltas(result: ExperimentResult) -> Figure:
    """Fig. 12: per-modality change of test macro accuracy over fine-tuning (after − before)."""
    names = [str(m) for m in result.dataset.attrs.get("modalities", [])]
    col = "test.classification.{}.macro_accuracy"
    data: dict[str, Any] = {}
    for label, rows in _groups(result):
        per: dict[str, Any] = {}
        for m in names:
            b, a = f"before_switch.{col.format(m)}", f"final.{col.format(m)}"
            if b in rows and a in rows:
                d = (rows[a] - rows[b]).to_numpy(dtype=float)
                per[m] = {"before": float(np.nanmean(rows[b])), "delta": mean_ci(d), "values": d.tolist()}
        if per:  # worst modality (before) first, as the report's Fig. 12 reads
            data[label] = dict(sorted(per.items(), key=lambda kv: kv[1]["before"]))
    if not data:
        raise FigureUnavailable("no run has before_switch and final per-modality accuracies")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 3.8))
    _bars(ax, {lab: {m: v["delta"] for m, v in per.items()} for lab, per in data.items()},
          "Δ test macro accuracy (after − before)")  # fmt: skip
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_title("per-modality accuracy change from EMIN fine-tuning (worst modality first)", fontsize=9)
    return Figure(
        "modality_deltas",
        "Fig. 12: per-modality change in test macro accuracy from EMIN-only fine-tuning "
        "(mean ± 95% CI over seeds; modalities ordered by accuracy before fine-tuning)",
        _png(fig),
        data,
    )


# --------------------------------------------------------------------------- seismic


def _catalogue(store: str) -> dict[str, np.ndarray]:
    """The store's per-trace event attributes that :data:`SUBSETS` split on (those present)."""
    from pipeline.publishing.zarr_io import open_store

    ds = open_store(store)
    return {c: np.asarray(ds[c].values, dtype=float) for c, _ in SUBSETS.values() if c in ds.variables}


def location_breakdown(result: ExperimentResult) -> Figure:
    """Fig. 14: median location error per arm by distance bin, sensor type and catalogue subset."""
    groups = _groups(result)
    metric = "location_error_km_median"

    def by(prefix: str) -> dict[str, dict[str, Interval]]:
        out = {}
        for label, rows in groups:
            cols = [c for c in rows.columns if c.startswith(prefix) and c.endswith("." + metric)]
            out[label] = {
                c.removeprefix(prefix).removesuffix("." + metric): mean_ci(rows[c])
                for c in cols
                if rows[c].notna().any()
            }
        return out

    catalogue = _catalogue(result.dataset.store)
    subsets: dict[str, dict[str, Interval]] = {}
    thresholds: dict[str, float] = {}
    if catalogue:
        locs = {
            label: [_npz(d, "locations.npz") for d in rows.sort_values("seed").run_dir]
            for label, rows in groups
        }
        tested = np.unique(np.concatenate([loc["trace_index"] for runs in locs.values() for loc in runs]))
        if "event_magnitude" in catalogue:
            thresholds["magnitude_median"] = float(np.nanmedian(catalogue["event_magnitude"][tested]))
        for label, runs in locs.items():
            subsets[label] = {}
            for name, (coord, test) in SUBSETS.items():
                if coord not in catalogue:
                    continue
                medians = []
                for loc in runs:
                    sel = test(
                        catalogue[coord][loc["trace_index"]], thresholds.get("magnitude_median", math.nan)
                    )
                    err = loc["location_error_km"][sel]
                    medians.append(float(np.median(err)) if err.size else math.nan)
                subsets[label][name] = mean_ci(medians)
    panels = {"distance": by("test.by_distance_bin."), "sensor": by("test.by_sensor."), "subset": subsets}
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    titles = ("true distance bin (km)", "sensor type", "catalogue subset")
    for ax, (key, panel), title in zip(axes, panels.items(), titles, strict=True):
        if any(panel.values()):
            _bars(ax, panel, "median location error (km)")
        else:
            empty = "no catalogue attributes in the store" if key == "subset" else "no data"
            ax.text(0.5, 0.5, empty, ha="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
    return Figure(
        "location_breakdown",
        "Fig. 14: median test location error per arm by true distance bin, sensor type and catalogue "
        "subset (catalogue horizontal error < 1 km as in the report, or magnitude below/above the "
        "test median), mean ± 95% CI over seeds",
        _png(fig),
        {**panels, "thresholds": thresholds},
    )


def variance_vs_error(result: ExperimentResult) -> Figure:
    """Report 4.5: per test event, the spread of its station estimates against its error."""
    from models.metrics import event_spread_error

    groups = _groups(result)
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.4), squeeze=False)
    data: dict[str, Any] = {}
    for ax, (label, rows) in zip(axes[0], groups, strict=True):
        run = _first(rows)
        loc = _npz(run.run_dir, "locations.npz")
        _, codes = np.unique(loc["event_id"], return_inverse=True)
        s = event_spread_error(loc["pred_lat"], loc["pred_lon"], loc["location_error_km"], codes)
        rho = mean_ci(rows["test.variance_vs_error.event_spearman"])
        data[label] = {
            "variance_km2": s["event_variance_km2"], "error_km": s["event_error_km"], "seed": int(run.seed),
            "spearman": float(run["test.variance_vs_error.event_spearman"]), "spearman_over_seeds": rho,
        }  # fmt: skip
        ax.scatter(np.sqrt(s["event_variance_km2"]), s["event_error_km"], s=10)
        ax.set_xlabel("RMS spread of the station estimates (km)", fontsize=7)
        ax.set_ylabel("event error (median, km)", fontsize=7)
        ax.set_title(
            f"{label} (seed {int(run.seed)}): ρ = {data[label]['spearman']:.2f}\n"
            f"ρ over seeds {rho[0]:.2f} [{rho[1]:.2f}, {rho[2]:.2f}]",
            fontsize=7,
        )
    return Figure(
        "variance_vs_error",
        "Is predictive variance informative of error (report 4.5)? Per test event, the RMS distance "
        "of its station estimates from their median against the event's median error "
        "(lowest seed), with Spearman ρ (and its mean ± 95% CI over seeds)",
        _png(fig),
        data,
    )


def local_km(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """``[N, 2]`` east/north km of points from ``(lat0, lon0)`` (equirectangular; a local map)."""
    from models.geo import REPORT_EARTH_RADIUS_KM

    k = math.pi * REPORT_EARTH_RADIUS_KM / 180.0
    return np.stack([(lon - lon0) * math.cos(math.radians(lat0)) * k, (lat - lat0) * k], axis=1)


def error_ellipses(result: ExperimentResult, n_events: int = 4) -> Figure:
    """Fig. 16: station estimates of a few test events, their median and 2σ ellipse, per arm."""
    baseline = next(iter(result.spec.arms))
    groups = [
        (label, _npz(_first(rows).run_dir, "locations.npz"), rows.arm.iloc[0] == baseline)
        for label, rows in _groups(result)
    ]
    ids, counts = np.unique(groups[0][1]["event_id"], return_counts=True)
    order = np.lexsort((ids, -counts))
    events = [str(ids[i]) for i in order if counts[i] >= 3][:n_events]
    if not events:
        raise FigureUnavailable("no test event with three or more traces")
    plt = _plt()
    from matplotlib.patches import Ellipse

    fig, axes = plt.subplots(len(groups), len(events), figsize=(3.2 * len(events), 3.0 * len(groups)),
                             squeeze=False)  # fmt: skip
    data: dict[str, Any] = {}
    for r, (label, loc, is_baseline) in enumerate(groups):
        colour = "grey" if is_baseline else "C3"
        data[label] = {}
        for c, ev in enumerate(events):
            ax = axes[r, c]
            sel = loc["event_id"] == ev
            if sel.sum() < 2:
                ax.set_axis_off()
                continue
            lat0, lon0 = float(loc["event_lat"][sel][0]), float(loc["event_lon"][sel][0])
            pts = local_km(loc["pred_lat"][sel], loc["pred_lon"][sel], lat0, lon0)
            sta = local_km(loc["station_lat"][sel], loc["station_lon"][sel], lat0, lon0)
            med = np.median(pts, axis=0)
            evals, evecs = np.linalg.eigh(np.cov(pts, rowvar=False))
            axes_km = 2.0 * np.sqrt(np.clip(evals[::-1], 0.0, None))  # 2σ semi-axes, major first
            angle = float(np.degrees(np.arctan2(evecs[1, -1], evecs[0, -1])))
            data[label][ev] = {
                "points_km": pts, "median_km": med, "axes_km": axes_km, "angle_deg": angle,
                "offset_km": float(np.hypot(*med)),
            }  # fmt: skip
            ax.add_patch(Ellipse(tuple(med), 2 * axes_km[0], 2 * axes_km[1], angle=angle, fill=False,
                                 color=colour, lw=1.5))  # fmt: skip
            ax.scatter(pts[:, 0], pts[:, 1], s=8, color=colour, label="station estimates")
            ax.scatter(sta[:, 0], sta[:, 1], marker="^", s=14, color="k", label="stations")
            ax.plot(*med, "x", color=colour, ms=8, label="median")
            ax.plot(0, 0, "*", color="gold", mec="k", ms=12, label="catalogue")
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_title(f"{ev}: {label}\nmedian off by {np.hypot(*med):.1f} km", fontsize=7)
            ax.tick_params(labelsize=6)
            if r == 0 and c == 0:
                ax.legend(fontsize=5)
    return Figure(
        "error_ellipses",
        "Fig. 16: per-event location from the station estimates (median, ×) with the 2σ ellipse of "
        "their spread, around the catalogue location (★), east/north km; the spec's first arm (the "
        "baseline) grey, the others red; lowest seed, the test events with the most stations",
        _png(fig),
        data,
    )


#: The report-specific figures by the name a spec's ``figures:`` lists.
FIGURES: dict[FigureName, Callable[[ExperimentResult], Figure]] = {
    "modality_errors": modality_errors,
    "alpha_traces": alpha_traces,
    "variance_shift": variance_shift,
    "modality_deltas": modality_deltas,
    "location_breakdown": location_breakdown,
    "variance_vs_error": variance_vs_error,
    "error_ellipses": error_ellipses,
}
