"""Every Prefect artifact the flows publish: markdown with embedded PNGs, tables, progress.

Builders (``*_markdown``, ``*_rows``) are pure functions returning strings/rows, so they
are tested without a Prefect API; the ``publish_*`` functions create the artifacts and must
run inside a flow or task run. Curation artifacts are written **after** the publish step,
from the :class:`~pipeline.publishing.versions.PublishedVersion`, so they name the version
id, its path, counts, the manifest checksum, the STAC item and the dataset report (written
beside the version, :func:`pipeline.reports.write_dataset_report`).

Artifact keys (stable, one per kind, so the UI's *Artifacts* page tracks their history):

=========================  =========================================================
``curate-hsi-summary``     markdown: headline, Table 1, Fig 5, map, spectra, folds
``curate-hsi-table1``      table: Table 1
``curate-seismic-summary`` markdown: headline, counts, map, histograms, spectrograms
``train-hsi-summary``      markdown: headline, metrics, learning curves, confusion, errors
``train-seismic-summary``  markdown: headline, metrics, learning curves, error CDF, by distance
``train-*-history``        table: the per-epoch history
``train-*-progress``       progress: epochs done / planned
``curate-seismic-progress`` progress: work units (waveform files) written / total
``curate-hsi-progress``     progress: rasters extracted / total
``curate-hsi-extract-<r>``  progress: window groups of raster ``<r>`` read / total
=========================  =========================================================
"""

from __future__ import annotations

import csv
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from pipeline.publishing.versions import PublishedVersion
from pipeline.reports.html import data_uri

__all__ = [
    "EpochProgress",
    "ExtractionProgress",
    "FanOutProgress",
    "ProgressArtifact",
    "curation_headline",
    "curation_markdown",
    "headline_markdown",
    "history_rows",
    "img_markdown",
    "publish_curation_artifacts",
    "publish_training_artifacts",
    "submit_figures",
    "training_markdown",
]

log = logging.getLogger(__name__)

#: Run-folder plots embedded in training summaries, in order (those present are used).
TRAINING_PLOTS = {
    "learning_curves.png": "Learning curves",
    "confusion_matrix.png": "Confusion matrix (test, fused)",
    "modality_errors.png": "Test macro error per modality",
    "location_error_cdf.png": "Location-error CDF (test)",
    "error_by_distance.png": "Location error by distance bin (test)",
}


def img_markdown(png: bytes, alt: str) -> str:
    """A markdown image with the PNG inline as a ``data:`` URI (Prefect's UI renders it)."""
    return f"![{alt}]({data_uri(png)})"


def _md_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    cols: list[str] = []
    for r in rows:
        cols += [str(k) for k in r if str(k) not in cols]

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# curation
# ---------------------------------------------------------------------------------------------


def curation_headline(
    version: PublishedVersion | None, store: str | Path, *, root: str | None, report: str | None = None
) -> dict[str, Any]:
    """Headline facts of a curation run: the published version's, or (not published) the working store's."""
    if version is None:
        return {"dataset": None, "version": None, "published": False, "store": str(store)}
    from pipeline.reports.dataset import published_facts

    facts = published_facts(version.name, version.version, root=root)
    facts["published"] = True
    facts["new_version"] = version.created
    facts["working_copy"] = str(store)
    if report is not None:
        facts["report"] = report
    return facts


