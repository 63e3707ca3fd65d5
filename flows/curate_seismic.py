"""Prefect flow: curate waveforms + inventory + events into the seismic spectrogram store.

Thin wiring over :mod:`pipeline.seismic.store`: metadata once, waveform files fanned out in
batches (tasks with retries on I/O) on the run's task runner (threads, or Dask: see
:func:`flows.runners.make_task_runner`), appends done in order by one writer (build aside, swap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.publishing import publish_version_task
from flows.runners import io_task_options, make_task_runner
from pipeline.seismic.batch import TraceBatch, process_files
from pipeline.seismic.curate import CurationSummary, input_checksums_for
from pipeline.seismic.store import SeismicStoreWriter
from pipeline.seismic.windows import metadata_for
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


@flow(name="curate-seismic")
def curate_seismic_flow(
    waveforms: list[str],
    inventory: str,
    events: str,
    out: str,
    picks: str | None = None,
    params: SeismicCurationParams | None = None,
    batch_files: int = 32,
    publish: str | None = None,
    root: str | None = None,
    cluster: str | None = None,
    workers: int = 1,
) -> CurationSummary:
    """Curate (or append to) the seismic spectrogram store at ``out``.

    With ``publish``, the resulting store is also published as an immutable version of that
    dataset name in the dataset ``root`` (identical content re-uses its version). Batches of
    ``batch_files`` waveform files are processed concurrently: in threads, or on Dask with
    ``workers >= 2`` (a local cluster) or ``cluster="tcp://host:8786"`` (an existing one).
    """
    params = params or SeismicCurationParams()
    inputs = SeismicInputs(
        waveforms=sorted(Path(w) for w in waveforms),
        inventory=Path(inventory),
        events=Path(events),
        picks=None if picks is None else Path(picks),
    )
    meta: Any = load_metadata_task(inputs, params)
    writer = SeismicStoreWriter(out, params)
    writer.add(TraceBatch.empty(meta.rejects))
    skip = frozenset(writer.existing_ids)
    files = list(inputs.waveforms)
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
    summary = CurationSummary.of(writer, out=out, published=published, n_files=len(files))
    create_markdown_artifact(
        key="curate-seismic-summary",
        markdown=summary_markdown(summary.counts, Path(out), published),
        description="seismic curation counts",
    )
    if publish is not None:
        summary.version_store = publish_version_task(str(out), name=publish, root=root).store
    return summary
