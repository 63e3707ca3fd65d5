"""Seismic spectrogram store: work units placed in file order, chunk-aligned writes, safe appends.

Writes (every chunk of a per-trace array is written exactly once per ingest):
1. the writer places each work unit in file order (:meth:`SeismicStoreWriter.place`): new
   trace ids only, splits and category codes assigned, a trace range reserved and the
   per-trace arrays grown to cover it (metadata only);
2. the unit writes the chunks lying wholly inside its range itself (:func:`write_unit`, where it
   was processed, e.g. a Dask worker) and hands back the traces of the chunks it shares with
   its neighbours, which the writer writes once complete (:meth:`SeismicStoreWriter.finish`);
3. :meth:`SeismicStoreWriter.commit` writes the last chunk, the per-trace coordinates, rejects,
   categories and provenance (into the layout of :mod:`pipeline.seismic.layout`), and validates
   the version: the arrays' values were checked by each unit on what it wrote, the rest (the
   counts among it) is checked by reading the version back.
The store therefore does not depend on how many workers wrote it, nor in which order they finished.

Append protocol (a rejected or crashed append must never damage the published store):
1. the new version is built in a hidden temporary sibling: every file of the current store
   is hard-linked there (zarr 3's LocalStore writes each key to a temporary file and
   ``os.replace``s it, so a write in the sibling makes a new inode and never changes a linked
   file — checked by :func:`_zarr_writes_replace_files`; otherwise the store is copied);
2. new traces are written in the sibling as above (the old store's last, partial chunk is
   completed by the first new traces; earlier chunks are never touched), the rejects table and
   provenance are rewritten, metadata consolidated and the sibling validated against the contract;
3. the sibling is swapped in with ``os.rename`` (old → ``.old-*``, sibling → target). A run
   that finds the target missing but an ``.old-*`` sibling (crash between the renames) puts
   the old version back first. Re-ingesting files whose traces are all present writes nothing.

Categorical columns are integer codes (:mod:`pipeline.publishing.codes`): an append encodes new
traces against the store's categories, appends names it has not seen, and rewrites the columns'
``categories`` attributes at commit, so an old code never changes meaning.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from pipeline import interrupt
from pipeline.cpus import local_threads
from pipeline.errors import ContractViolation, InputError
from pipeline.io.waveforms import Reject
from pipeline.publishing.codes import (
    FORMAT_VERSIONS,
    categories_of,
    category_attrs,
    coded_format,
    encode,
    strings,
)
from pipeline.publishing.contract import (
    SEISMIC_CODED,
    seismic_value_problems,
    validate_seismic_store,
)
from pipeline.publishing.zarr_io import (
    ZARR_FORMAT,
    check_target,
    mark_temporary,
    open_store,
    register_temporary,
    remove_temporary,
    swap_into_place,
    temporary_sibling,
)
from pipeline.seismic.batch import ProcessedUnit, UnitHead, spectrogram_definition
from pipeline.seismic.labels import event_split
from pipeline.seismic.layout import (
    CODED_COLUMNS,
    REJECT_COLUMNS,
    rejects_dataset,
    write_coords,
    write_skeleton,
    write_through_memory,
)
from pipeline.version import code_version
from schemas.seismic import DATA_SHAPING_PARAMS, EMIN_KIND, SeismicCurationParams

SCHEMA_VERSION = FORMAT_VERSIONS[-1]


def _zarr_writes_replace_files() -> bool:
    """True when zarr's LocalStore writes by temp-file + os.replace (hard links then stay intact)."""
    try:
        from zarr.storage import _local

        return hasattr(_local, "_atomic_write")
    except ImportError:  # pragma: no cover
        return False


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into a new tree ``dst`` (copy when links are unsafe)."""
    if not _zarr_writes_replace_files():
        shutil.copytree(src, dst)
        return
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            os.link(Path(root) / f, dst / rel / f)


def _recover(target: Path) -> None:
    """Undo a swap interrupted between its two renames; drop stale temporary siblings."""
    olds = sorted(target.parent.glob(f".{target.name}.old-*"))
    if not target.exists() and olds:
        os.rename(olds[-1], target)
        olds = olds[:-1]
    for p in [*olds, *target.parent.glob(f".{target.name}.tmp-*")]:
        shutil.rmtree(p, ignore_errors=True)


@dataclass(frozen=True)
class Placement:
    """Where one unit's kept traces go: rows ``keep`` of its batch at traces ``offset`` … ``offset + n``."""

    index: int
    store: str
    offset: int
    keep: np.ndarray  # bool, one per row of the unit's batch
    chunk: int  # traces per chunk of the per-trace arrays

    @property
    def n(self) -> int:
        """Number of traces the unit writes."""
        return int(self.keep.sum())


