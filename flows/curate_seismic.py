"""Prefect flow: curate waveforms + inventory + events into the seismic spectrogram store.

Thin wiring over :mod:`pipeline.seismic`, three coarse tasks: ``load-metadata`` (retried on
I/O), ``curate-units`` (the waveform files in work units sized by bytes: on Dask, plain
futures over the whole cluster from inside the task, :func:`flows.runners.unit_runner`; with
threads, one after the other; each unit writes its own whole chunks; placed, committed and
swapped in by one writer) and ``publish-version``. The task runner is the run's (threads, or
Dask: see :func:`flows.runners.make_task_runner`).

:func:`flows.jobs.resolve_job` turns a catalog entry or direct arguments into one :class:`~flows.jobs.SeismicJob`;
:func:`curate_seismic_job` runs that job, as this flow or (``prefect=False``) with the
library's :func:`~pipeline.seismic.curate.curate_seismic`, and publishes it either way with
the same :func:`flows.publishing.publish_version`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import FanOutProgress, publish_curation_artifacts
from flows.form import OptStr, ui
from flows.jobs import SeismicJob, resolve_job
from flows.progress import logs_warnings
from flows.publishing import publish_version, publish_version_task
from flows.runners import io_task_options, make_task_runner, quiet_product_errors, unit_runner
from pipeline.errors import InputError
from pipeline.publishing.zarr_io import check_target, target_lock
from pipeline.seismic.curate import CurationSummary, curate_seismic, curate_units
from pipeline.seismic.store import SeismicStoreWriter
from pipeline.seismic.units import DEFAULT_UNIT_MB
from pipeline.seismic.windows import metadata_for
from schemas.seismic import EMIN_KIND as SEISMIC_KIND
from schemas.seismic import SeismicCurationParams, SeismicInputs


@task(**io_task_options())
def load_metadata_task(inputs: SeismicInputs, params: SeismicCurationParams) -> Any:
    """Inventory, catalog, picks and travel-time table (retried: file I/O)."""
    return metadata_for(inputs, params)


@task(name="curate-units", cache_policy=NO_CACHE)
def curate_units_task(job: SeismicJob, meta: Any, unit_mb: float) -> CurationSummary:
    """Every work unit (Dask futures over the cluster when on a worker), then the commit and swap.

    Progress: one log line and a ``curate-seismic-progress`` artifact update per 10 % of units, at
    most once a second, and at the end.
    """
    writer = SeismicStoreWriter(job.target, job.params, root=job.root)
    progress = FanOutProgress(
        "waveforms", key="curate-seismic-progress", stage="waveform units", what="work units written",
        logger=get_run_logger(),
    )  # fmt: skip
    published, timings = curate_units(writer, job.inputs, meta, unit_mb=unit_mb, runner=unit_runner(),
                                      on_unit=progress)  # fmt: skip
    return CurationSummary.of(
        writer, out=job.target, published=published, n_files=len(job.inputs.waveforms), timings_s=timings
    )


def summary_markdown(counts: dict[str, Any], store: Path, published: bool) -> str:
    """Counts per sensor type / split and the distance histogram as markdown."""
    lines = [f"# Seismic curation: `{store}`", "", f"published: **{published}**", ""]
    lines += ["| sensor type / split | traces |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.get("per_sensor_type_split", {}).items()]
    lines += ["", f"events: {counts.get('events', 0)}, traces: {counts.get('traces', 0)}, "
              f"rejects: {counts.get('rejects', 0)}", ""]  # fmt: skip
    lines += ["| reject reason | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.get("rejects_per_reason", {}).items()]
    hist = counts.get("distance_histogram_km", {"edges": [], "counts": []})
    lines += ["", "| distance (km) | traces |", "|---|---|"]
    edges = hist["edges"]
    lines += [f"| {edges[i]}-{edges[i + 1]} | {n} |" for i, n in enumerate(hist["counts"])]
    return "\n".join(lines)


def _inputs_from_paths(
    waveforms: list[str] | None, inventory: str | None, events: str | None, picks: str | None
) -> SeismicInputs | None:
    if waveforms is None and inventory is None and events is None:
        return None
    if waveforms is None or inventory is None or events is None:
        raise ValueError("give all of `waveforms`, `inventory` and `events` (or `inputs`, or `entry`)")
    return SeismicInputs(
        waveforms=sorted(Path(w) for w in waveforms),
        inventory=Path(inventory),
        events=Path(events),
        picks=None if picks is None else Path(picks),
    )


def _curate_run_name() -> str:
    """``curate-<entry>`` (or ``curate-<out stem>`` without an entry)."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    return f"curate-{p.get('entry') or Path(str(p.get('out') or 'seismic')).stem}"


