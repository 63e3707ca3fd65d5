"""Prefect flow: curate waveforms + inventory + events into the seismic spectrogram store.

Thin wiring over :mod:`pipeline.seismic`: metadata once, waveform files fanned out in
batches (tasks with retries on I/O) on the run's task runner (threads, or Dask: see
:func:`flows.runners.make_task_runner`), appends done in order by one writer (build aside, swap).

:func:`resolve_job` turns a catalog entry or direct arguments into one :class:`SeismicJob`;
:func:`curate_seismic_job` runs that job, as this flow or (``prefect=False``) with the
library's :func:`~pipeline.seismic.curate.curate_seismic`, and publishes it either way with
the same :func:`flows.publishing.publish_version`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.publishing import publish_version, publish_version_task
from flows.runners import io_task_options, make_task_runner, quiet_product_errors
from pipeline.errors import InputError
from pipeline.publishing.zarr_io import check_target, target_lock
from pipeline.seismic.batch import TraceBatch, process_files
from pipeline.seismic.curate import CurationSummary, curate_seismic, input_checksums_for
from pipeline.seismic.store import SeismicStoreWriter
from pipeline.seismic.windows import metadata_for
from schemas.catalog import load_catalog
from schemas.seismic import EMIN_KIND as SEISMIC_KIND
from schemas.seismic import SeismicCurationParams, SeismicInputs


@task(**io_task_options())
def load_metadata_task(inputs: SeismicInputs, params: SeismicCurationParams) -> Any:
    """Inventory, catalog, picks and travel-time table (retried: file I/O)."""
    return metadata_for(inputs, params)


@task(**io_task_options())
def process_batch_task(
    files: list[Path], meta: Any, params: SeismicCurationParams, skip: frozenset[str]
) -> TraceBatch:
    """Read one batch of waveform files and compute its spectrograms."""
    return process_files(files, meta, params, skip_ids=skip)


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


class SeismicJob(NamedTuple):
    """Everything one curate-seismic run needs, whether it came from the catalog or from arguments."""

    inputs: SeismicInputs
    params: SeismicCurationParams
    target: Path
    publish: str | None
    root: str | None


def resolve_job(
    entry: str | None,
    catalog: str,
    inputs: SeismicInputs | None,
    params: SeismicCurationParams | None,
    out: str | None,
    publish: str | None = None,
    root: str | None = None,
) -> SeismicJob:
    """Inputs/params/output/publication from a catalog entry, or from direct arguments."""
    if entry is not None:
        cat = load_catalog(catalog)
        cat_inputs, cat_params, cat_out = cat.seismic_job(entry)
        cat_publish, cat_root = cat.publication(entry)
        return SeismicJob(
            cat_inputs,
            params or cat_params,
            Path(out) if out else cat_out,
            publish or cat_publish,
            root or cat_root,
        )
    if inputs is None or out is None:
        raise ValueError("give either `entry` (a catalog name) or both `inputs` and `out`")
    return SeismicJob(inputs, params or SeismicCurationParams(), Path(out), publish, root)


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


@flow(name="curate-seismic")
def curate_seismic_flow(
    waveforms: list[str] | None = None,
    inventory: str | None = None,
    events: str | None = None,
    out: str | None = None,
    picks: str | None = None,
    params: SeismicCurationParams | None = None,
    batch_files: int = 32,
    publish: str | None = None,
    root: str | None = None,
    cluster: str | None = None,
    workers: int = 1,
    inputs: SeismicInputs | None = None,
    entry: str | None = None,
    catalog: str = "data_catalog.yaml",
) -> CurationSummary:
    """Curate (or append to) the seismic spectrogram store at ``out``.

    Inputs come from ``inputs``, or the ``waveforms``/``inventory``/``events``/``picks`` paths,
    or a catalog ``entry`` (whose ``path`` is the default ``out`` and which publishes under its
    own name unless it opts out). With ``publish``, the resulting store is also published as an
    immutable version of that dataset name in the dataset ``root`` (identical content re-uses
    its version). Batches of ``batch_files`` waveform files are processed concurrently: in
    threads, or on Dask with ``workers >= 2`` (a local cluster) or ``cluster="tcp://host:8786"``
    (an existing one).
    """
    inputs = inputs or _inputs_from_paths(waveforms, inventory, events, picks)
    job = resolve_job(entry, catalog, inputs, params, out, publish, root)
    inputs, params, target = job.inputs, job.params, job.target
    check_target(target, kind=SEISMIC_KIND, append=True, root=job.root)
    meta: Any = load_metadata_task(inputs, params)
    with target_lock(target):
        summary = _write_and_publish(job, meta, batch_files=batch_files, cluster=cluster, workers=workers)
    create_markdown_artifact(
        key="curate-seismic-summary",
        markdown=summary_markdown(summary.counts, target, summary.published),
        description="seismic curation counts",
    )
    return summary


def _write_and_publish(
    job: SeismicJob, meta: Any, *, batch_files: int, cluster: str | None, workers: int
) -> CurationSummary:
    """Append the new traces (under the caller's lock on the target), then publish: the flow's body."""
    inputs, params, target = job.inputs, job.params, job.target
    writer = SeismicStoreWriter(target, params, root=job.root)
    writer.add(TraceBatch.empty(meta.rejects))
    skip = frozenset(writer.existing_ids)
    files = sorted(inputs.waveforms)
    with make_task_runner(cluster, workers) as runner:
        shared = {"meta": meta, "params": params, "skip": skip}
        futures = [
            runner.submit(process_batch_task, {"files": files[i : i + batch_files], **shared})
            for i in range(0, len(files), batch_files)
        ]
        try:
            for fut in futures:
                writer.add(fut.result())
            published = writer.commit(input_checksums_for(inputs))
        except BaseException:
            writer.abort()
            raise
    summary = CurationSummary.of(writer, out=target, published=published, n_files=len(files))
    if job.publish is not None:
        summary.version_store = publish_version_task(str(target), name=job.publish, root=job.root).store
    return summary


def curate_seismic_job(
    job: SeismicJob,
    *,
    prefect: bool = True,
    batch_files: int = 32,
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
            batch_files=batch_files,
            workers=workers,
            cluster=cluster,
        )
    if workers > 1 or cluster is not None:
        raise InputError(
            "Dask workers/cluster need the Prefect flow",
            fix="--workers/--cluster fan batches out through the flow: drop --no-prefect, or drop them",
        )
    with target_lock(job.target):
        summary = curate_seismic(job.inputs, job.target, job.params, batch_files=batch_files, root=job.root)
        if job.publish is not None:
            summary.version_store = publish_version(str(job.target), name=job.publish, root=job.root).store
    return summary