Piece = tuple[int, dict[str, np.ndarray]]
"""``(first trace, {array name: rows})``: traces of a chunk that one unit alone cannot fill."""


@dataclass
class UnitWritten:
    """A unit after its write: the chunk-boundary pieces left to the writer, the write time and
    the contract's value problems of what it wrote (:func:`seismic_value_problems`)."""

    index: int
    pieces: list[Piece]
    write_s: float
    problems: list[str]


def write_unit(processed: ProcessedUnit, placement: Placement) -> UnitWritten:
    """Write every whole chunk of the unit's placed traces (``processed``: :func:`process_unit`'s
    result) into the store; return the rest.

    Runs where the unit was processed (a Dask worker): each chunk lying wholly inside
    ``[offset, offset + n)`` is written once, here, by a region write that covers it; the
    traces before the first and after the last chunk boundary are returned as pieces for the
    writer, which writes each shared chunk once it has all of it.
    """
    t = time.perf_counter()
    batch = processed[0]
    a, n, size = placement.offset, placement.n, placement.chunk
    everything = n == len(placement.keep)  # then the unit's arrays as they are, not a copy
    arrays = {k: v if everything else v[placement.keep] for k, v in batch.arrays().items()} if n else {}
    one_c = batch.table["sensor_type"].to_numpy()[placement.keep] == "1C" if n else np.zeros(0, bool)
    problems = sorted({m for k, v in arrays.items() for m in seismic_value_problems(k, v, one_c)})
    lo, hi = -(-a // size) * size, (a + n) // size * size
    if not n:
        pieces: list[Piece] = []
    elif lo >= hi:  # no whole chunk inside the unit
        pieces = [(a, arrays)]
    else:
        for name, values in arrays.items():
            arr = zarr.open_array(placement.store, path=name, mode="r+", zarr_format=ZARR_FORMAT)
            arr[lo:hi] = values[lo - a : hi - a]
        pieces = [(a, {k: v[: lo - a] for k, v in arrays.items()})] if a < lo else []
        if hi < a + n:
            pieces.append((hi, {k: v[hi - a :] for k, v in arrays.items()}))
    return UnitWritten(placement.index, pieces, time.perf_counter() - t, problems)


WriteHook = Callable[[str, int], None]


class SeismicStoreWriter:
    """One ingest into a store: new traces only, built aside and swapped in on commit.

    Units are placed in file order (:meth:`place`: duplicates dropped, splits and category codes
    assigned, a trace range reserved), write their whole chunks themselves (:func:`write_unit`)
    and hand back the pieces of shared chunks (:meth:`finish`); :meth:`commit` writes the last
    chunk, the per-trace coordinates, rejects and provenance. Every chunk of the per-trace
    arrays is written exactly once, so the store does not depend on how many workers wrote it.

    ``hook(stage, n_written)`` is called after every write into the temporary version (tests
    use it to simulate a crash mid-append).
    """

    def __init__(
        self,
        target: str | Path,
        params: SeismicCurationParams,
        *,
        hook: WriteHook | None = None,
        root: str | Path | None = None,
    ) -> None:
        self.target = Path(target).absolute()
        self.params = params
        self.hook = hook
        self.tmp: Path | None = None
        self._open: tuple[Path, dict[str, zarr.Array]] | None = None
        # an existing seismic store is appended to; anything else of the user's is refused
        check_target(self.target, kind=EMIN_KIND, append=True, root=root)
        _recover(self.target)
        check_target(self.target, kind=EMIN_KIND, append=True, root=root)  # what _recover put back
        self.existing_ids: set[str] = set()
        self.event_split: dict[str, str] = {}
        self.old_rejects: list[Reject] = []
        self.old_attrs: dict[str, Any] = {}
        self.old_columns: dict[str, np.ndarray] = {}  # the stored traces' columns that counts need
        self.n_old = 0
        self.capacity = 0  # traces the per-trace arrays are sized for while writing (see _reserve)
        self.categories: dict[str, list[str]] = {k: list(cats) for k, (cats, _dtype) in CODED_COLUMNS.items()}
        if self.target.exists():
            ds = open_store(self.target)
            self.old_attrs = dict(ds.attrs)
            self._check_format(self.old_attrs.get("schema_version"))
            self._check_params(self.old_attrs.get("parameters", {}))
            self.n_old = int(ds.sizes.get("trace", 0))
            self.existing_ids = set(strings(ds, "trace_id").tolist())
            ev = strings(ds, "event_id")
            sp = strings(ds, "split")
            self.event_split = dict(zip(ev.tolist(), sp.tolist(), strict=True))
            self.old_columns = {"split": sp, "sensor_type": strings(ds, "sensor_type"),
                                "distance_km": ds["distance_km"].values}  # fmt: skip
            rej = open_store(self.target, group="rejects")
            cols = {c: strings(rej, c).tolist() for c in REJECT_COLUMNS}
            self.old_rejects = [
                Reject(*vals) for vals in zip(*(cols[c] for c in REJECT_COLUMNS), strict=True)
            ]
            for key in CODED_COLUMNS:
                group, name = (rej, key.split("/")[1]) if key.startswith("rejects/") else (ds, key)
                self.categories[key] = categories_of(group[name].attrs) or []
        self.known_rejects = {(r.trace_id, r.reason) for r in self.old_rejects}
        self.new_ids: set[str] = set()
        self.new_rejects: list[Reject] = []
        self.tables: list[pd.DataFrame] = []
        self.pending: dict[int, list[Piece]] = {}
        self._pool: ThreadPoolExecutor | None = None  # writes the shared chunks
        self._chunk_writes: deque[Future[float]] = deque()
        self.value_problems: set[str] = set()  # of the arrays written, checked by the units
        self.n_written = 0
        self.n_already_present = 0
        self.write_s = 0.0

    def _check_format(self, version: object) -> None:
        """Appends write format :data:`SCHEMA_VERSION`; a store of an older format is refused."""
        if not coded_format(version):
            raise InputError(
                f"is a seismic store of format {version!r} (categorical columns as strings); this version "
                f"appends only to format {SCHEMA_VERSION} stores (categorical columns as integer codes)",
                path=self.target,
                fix="curate the files into a new --out (the old store stays readable, and published "
                "versions of it are never changed)",
            )

    def _encode(self, key: str, values: Iterable[Any]) -> np.ndarray:
        """Codes of ``values`` in coded column ``key``; its new names are appended to its categories."""
        try:
            codes, self.categories[key] = encode(values, self.categories[key], CODED_COLUMNS[key][1])
        except ValueError as exc:
            raise InputError(
                f"column {key!r} would need more categories than its codes hold ({exc})",
                path=self.target,
                fix="split the data into several stores (each with its own --out)",
            ) from exc
        return codes

    def _check_params(self, stored: dict[str, Any]) -> None:
        mine = json.loads(self.params.model_dump_json())
        for key in DATA_SHAPING_PARAMS:
            # a parameter newer than the store: the store was written with its default
            a, b = stored.get(key, SeismicCurationParams.model_fields[key].default), mine.get(key)
            if isinstance(a, list | tuple):
                a, b = list(a), list(b) if b is not None else b
            if a != b:
                raise InputError(
                    f"parameter {key}={b!r} differs from the store's {key}={a!r}; "
                    "an append must produce arrays of the same shape and meaning",
                    path=self.target,
                    fix=f"rerun with {key}={a!r}, or write a new store with another --out",
                )

    def _ensure_tmp(self) -> Path:
        """The temporary version: hard links of the current store, or a new store with zero traces."""
        if self.tmp is None:
            self.tmp = temporary_sibling(self.target)
            self.target.parent.mkdir(parents=True, exist_ok=True)
            register_temporary(self.tmp)  # before it exists: a kill at any point leaves it registered
            if self.target.exists():
                _link_tree(self.target, self.tmp)
            else:
                write_skeleton(self.tmp, self.params)
            mark_temporary(self.tmp)
        return self.tmp

    def _array_names(self) -> list[str]:
        p = self.params
        return ["spectrogram", *(["waveform"] if p.keep_waveforms else []),
                *(["cross_spectrum"] if p.cross_spectra else [])]  # fmt: skip

    def _arrays(self, tmp: Path) -> dict[str, zarr.Array]:
        """The per-trace arrays of the temporary version, opened once (a resize updates them)."""
        if self._open is None or self._open[0] != tmp:
            arrays = {
                n: zarr.open_array(str(tmp), path=n, mode="r+", zarr_format=ZARR_FORMAT)
                for n in self._array_names()
            }
            self._open = (tmp, arrays)
        return self._open[1]

    def add_rejects(self, rejects: Iterable[Reject]) -> None:
        """Record rejects not recorded yet (by trace id and reason)."""
        for r in rejects:
            if (r.trace_id, r.reason) not in self.known_rejects:
                self.new_rejects.append(r)
                self.known_rejects.add((r.trace_id, r.reason))

    def place(self, head: UnitHead) -> Placement:
        """Reserve the store's next traces for the unit's new traces, in file order.

        Trace ids already stored are skipped, a second trace with an id taken in this ingest is
        a ``duplicate_trace_id`` reject; new events get their split; the coded columns get
        their codes here (in unit order, so codes do not depend on which unit finished first).
        """
        interrupt.check()
        self.add_rejects(head.rejects)
        self.n_already_present += head.n_skipped
        table = head.table.reset_index(drop=True)
        n = len(table)
        ids = table["trace_id"].to_numpy().astype(str) if n else np.zeros(0, str)
        present = np.fromiter((t in self.existing_ids for t in ids.tolist()), bool, n)
        taken = np.fromiter((t in self.new_ids for t in ids.tolist()), bool, n)
        dup = ~present & (taken | pd.Series(ids).duplicated().to_numpy())
        self.n_already_present += int(present.sum())
        self.add_rejects(
            Reject(ids[i], "duplicate_trace_id", "trace id already taken in this ingest",
                   str(table.at[i, "source_file"])) for i in np.flatnonzero(dup).tolist()
        )  # fmt: skip
        keep = ~present & ~dup
        offset = self.n_old + self.n_written
        placement = Placement(head.index, "", offset, keep, self.params.traces_per_chunk)
        if not keep.any():
            return placement
        kept = table[keep].reset_index(drop=True)
        events = kept["event_id"].astype(str)
        fresh = sorted(set(events.unique().tolist()) - self.event_split.keys())
        p = self.params
        self.event_split.update(
            zip(fresh, event_split(fresh, p.split_seed, p.split_fractions).tolist(), strict=True)
        )
        kept["split"] = events.map(self.event_split).to_numpy(dtype=object)
        for c in SEISMIC_CODED:
            kept[c] = self._encode(c, kept[c])
        tmp = self._ensure_tmp()
        arrays = self._arrays(tmp)
        size = p.traces_per_chunk
        if self.n_written == 0 and self.n_old % size:  # the old store's last chunk is shared
            c0 = self.n_old // size * size
            self._add_piece((c0, {k: np.asarray(a[c0 : self.n_old]) for k, a in arrays.items()}))
        self._reserve(offset + len(kept))
        self.tables.append(kept)
        self.new_ids.update(kept["trace_id"].astype(str).tolist())
        self.n_written += len(kept)
        return replace(placement, store=str(tmp))

    def _reserve(self, n_traces: int) -> None:
        """Size the per-trace arrays for at least ``n_traces`` traces, ahead of need.

        Each resize rewrites every array's metadata (~10 ms of zarr's event loop each time), so
        the new part grows to twice what is needed and :meth:`_fit` sets the exact size at
        commit: a few resizes per ingest, not one per unit. Only metadata changes: chunks
        beyond the traces written are never written, and a chunk's bytes do not depend on the
        array's size (an edge chunk is stored whole either way).
        """
        if n_traces <= self.capacity:
            return
        assert self.tmp is not None
        self.capacity = self.n_old + 2 * (n_traces - self.n_old)
        for a in self._arrays(self.tmp).values():
            a.resize((self.capacity, *a.shape[1:]))

    def _fit(self) -> None:
        """Give the per-trace arrays their exact size: the traces stored and written."""
        n = self.n_old + self.n_written
        if self.capacity != n and self.tmp is not None and self.n_written:
            for a in self._arrays(self.tmp).values():
                a.resize((n, *a.shape[1:]))
            self.capacity = n

    def _add_piece(self, piece: Piece) -> None:
        """File a piece under the chunks it covers; write every chunk that is now complete."""
        start, values = piece
        n = len(next(iter(values.values())))
        size = self.params.traces_per_chunk
        for c in range(start // size, (start + n - 1) // size + 1):
            lo, hi = max(start, c * size), min(start + n, (c + 1) * size)
            self.pending.setdefault(c, []).append(
                (lo, {k: v[lo - start : hi - start] for k, v in values.items()})
            )
            if sum(len(next(iter(v.values()))) for _, v in self.pending[c]) == size:
                self._write_chunk(c)

    def _write_chunk(self, c: int) -> None:
        """Start writing chunk ``c`` of every per-trace array from its pieces (once, whole).

        The chunk is written on a writer thread while the caller goes on (several chunks are
        compressed at once, on every core); at most one write per CPU is in flight, and
        :meth:`_settle_writes` waits for them.
        """
        assert self.tmp is not None
        pieces = sorted(self.pending.pop(c), key=lambda pc: pc[0])
        start = c * self.params.traces_per_chunk
        chunk = [
            (arr, np.concatenate([v[name] for _, v in pieces]))
            for name, arr in self._arrays(self.tmp).items()
        ]

        def write() -> float:
            t = time.perf_counter()
            for arr, values in chunk:
                arr[start : start + len(values)] = values
            return time.perf_counter() - t

        if self._pool is None:
            self._pool = ThreadPoolExecutor(local_threads(), thread_name_prefix="emin-chunk-writer")
        self._chunk_writes.append(self._pool.submit(write))
        while len(self._chunk_writes) > local_threads():
            self.write_s += self._chunk_writes.popleft().result()

    def _settle_writes(self) -> None:
        """Wait for every shared-chunk write in flight (raising the first that failed) and
        stop the writer threads."""
        try:
            while self._chunk_writes:
                self.write_s += self._chunk_writes.popleft().result()
        finally:
            if self._pool is not None:  # after a failure the other writes still finish first
                self._pool.shutdown(wait=True)
                self._pool = None
            self._chunk_writes.clear()

    def finish(self, written: UnitWritten) -> None:
        """Take a written unit's boundary pieces (writing the chunks they complete)."""
        interrupt.check()
        for piece in written.pieces:
            self._add_piece(piece)
        self.write_s += written.write_s
        self.value_problems.update(written.problems)
        if self.hook is not None:
            self.hook("append", self.n_written)

    @property
    def changed(self) -> bool:
        """Whether this ingest has anything to publish."""
        return bool(self.new_ids or self.new_rejects)

    def abort(self) -> None:
        """Drop the temporary version; the published store is untouched."""
        with contextlib.suppress(Exception):  # the abort's cause is what the caller reports
            self._settle_writes()  # nothing may write into the temporary after its removal
        if self.tmp is not None:
            remove_temporary(self.tmp)
            self.tmp = None

    def commit(self, input_checksums: dict[str, str]) -> bool:
        """Write the last chunk, coordinates, rejects and provenance; validate; swap the version in.

        Returns False (and writes nothing) when the ingest added no trace and no reject.
        """
        if not self.changed:
            self.abort()
            return False
        tmp = self._ensure_tmp()
        try:
            t = time.perf_counter()
            for c in sorted(self.pending):  # only the last, partial chunk can be left
                self._write_chunk(c)
            self._settle_writes()
            self._fit()
            table = pd.concat(self.tables, ignore_index=True) if self.tables else pd.DataFrame()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                write_coords(  # with the categories of every coded column, new names included
                    tmp,
                    table,
                    self.n_old,
                    {col: category_attrs(self.categories[col]) for col in SEISMIC_CODED},
                )
                rejects = self.old_rejects + self.new_rejects
                reason = self._encode("rejects/reason", [r.reason for r in rejects])
                write_through_memory(
                    rejects_dataset(rejects, (reason, category_attrs(self.categories["rejects/reason"]))),
                    tmp,
                    group="rejects",
                )
            if self.hook is not None:
                self.hook("rejects", self.n_written)
            self._write_attrs(tmp, table, rejects, input_checksums)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                zarr.consolidate_metadata(str(tmp))
            self.write_s += time.perf_counter() - t
            # the validator checks attrs.counts against what is stored
            problems = sorted(self.value_problems)  # every written block was scanned by its unit
            problems += validate_seismic_store(tmp, values=False)
            if problems:
                raise ContractViolation(tmp, problems)
            if self.hook is not None:
                self.hook("swap", self.n_written)
            interrupt.check()
            swap_into_place(tmp, self.target)
            self.tmp = None
        except BaseException:
            self.abort()
            raise
        return True

    def _column(self, table: pd.DataFrame, col: str) -> np.ndarray:
        """Column ``col`` of every trace the store will hold (the stored ones, then ``table``'s
        new ones), coded columns as text."""
        new = table[col].to_numpy() if len(table) else np.zeros(0)
        if col in SEISMIC_CODED:
            new = np.asarray(self.categories[col], dtype=object)[new.astype(np.int64)].astype(str)
        return np.concatenate([self.old_columns.get(col, np.zeros(0, new.dtype)), new])

    def _write_attrs(
        self, tmp: Path, table: pd.DataFrame, rejects: Sequence[Reject], input_checksums: dict[str, str]
    ) -> None:
        """Provenance and counts into the temporary version's attributes. The counts come from
        the stored traces' columns (read when the writer opened the store) and the new traces'
        table, not from reading the version back: :func:`validate_seismic_store` then checks
        them against what is stored."""
        st = self._column(table, "sensor_type").tolist()
        sp = self._column(table, "split").tolist()
        edges = [0, 25, 50, 75, 100, 150, 200, 300, 450, 10_000]
        hist, _ = np.histogram(self._column(table, "distance_km"), bins=edges)
        checks = dict(self.old_attrs.get("input_checksums", {}))
        checks.update(input_checksums)
        counts = {
            "traces": len(st),
            "events": len(self.event_split),  # the stored events and the new traces' events
            "per_sensor_type": dict(sorted(Counter(st).items())),
            "per_split": dict(sorted(Counter(sp).items())),
            "per_sensor_type_split": {
                f"{a}/{b}": n for (a, b), n in sorted(Counter(zip(st, sp, strict=True)).items())
            },
            "rejects": len(rejects),
            "rejects_per_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
            "distance_histogram_km": {"edges": edges, "counts": hist.tolist()},
        }
        attrs = {
            "emin_kind": EMIN_KIND,
            "schema_version": SCHEMA_VERSION,
            "title": "Seismic single-station spectrograms (Z, N, E; log10 PSD)",
            "spectrogram_definition": spectrogram_definition(self.params),
            "back_azimuth_definition": "gps2dist_azimuth(station_lat, station_lon, event_lat, event_lon)[1]: "
            "azimuth at the station toward the event, degrees clockwise from north, WGS84",
            "parameters": json.loads(self.params.model_dump_json()),
            "input_checksums": dict(sorted(checks.items())),
            "code_version": code_version(),
            "counts": counts,
        }
        group = zarr.open_group(str(tmp), mode="r+", zarr_format=3)
        group.attrs.update(attrs)
