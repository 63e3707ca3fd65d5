"""The seismic curation entry point: metadata once, waveform files in batches, one writer.

:func:`curate_seismic` is the library route (and ``emin curate seismic --no-prefect``); the
``curate-seismic`` flow runs the same steps with the batches fanned out as Prefect tasks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.checksums import file_sha256
from pipeline.errors import InputError
from pipeline.publishing.zarr_io import check_target, open_store, target_lock
from pipeline.seismic.batch import TraceBatch, process_files
from pipeline.seismic.store import SeismicStoreWriter, WriteHook
from pipeline.seismic.windows import metadata_for
from schemas.seismic import EMIN_KIND, SeismicCurationParams, SeismicInputs


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


def input_checksums_for(inputs: SeismicInputs) -> dict[str, str]:
    """``{"waveforms/<name>": "sha256:..."}`` plus inventory, events and picks."""
    out: dict[str, str] = {}
    for p in inputs.waveforms:
        if Path(p).exists():
            out[f"waveforms/{Path(p).name}"] = "sha256:" + file_sha256(p)
    out[f"inventory/{inputs.inventory.name}"] = "sha256:" + file_sha256(inputs.inventory)
    out[f"events/{inputs.events.name}"] = "sha256:" + file_sha256(inputs.events)
    if inputs.picks is not None:
        out[f"picks/{inputs.picks.name}"] = "sha256:" + file_sha256(inputs.picks)
    return out


def curate_seismic(
    inputs: SeismicInputs,
    out: str | Path,
    params: SeismicCurationParams | None = None,
    *,
    batch_files: int = 32,
    hook: WriteHook | None = None,
    root: str | Path | None = None,
) -> CurationSummary:
    """Curate waveforms + inventory + events into (or append to) the spectrogram store at ``out``.

    ``out`` must not exist, be an empty folder, or hold a seismic store (appended to); the
    append holds a lock on ``out`` and is swapped in atomically.
    """
    params = params or SeismicCurationParams()
    if not inputs.waveforms:
        raise InputError("no waveform files given", fix="check the --waveforms glob matches files")
    check_target(Path(out), kind=EMIN_KIND, append=True, root=root)
    with target_lock(out):
        return _curate_locked(inputs, out, params, batch_files=batch_files, hook=hook, root=root)


def _curate_locked(
    inputs: SeismicInputs,
    out: str | Path,
    params: SeismicCurationParams,
    *,
    batch_files: int,
    hook: WriteHook | None,
    root: str | Path | None,
) -> CurationSummary:
    t = time.perf_counter()
    meta = metadata_for(inputs, params)
    timings = {
        "metadata": time.perf_counter() - t,
        "read": 0.0,
        "preprocess": 0.0,
        "spectrogram": 0.0,
        "write": 0.0,
    }
    writer = SeismicStoreWriter(out, params, hook=hook, root=root)
    writer.add(TraceBatch.empty(meta.rejects))
    files = sorted(Path(p) for p in inputs.waveforms)
    try:
        for i in range(0, len(files), batch_files):
            batch = process_files(files[i : i + batch_files], meta, params, skip_ids=writer.existing_ids)
            for k, v in batch.timings_s.items():
                timings[k] = timings.get(k, 0.0) + v
            t = time.perf_counter()
            writer.add(batch)
            timings["write"] += time.perf_counter() - t
        t = time.perf_counter()
        published = writer.commit(input_checksums_for(inputs))
        timings["write"] += time.perf_counter() - t
    except BaseException:
        writer.abort()
        raise
    return CurationSummary.of(writer, out=out, published=published, n_files=len(files), timings_s=timings)
