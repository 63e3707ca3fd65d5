"""The experiment report: report.md + a self-contained report.html (figures embedded), PNGs.

Beside every finding of the report it puts this run's verdict and numbers; every number in
it is recomputed from ``results.csv`` (``tests`` check that).
"""

from __future__ import annotations

import base64
import html
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.figures import FIGURES, FigureUnavailable, metric_bars
from experiments.result import ExperimentResult, Figure
from pipeline.version import code_version

__all__ = ["make_figures", "verdict_table", "write_report"]

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
    """One row per comparison × metric × cell: difference, intervals, p-values, verdict.

    Comparison ``b − a`` names its two arms; ``mean b``/``mean a`` are their means (one pair of
    columns for every row, not one column per arm, which left the other rows empty).
    """
    rows = []
    for c, cell in zip(result.comparisons, result.cells, strict=True):
        rows.append({
            "comparison": f"{c.arm_b} − {c.arm_a}", "cell": _cell_label(cell), "metric": c.metric,
            "seeds": c.n_seeds, "mean b": c.mean_b, "mean a": c.mean_a, "diff (b − a)": c.mean_diff, "95% bootstrap CI": f"[{c.ci_low:+.4g}, {c.ci_high:+.4g}]",
            "95% t CI": f"[{c.t_low:+.4g}, {c.t_high:+.4g}]", "p Wilcoxon": c.p_wilcoxon,
            "p paired t": c.p_ttest, "p Holm (t)": c.p_holm, "p Wilcoxon Holm": c.p_holm_wilcoxon,
            "verdict": "significant" if c.significant else "not significant",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def make_figures(result: ExperimentResult) -> tuple[list[Figure], list[str]]:
    """The metric bars of every compared metric, then the spec's report figures; and a note
    for each report figure that could not be drawn (:class:`FigureUnavailable`)."""
    figures = [metric_bars(result, m) for m in dict.fromkeys(c.metric for c in result.comparisons)]
    notes = []
    for name in result.spec.figures:
        try:
            figures.append(FIGURES[name](result))
        except FigureUnavailable as exc:
            notes.append(f"figure {name} not drawn: {exc}")
    return figures, notes


def write_report(result: ExperimentResult) -> Path:
    """Write report.md, report.html and the figures (``fig<i>_<name>.png``, also kept in
    ``result.figures``); returns the HTML path."""
    folder = result.folder
    drawn, notes = make_figures(result)
    result.figures = drawn
    figures = {f"fig{i + 1}_{f.name}.png": f for i, f in enumerate(drawn)}
    for stale in folder.glob("fig*.png"):  # an earlier report's, of this experiment folder
        stale.unlink()
    for file, f in figures.items():
        (folder / file).write_bytes(f.png)
    tuning = pd.DataFrame(result.tuning).drop(columns=["folder"], errors="ignore")
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
        + "\n## Figures\n\n" + "".join(f"![{n}]({n})\n\n*{f.caption}*\n\n" for n, f in figures.items())
        + "".join(f"- {n}\n" for n in notes) + ("\n" if notes else "")
        + ("## Per-modality tuning (best trial per modality)\n\n" + _md_table(tuning) + "\n" if len(tuning) else "")
        + "## Sentences\n\n" + "".join(f"- {c.sentence()}\n" for c in result.comparisons)
        + "\n## Dataset\n\n```\n" + json.dumps(table1, indent=1, default=str)[:4000] + "\n```\n"
        + "\n## Spec\n\n```json\n" + json.dumps(result.spec.model_dump(mode="json"), indent=1) + "\n```\n"
    )  # fmt: skip
    (folder / "report.md").write_text(md)
    imgs = (
        "<h2>Figures</h2>"
        + "".join(
            f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{base64.b64encode(f.png).decode()}">'
            f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
            for n, f in figures.items()
        )
        + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    )
    if len(tuning):
        imgs += "<h2>Per-modality tuning (best trial per modality)</h2>" + tuning.to_html(
            index=False, escape=True
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
