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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from experiments.runner import ExperimentResult

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
            "p paired t": c.p_ttest, "p Holm": c.p_holm,
            "verdict": "significant" if c.significant else "not significant",
        })  # fmt: skip
    return pd.DataFrame(rows)


def figure_metric(result: ExperimentResult, metric: str) -> bytes:
    """PNG: mean ± 95% t-interval across seeds of ``metric`` per arm and grid cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.stats

    df = result.results[result.results.status != "failed"]
    factors = [c for c in df.columns if c.startswith("factor.")]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    arms = list(dict.fromkeys(df.arm))
    labels = sorted({_cell_label({f.removeprefix("factor."): r[f] for f in factors if pd.notna(r[f])})
                     for _, r in df.iterrows()})  # fmt: skip
    x = np.arange(len(labels))
    width = 0.8 / max(len(arms), 1)
    for i, arm in enumerate(arms):
        sub = df[df.arm == arm]
        means, halves = [], []
        for lab in labels:
            vals = [
                r[metric] for _, r in sub.iterrows()
                if _cell_label({f.removeprefix("factor."): r[f] for f in factors if pd.notna(r[f])}) == lab
            ]  # fmt: skip
            v = np.asarray([v for v in vals if np.isfinite(v)], dtype=float)
            means.append(v.mean() if v.size else np.nan)
            halves.append(
                scipy.stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
            )
        ax.bar(x + i * width - 0.4 + width / 2, means, width, yerr=halves, capsize=3, label=arm)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    ax.set_title(f"{result.spec.name}: {metric} (mean ± 95% CI over seeds)", fontsize=9)
    ax.legend(fontsize=8)
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
    metrics = list(dict.fromkeys(m for c in result.spec.comparisons for m in c.metrics))
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
        f"- software: {json.dumps(_versions())}\n\n"
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
