"""The seismic curation entry point: metadata once, waveform files in work units, one writer.

:func:`curate_seismic` is the library route (and ``emin curate seismic --no-prefect``): units
one after the other in this process. :func:`curate_units` is the one driver both routes share:
the ``curate-seismic`` flow calls it inside one Prefect task with a :data:`UnitRunner` that
fans the units out as Dask futures (:func:`flows.runners.run_units_on_cluster`).
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.checksums import file_sha256
from pipeline.cpus import local_threads
from pipeline.errors import InputError
from pipeline.publishing.zarr_io import check_target, open_store, target_lock
from pipeline.seismic.batch import ProcessedUnit, UnitHead, UnitJob, process_unit, unit_head
from pipeline.seismic.store import Placement, SeismicStoreWriter, UnitWritten, WriteHook, write_unit
from pipeline.seismic.units import DEFAULT_UNIT_MB, WorkUnit, plan_units
from pipeline.seismic.windows import SeismicMetadata, metadata_for
from schemas.seismic import EMIN_KIND, SeismicCurationParams, SeismicInputs

UnitRunner = Callable[
    [Sequence[WorkUnit], UnitJob, Callable[[UnitHead], Placement]], Generator[UnitWritten, None, None]
]
"""Runs units: processes each, places it through the callback (in unit order), writes it; yields
each :class:`UnitWritten` as it is done. :func:`run_here` or a Dask runner (flows)."""
ProgressCallback = Callable[[int, int], None]


@dataclass
class CurationSummary:
    """What one curation run did."""

    store: Path
    published: bool
    n_files: int
    n_added: int
    n_already_present: int
    n_new_rejects: int
    counts: dict[str, Any]
    timings_s: dict[str, float]
    version_store: str | None = None  # set when the store was also published as a version

    @classmethod
    def of(
        cls,
        writer: SeismicStoreWriter,
        *,
        out: str | Path,
        published: bool,
        n_files: int,
        timings_s: dict[str, float] | None = None,
    ) -> CurationSummary:
        """Summarise a committed writer, with the store's counts as published."""
        counts = dict(open_store(out).attrs.get("counts", {})) if Path(out).exists() else {}
        return cls(
            store=Path(out),
            published=published,
            n_files=n_files,
            n_added=len(writer.new_ids),
            n_already_present=writer.n_already_present,
            n_new_rejects=len(writer.new_rejects),
            counts=counts,
            timings_s=timings_s or {},
        )


def input_checksums_for(inputs: SeismicInputs, known: dict[str, str] | None = None) -> dict[str, str]:
    """``{"waveforms/<name>": "sha256:..."}`` plus inventory, events and picks.

    ``known``: checksums already computed by path (the units compute their files' with the reads).
    """
    known = known or {}
    out: dict[str, str] = {}
    for p in inputs.waveforms:
        if Path(p).exists():
            out[f"waveforms/{Path(p).name}"] = known.get(str(p)) or "sha256:" + file_sha256(p)
    out[f"inventory/{inputs.inventory.name}"] = "sha256:" + file_sha256(inputs.inventory)
    out[f"events/{inputs.events.name}"] = "sha256:" + file_sha256(inputs.events)
    if inputs.picks is not None:
        out[f"picks/{inputs.picks.name}"] = "sha256:" + file_sha256(inputs.picks)
    return out