@flow(name="curate-seismic", flow_run_name=_curate_run_name)
@logs_warnings
def curate_seismic_flow(
    waveforms: Annotated[list[str], ui("Waveform files")] = [],  # noqa: B006 - an explicit list default for the form
    inventory: Annotated[OptStr, ui("StationXML inventory")] = None,
    events: Annotated[OptStr, ui("Event catalog (QuakeML)")] = None,
    out: Annotated[OptStr, ui("Output store")] = None,
    picks: Annotated[OptStr, ui("Picks CSV")] = None,
    params: Annotated[SeismicCurationParams, ui("Curation parameters")] = SeismicCurationParams(),
    unit_mb: Annotated[float, ui("Work unit size (MB of waveform files)", gt=0)] = DEFAULT_UNIT_MB,
    publish: Annotated[OptStr, ui("Publish as dataset")] = None,
    root: Annotated[OptStr, ui("Dataset root")] = None,
    cluster: Annotated[OptStr, ui("Dask cluster address")] = None,
    workers: Annotated[int, ui("Workers", ge=1)] = 1,
    inputs: Annotated[SeismicInputs | None, ui("Inputs (advanced)")] = None,
    entry: Annotated[OptStr, ui("Catalog entry")] = None,
    catalog: Annotated[str, ui("Catalog file")] = "data_catalog.yaml",
) -> CurationSummary:
    """Curate (or append to) the seismic spectrogram store at ``out``.

    Inputs come from ``inputs``, or the ``waveforms``/``inventory``/``events``/``picks`` paths,
    or a catalog ``entry`` (whose ``path`` is the default ``out`` and which publishes under its
    own name unless it opts out). With ``publish``, the resulting store is also published as an
    immutable version of that dataset name in the dataset ``root`` (identical content re-uses
    its version). Work units of about ``unit_mb`` MB of waveform files are processed as Dask
    futures inside the ``curate-units`` task with ``workers >= 2`` (a local cluster) or
    ``cluster="tcp://host:8786"`` (an existing one), one after the other otherwise. The
    ``curate-seismic-summary`` artifact is written after publishing.

    Args:
        waveforms: Waveform files (miniSEED/SAC...), each path or glob one item; empty with `entry` or `inputs`.
        inventory: StationXML file with every station's coordinates and response.
        events: QuakeML event catalog (origins, magnitudes, horizontal errors).
        out: Path of the seismic Zarr store (appended to when it exists); default: the entry's `path`.
        picks: Optional CSV of P picks; without it P arrivals come from the travel-time table.
        params: Every curation parameter (report section 4 defaults); left at the defaults, an entry's own parameters are used.
        unit_mb: Size of a work unit in MB of waveform files (the fan-out's grain and the progress artifact's step).
        publish: Dataset name to publish the store as (a new immutable version); default: the entry's name.
        root: Dataset root for publishing (folder or fsspec URL); default: the catalog's, else $EMIN_DATA_ROOT or data/published.
        cluster: Address of an existing Dask scheduler (tcp://host:8786); empty = threads or a local cluster.
        workers: Unit workers: 1 = in the flow process, >= 2 = a local Dask cluster of that many processes.
        inputs: Advanced: a complete SeismicInputs instead of the path fields.
        entry: Name of a data_catalog.yaml entry. `inputs`/the path fields, `params` (when changed from the defaults), `out`, `publish` and `root` override it.
        catalog: Path of the catalog file that holds `entry`.
    """
    entry, cluster, out, publish, root = (
        entry or None,
        cluster or None,
        out or None,
        publish or None,
        root or None,
    )
    inventory, events, picks = inventory or None, events or None, picks or None
    params_given = None if params == SeismicCurationParams() else params
    waveforms_given = list(waveforms) or None
    inputs = inputs or _inputs_from_paths(waveforms_given, inventory, events, picks)
    job = resolve_job("seismic", entry, catalog, inputs, params_given, out, publish, root)
    inputs, params, target = job.inputs, job.params, job.target
    check_target(target, kind=SEISMIC_KIND, append=True, root=job.root)
    meta: Any = load_metadata_task(inputs, params)
    with target_lock(target):
        return _write_and_publish(job, meta, unit_mb=unit_mb, cluster=cluster, workers=workers)


def _write_and_publish(
    job: SeismicJob, meta: Any, *, unit_mb: float, cluster: str | None, workers: int
) -> CurationSummary:
    """Curate the units (under the caller's lock on the target), then publish: the flow's body."""
    target = job.target
    with make_task_runner(cluster, workers) as runner:
        summary: CurationSummary = runner.submit(
            curate_units_task, {"job": job, "meta": meta, "unit_mb": unit_mb}
        ).result()
    version = None
    if job.publish is not None:
        version = publish_version_task(str(target), name=job.publish, root=job.root)
        summary.version_store = version.store
    extra = summary_markdown(summary.counts, target, summary.published).split("\n", 3)[-1]  # counts tables
    publish_curation_artifacts("seismic", target, version, root=job.root, extra=extra)  # after publishing
    return summary


def curate_seismic_job(
    job: SeismicJob,
    *,
    prefect: bool = True,
    unit_mb: float = DEFAULT_UNIT_MB,
    workers: int = 1,
    cluster: str | None = None,
) -> CurationSummary:
    """Run one resolved job: as the ``curate-seismic`` flow, or (``prefect=False``) in this process.

    Both routes write the same store and, when ``job.publish`` is set, publish it with the same
    :func:`flows.publishing.publish_version`.
    """
    if prefect:
        quiet_product_errors()
        return curate_seismic_flow(
            inputs=job.inputs,
            params=job.params,
            out=str(job.target),
            publish=job.publish,
            root=job.root,
            unit_mb=unit_mb,
            workers=workers,
            cluster=cluster,
        )
    if workers > 1 or cluster is not None:
        raise InputError(
            "Dask workers/cluster need the Prefect flow",
            fix="--workers/--cluster fan units out through the flow: drop --no-prefect, or drop them",
        )
    with target_lock(job.target):
        summary = curate_seismic(job.inputs, job.target, job.params, unit_mb=unit_mb, root=job.root)
        if job.publish is not None:
            summary.version_store = publish_version(str(job.target), name=job.publish, root=job.root).store
    return summary
