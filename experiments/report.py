"""The experiment report: report.md + a self-contained report.html (figures embedded), PNGs.

Beside every finding of the report it puts this run's verdict and numbers; every number in
it is recomputed from ``results.csv`` (``tests`` check that).
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.result import ExperimentResult
from pipeline.version import code_version

__all__ = ["figure_metric", "verdict_table", "write_report"]

PACKAGES = ("torch", "numpy", "xarray", "zarr", "prefect", "scipy")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def _cell_label(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items()) or "all"


def verdict_table(result: ExperimentResult) -> pd.DataFrame:
    """One row per comparison × metric × cell: difference, intervals, p-values, verdict."""
    rows = []
    for c, cell in zip(result.comparisons, result.cells, strict=True):
        rows.append({
            "comparison": f"{c.arm_b} − {c.arm_a}", "cell": _cell_label(cell), "metric": c.metric,
            "seeds": c.n_seeds, f"mean {c.arm_a}": c.mean_a, f"mean {c.arm_b}": c.mean_b,
            "diff": c.mean_diff, "95% bootstrap CI": f"[{c.ci_low:+.4g}, {c.ci_high:+.4g}]",
            "95% t CI": f"[{c.t_low:+.4g}, {c.t_high:+.4g}]", "p Wilcoxon": c.p_wilcoxon,
            "p paired t": c.p_ttest, "p Holm (t)": c.p_holm, "p Wilcoxon Holm": c.p_holm_wilcoxon,
            "verdict": "significant" if c.significant else "not significant",
        })  # fmt: skip
    return pd.DataFrame(rows)


def figure_metric(result: ExperimentResult, metric: str) -> bytes:
    """PNG: for every comparison of ``metric`` (and grid cell), both sides' mean ± 95% t-interval
    over the seeds it was computed from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.stats

    def mean_ci(v: list[float]) -> tuple[float, float]:
        x = np.asarray([e for e in v if np.isfinite(e)], dtype=float)
        if x.size == 0:
            return np.nan, 0.0
        half = scipy.stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else 0.0
        return float(x.mean()), float(half)

    rows = [
        (f"{c.arm_b} vs {c.arm_a}" + (f"\n{_cell_label(cell)}" if cell else ""), c, va, vb)
        for c, cell, (va, vb) in zip(result.comparisons, result.cells, result.values, strict=True)
        if c.metric == metric
    ]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(rows) + 2), 3.6), dpi=110)
    x = np.arange(len(rows))
    for offset, side in ((-0.2, "a"), (0.2, "b")):
        stats = [mean_ci(va if side == "a" else vb) for _, _, va, vb in rows]
        names = sorted({(c.arm_a if side == "a" else c.arm_b) for _, c, _, _ in rows})
        ax.bar(x + offset, [m for m, _ in stats], 0.4, yerr=[h for _, h in stats], capsize=3,
               label=" / ".join(names))  # fmt: skip
    ax.set_xticks(x, [r[0] for r in rows], fontsize=7)
    ax.set_ylabel(metric, fontsize=8)
    ax.set_title(f"{result.spec.name}: {metric} (mean ± 95% CI over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_report(result: ExperimentResult) -> Path:
    """Write report.md, report.html and the figures; returns the HTML path."""
    folder = result.folder
    metrics = list(dict.fromkeys(c.metric for c in result.comparisons))
    figures: dict[str, bytes] = {}
    for i, m in enumerate(metrics):
        png = figure_metric(result, m)
        name = f"fig{i + 1}_{m.replace('.', '_')}.png"
        (folder / name).write_bytes(png)
        figures[name] = png
    table = verdict_table(result)
    findings = pd.DataFrame(
        [{"report's finding": f["claim"], "report says": f["report_says"], "here": f["verdict"],
          "evidence": "; ".join(f["evidence"]) or "no comparison ran"} for f in result.findings]
    )  # fmt: skip
    counts = result.results.status.value_counts().to_dict()
    table1 = result.dataset.attrs.get("table1_counts") or result.dataset.attrs.get("counts")
    head = (
        f"# {result.spec.name}: {result.spec.title}\n\n"
        f"- dataset: `{result.dataset.store}` (version `{result.dataset.version}`)\n"
        f"- budget: `{result.budget}`, seeds: {sorted(set(result.results.seed))}, runs: {counts}\n"
        f"- device: {result.device}; wall time {result.wall_time_s:.1f} s\n"
        f"- code version: `{code_version()}`; software: {json.dumps(_versions())}\n\n"
    )
    md = (
        head
        + "## Findings of the report, tested here\n\n" + _md_table(findings)
        + "\n## Comparisons (paired by seed; Holm-corrected across this experiment)\n\n" + _md_table(table)
        + "\n" + "".join(f"![{n}]({n})\n\n" for n in figures)
        + "## Sentences\n\n" + "".join(f"- {c.sentence()}\n" for c in result.comparisons)
        + "\n## Dataset\n\n```\n" + json.dumps(table1, indent=1, default=str)[:4000] + "\n```\n"
        + "\n## Spec\n\n```json\n" + json.dumps(result.spec.model_dump(mode="json"), indent=1) + "\n```\n"
    )  # fmt: skip
    (folder / "report.md").write_text(md)
    imgs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{base64.b64encode(b).decode()}"></figure>'
        for n, b in figures.items()
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + html.escape(f"{result.spec.name} report")
        + "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}</style></head><body>"
        + f"<h1>{html.escape(result.spec.name)}: {html.escape(result.spec.title)}</h1>"
        + "<pre>" + html.escape(head) + "</pre>"
        + "<h2>Findings of the report, tested here</h2>" + findings.to_html(index=False, escape=True)
        + "<h2>Comparisons</h2>" + table.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}")
        + imgs
        + "<h2>Sentences</h2><ul>" + "".join(f"<li>{html.escape(c.sentence())}</li>" for c in result.comparisons)
        + "</ul><h2>Spec</h2><pre>" + html.escape(json.dumps(result.spec.model_dump(mode="json"), indent=1))
        + "</pre></body></html>"
    )  # fmt: skip
    out = folder / "report.html"
    out.write_text(page)
    return out