def headline_markdown(facts: Mapping[str, Any], title: str) -> str:
    """``# <title>: <dataset> <version>`` and the facts as a bullet list."""
    if not facts.get("published"):
        return f"# {title}: `{facts['store']}` (not published)\n\n- written to `{facts['store']}`\n"
    state = "new version" if facts.get("new_version", True) else "unchanged content, existing version"
    counts = ", ".join(f"{k} **{facts[k]}**" for k in ("samples", "traces", "rejected") if k in facts)
    lines = [
        f"# {title}: {facts['dataset']} `{facts['version']}`",
        "",
        f"- **published** `{facts['path']}` ({state})",
        f"- {counts}",
        f"- manifest checksum `{facts['manifest_sha256']}`, content hash `{facts['content_hash']}`",
        f"- STAC item `{facts['stac_item']}` (collection `{facts['stac_collection']}`)",
        f"- dataset report `{facts['report']}` (`emin datasets report {facts['dataset']} "
        f"--version {facts['version']} --open`)",
        f"- working copy `{facts['working_copy']}`" if facts.get("working_copy") else "",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def curation_markdown(
    title: str,
    facts: Mapping[str, Any],
    *,
    table: Sequence[Mapping[str, Any]] = (),
    table_title: str = "Table 1: samples per class and modality",
    figures: Mapping[str, tuple[str, bytes]] | None = None,
    extra: str = "",
) -> str:
    """Headline, a table, the dataset figures (inline PNGs) and any extra markdown."""
    parts = [headline_markdown(facts, title)]
    if table:
        parts.append(f"## {table_title}\n\n{_md_table(table)}\n")
    if extra:
        parts.append(extra)
    for fig_title, png in (figures or {}).values():
        parts.append(f"## {fig_title}\n\n{img_markdown(png, fig_title)}\n")
    return "\n".join(parts)


Figures = dict[str, tuple[str, bytes]]


def submit_figures(runner: Any, store: str | Path) -> Callable[[], Figures]:
    """Start drawing the dataset figures of ``store``; the returned call waits for them.

    On a Dask task runner each figure is a plain Dask job (figures are seconds of serial
    work, drawn in parallel over the cluster while the flow publishes); with threads they
    are drawn here, when the call is made. Call it before the runner's cluster closes.
    """
    from prefect_dask.task_runners import DaskTaskRunner

    from pipeline.reports.dataset import draw_store_figure, figure_keys

    keys = figure_keys(store)
    if not isinstance(runner, DaskTaskRunner):
        return lambda: {key: draw_store_figure(store, key) for key in keys}
    jobs = {key: runner.client.submit(draw_store_figure, str(store), key, pure=False) for key in keys}
    return lambda: {key: job.result() for key, job in jobs.items()}


def publish_curation_artifacts(
    kind: str,
    store: str | Path,
    version: PublishedVersion | None,
    *,
    root: str | None,
    extra: str = "",
    figures: Figures | None = None,
) -> dict[str, Any]:
    """After publishing: write the dataset report beside the version, then the summary (+ Table 1).

    ``kind`` is ``"hsi"`` or ``"seismic"``; ``store`` the working store (used for figures
    and the headline when nothing was published); ``figures``: already drawn
    (:func:`submit_figures`), else drawn here. Returns the headline facts.
    """
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from pipeline.publishing.zarr_io import open_store
    from pipeline.reports.dataset import table1_rows, write_dataset_report

    if figures is None:  # drawn once: the report and the summary share them
        figures = submit_figures(None, store)()
    ds = open_store(store)
    report = None
    if version is not None:
        try:
            report = write_dataset_report(version.name, version.version, root=root, figs=figures)
        except Exception as exc:
            log.warning("dataset report not written: %s", exc)
    facts = curation_headline(version, store, root=root, report=report)
    title = f"curate-{kind}"
    name = facts.get("dataset") or Path(str(store)).name
    ident = f"{name} {facts['version']}" if facts.get("version") else f"{store} (not published)"
    table = table1_rows(ds) if kind == "hsi" else []
    create_markdown_artifact(
        key=f"curate-{kind}-summary",
        markdown=curation_markdown(title, facts, table=table, figures=figures, extra=extra),
        description=f"{kind.upper()} curation of {ident}: counts, checksums, figures",
    )
    if table:
        create_table_artifact(
            key="curate-hsi-table1",
            table=list(table),
            description=f"Table 1 of {ident}: samples per class and modality",
        )
    return facts


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def history_rows(history: Sequence[Mapping[str, Any]] | str | Path) -> list[dict[str, Any]]:
    """The per-epoch history (rows, or a run folder's ``history.csv``) with numbers rounded for display."""
    if isinstance(history, str | Path):
        with Path(history).open(newline="") as fh:
            rows: list[dict[str, Any]] = [dict(r) for r in csv.DictReader(fh)]
    else:
        rows = [dict(r) for r in history]
    out = []
    for r in rows:
        row: dict[str, Any] = {}
        for k, v in r.items():
            try:
                f = float(v)
            except (TypeError, ValueError):
                row[k] = v
                continue
            row[k] = int(f) if k == "epoch" else (None if math.isnan(f) else float(f"{f:.6g}"))
        out.append(row)
    return out


def training_markdown(
    summary: str, *, run_dir: str | Path | None, dataset: Mapping[str, Any] | None = None
) -> str:
    """The run's summary, the dataset version it trained on, and its plots inline."""
    parts = []
    if dataset:
        parts.append(
            f"**dataset** {dataset.get('dataset')} `{dataset.get('version')}` (store `{dataset.get('store')}`)\n"
        )
    parts.append(summary)
    if run_dir is not None:
        for fname, title in TRAINING_PLOTS.items():
            p = Path(run_dir) / fname
            if p.exists():
                parts.append(f"## {title}\n\n{img_markdown(p.read_bytes(), title)}\n")
    return "\n".join(parts)


def publish_training_artifacts(
    kind: str, out: Mapping[str, Any], *, history: Sequence[Mapping[str, Any]] | None = None
) -> None:
    """``train-<kind>-summary`` (markdown with plots) and ``train-<kind>-history`` (per-epoch table)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    run_dir = out.get("run_dir")
    dataset = out.get("dataset")
    where = f" on {dataset['dataset']} {dataset['version']}" if dataset and dataset.get("version") else ""
    create_markdown_artifact(
        key=f"train-{kind}-summary",
        markdown=training_markdown(str(out["summary"]), run_dir=run_dir, dataset=dataset),
        description=f"{kind.upper()} training run{where}: metrics and plots (run folder {run_dir})",
    )
    rows = history_rows(history) if history is not None else None
    if rows is None and run_dir is not None and (Path(run_dir) / "history.csv").exists():
        rows = history_rows(Path(run_dir) / "history.csv")
    if rows:
        create_table_artifact(
            key=f"train-{kind}-history", table=rows, description=f"per-epoch history of the {kind} run{where}"
        )


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------


class ProgressArtifact:
    """A Prefect progress artifact (0–100 %) created on first use and updated in place.

    Outside a flow/task run (or if the API refuses) it does nothing: progress is never a
    reason for a run to fail.
    """

    def __init__(self, key: str, description: str) -> None:
        self.key = key
        self.description = description
        self.id: UUID | None = None
        self.last: float | None = None

    def update(self, percent: float, description: str | None = None) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        percent = float(min(max(percent, 0.0), 100.0))
        try:
            if self.id is None:
                self.id = cast(  # called from sync code: Prefect's async_dispatch returns the UUID itself
                    UUID,
                    create_progress_artifact(
                        progress=percent, key=self.key, description=description or self.description
                    ),
                )
            elif percent != self.last:
                update_progress_artifact(self.id, progress=percent, description=description)
        except Exception as exc:
            log.debug("progress artifact %s not updated: %s", self.key, exc)
            return
        self.last = percent


@dataclass(frozen=True)
class Pace:
    """When a fan-out reports: every ``step`` percent, at most once per ``min_interval_s`` seconds
    of ``clock``, and always at the end."""

    step: float = 10.0
    min_interval_s: float = 1.0
    clock: Callable[[], float] = time.monotonic


class FanOutProgress:
    """The ``on_unit(done, total)`` callback of a fine-grained fan-out inside one task.

    Every call tells the stage listeners (the terminal's bars, :mod:`flows.progress`) under
    ``stage``; at the ``pace`` (by default every 10 %, at most once a second, and at the end)
    one log line ``"<label>: done/total <what> (p%)"`` through ``logger`` and an update of the
    ``key`` progress artifact. A fan-out of hundreds of units costs a handful of API calls, and
    a short one (a raster read in under a second) one report at the end, not one per unit: each
    report is a request to the API from the worker that runs the task, and on a small cluster
    those requests take CPU from the fan-out itself.
    """

    def __init__(
        self,
        label: str,
        *,
        key: str,
        stage: str,
        what: str,
        logger: Any = None,
        pace: Pace = Pace(),
        artifact: bool = True,
    ) -> None:
        self.label = label
        self.stage = stage
        self.what = what
        self.logger = logger
        self.pace = pace
        self.artifact = ProgressArtifact(key, f"{label}: {what}") if artifact else None
        self.next = 0.0
        self.last_report = pace.clock()

    def __call__(self, done: int, total: int) -> None:
        from flows.progress import notify_stage

        notify_stage(self.stage, done, total)
        percent = 100.0 * done / total
        now = self.pace.clock()
        if done < total and (percent < self.next or now - self.last_report < self.pace.min_interval_s):
            return
        if self.logger is not None:
            self.logger.info("%s: %d/%d %s (%.0f%%)", self.label, done, total, self.what, percent)
        if self.artifact is not None:
            self.artifact.update(percent, f"{self.label}: {done}/{total} {self.what}")
        self.next = (percent // self.pace.step + 1) * self.pace.step
        self.last_report = now


class ExtractionProgress(FanOutProgress):
    """:class:`FanOutProgress` of one raster's window groups (``curate-hsi-extract-<raster>``)."""

    def __init__(
        self, raster: str, *, logger: Any = None, pace: Pace = Pace(), artifact: bool = True
    ) -> None:
        slug = re.sub(r"[^a-z0-9]+", "-", raster.lower()).strip("-") or "raster"
        super().__init__(
            raster, key=f"curate-hsi-extract-{slug}", stage=f"extract {raster} (windows)",
            what="window groups read", logger=logger, pace=pace, artifact=artifact,
        )  # fmt: skip


class EpochProgress:
    """The ``on_epoch(epoch, epochs, row)`` callback of a training flow run.

    Per epoch: one log line through the run logger and an update of the
    ``train-<kind>-progress`` artifact; then every listener (the terminal's progress bar,
    :mod:`flows.progress`) is called too. When training stops early the artifact is set to
    100 % by :meth:`finish`.
    """

    LOG_KEYS = ("train_loss", "train_ce", "train_mse", "train_emin", "val_macro_accuracy",
                "val_location_error_km_median", "alpha")  # fmt: skip

    def __init__(self, kind: str, *, logger: Any = None, artifact: bool = True) -> None:
        self.kind = kind
        self.logger = logger
        self.artifact = (
            ProgressArtifact(f"train-{kind}-progress", f"{kind} training: epochs done") if artifact else None
        )
        self.calls = 0

    def __call__(self, epoch: int, epochs: int, row: Mapping[str, float]) -> None:
        from flows.progress import notify_epoch

        self.calls += 1
        shown = ", ".join(
            f"{k} {row[k]:.4g}"
            for k in self.LOG_KEYS
            if k in row and row[k] is not None and not math.isnan(row[k])
        )
        if self.logger is not None:
            self.logger.info("epoch %d/%d: %s", epoch + 1, epochs, shown)
        if self.artifact is not None:
            self.artifact.update(
                100.0 * (epoch + 1) / epochs, f"{self.kind} training: epoch {epoch + 1}/{epochs}"
            )
        notify_epoch(epoch, epochs, row)

    def finish(self) -> None:
        """Mark the progress artifact complete (early stopping ends before the planned epochs)."""
        if self.artifact is not None and self.calls:
            self.artifact.update(100.0, f"{self.kind} training: done ({self.calls} epochs)")