def run_here(
    units: Sequence[WorkUnit],
    job: UnitJob,
    place: Callable[[UnitHead], Placement],
    *,
    threads: int | None = None,
) -> Generator[UnitWritten, None, None]:
    """The :data:`UnitRunner` of one process: units processed by ``threads`` threads (default one
    per CPU, :func:`~pipeline.cpus.local_threads`), placed in unit order and written by as many
    writer threads (:func:`write_placed`) while the next ones are processed.

    The threads overlap what holds the GIL (obspy's parsing of the files) with what releases it
    (filtering, FFTs, compression, file writes); at most ``2 * threads + 1`` processed units are
    in memory. Closing the generator (an error, Ctrl-C) cancels the units not started and waits
    for the running ones and the writes in flight, so nothing writes after the caller's abort.
    """
    n = max(1, min(threads or local_threads(), len(units)))
    with ThreadPoolExecutor(n, thread_name_prefix="emin-unit") as pool:
        ahead: deque[Future[ProcessedUnit]] = deque()

        def processed() -> Iterator[tuple[int, ProcessedUnit]]:
            for unit in units:
                while len(ahead) < n and unit.index + len(ahead) < len(units):
                    ahead.append(pool.submit(process_unit, units[unit.index + len(ahead)], job))
                yield unit.index, ahead.popleft().result()

        try:
            yield from write_placed(processed(), place, writers=n)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def write_placed(
    processed: Iterable[tuple[int, ProcessedUnit]],
    place: Callable[[UnitHead], Placement],
    *,
    writers: int,
) -> Generator[UnitWritten, None, None]:
    """Place processed units ``(index, result)`` in the order given and write them on ``writers``
    threads at once; yield each :class:`UnitWritten` in that order.

    Units write disjoint whole chunks (:func:`~pipeline.seismic.store.write_unit`), so writes
    in flight together do not touch the same file and the store's bytes do not depend on
    ``writers``; several in flight let zarr compress chunks on every core. Closing the generator
    waits for the writes in flight.
    """
    with ThreadPoolExecutor(writers, thread_name_prefix="emin-unit-writer") as pool:
        in_flight: deque[Future[UnitWritten]] = deque()
        try:
            for index, result in processed:
                placement = place(unit_head(result, index))
                while len(in_flight) >= writers:
                    yield in_flight.popleft().result()
                in_flight.append(pool.submit(write_unit, result, placement))
                del result
            while in_flight:
                yield in_flight.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def curate_units(
    writer: SeismicStoreWriter,
    inputs: SeismicInputs,
    meta: SeismicMetadata,
    *,
    unit_mb: float = DEFAULT_UNIT_MB,
    runner: UnitRunner = run_here,
    on_unit: ProgressCallback | None = None,
) -> tuple[bool, dict[str, float]]:
    """Plan the units, run them, commit the writer: ``(published, timings_s)``.

    ``on_unit(done, total)`` is called after every written unit (progress).
    """
    timings = {"read": 0.0, "preprocess": 0.0, "spectrogram": 0.0, "write": 0.0, "commit": 0.0}
    units = plan_units(inputs.waveforms, unit_mb)
    writer.add_rejects(meta.rejects)
    job = UnitJob(meta, writer.params, frozenset(writer.existing_ids))
    checksums: dict[str, str] = {}

    def place(head: UnitHead) -> Placement:
        for k, v in head.timings_s.items():
            timings[k] = timings.get(k, 0.0) + v
        checksums.update(head.checksums)
        return writer.place(head)

    try:
        with closing(runner(units, job, place)) as results:  # closed (its work settled) before an abort
            for done, written in enumerate(results, 1):
                writer.finish(written)
                if on_unit is not None:
                    on_unit(done, len(units))
        timings["write"] = writer.write_s
        t = time.perf_counter()
        published = writer.commit(input_checksums_for(inputs, checksums))
        timings["commit"] = time.perf_counter() - t
    except BaseException:
        writer.abort()
        raise
    return published, timings


def curate_seismic(
    inputs: SeismicInputs,
    out: str | Path,
    params: SeismicCurationParams | None = None,
    *,
    unit_mb: float = DEFAULT_UNIT_MB,
    hook: WriteHook | None = None,
    root: str | Path | None = None,
    threads: int | None = None,
) -> CurationSummary:
    """Curate waveforms + inventory + events into (or append to) the spectrogram store at ``out``.

    ``out`` must not exist, be an empty folder, or hold a seismic store (appended to); the
    append holds a lock on ``out`` and is swapped in atomically. ``threads``: units processed
    at once (:func:`run_here`; default one per CPU this process may use). The store does not
    depend on it.
    """
    params = params or SeismicCurationParams()
    if not inputs.waveforms:
        raise InputError("no waveform files given", fix="check the --waveforms glob matches files")
    check_target(Path(out), kind=EMIN_KIND, append=True, root=root)
    with target_lock(out):
        return _curate_locked(inputs, out, params, unit_mb=unit_mb, hook=hook, root=root, threads=threads)


def _curate_locked(
    inputs: SeismicInputs,
    out: str | Path,
    params: SeismicCurationParams,
    *,
    unit_mb: float,
    hook: WriteHook | None,
    root: str | Path | None,
    threads: int | None,
) -> CurationSummary:
    t = time.perf_counter()
    meta = metadata_for(inputs, params)
    t_meta = time.perf_counter() - t
    writer = SeismicStoreWriter(out, params, hook=hook, root=root)
    runner = functools.partial(run_here, threads=threads)
    published, timings = curate_units(writer, inputs, meta, unit_mb=unit_mb, runner=runner)
    return CurationSummary.of(
        writer, out=out, published=published, n_files=len(inputs.waveforms),
        timings_s={"metadata": t_meta, **timings},
    )  # fmt: skip
