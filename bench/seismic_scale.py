"""Benchmark: seismic curation against its unavoidable parts, 1 vs 2 Dask workers, and the Utah-scale network.

One run prints, all measured in that run:

1. the machine: cores, load average, and the CPU ceiling (how much faster 2 processes run a
   CPU-bound loop than 1 right now, :func:`scale.cpu_ceiling`);
2. on the demo network (``--net``, generated 200 stations x 400 events on first use):
   ``obspy.read`` of every file alone (page cache warm), then the end-to-end ``--no-prefect``
   curation (:func:`pipeline.seismic.curate.curate_seismic`: one unit thread per CPU and a
   writer thread) and its ratio to the read, with the time split; and the same with one unit
   thread (the writer thread still overlapping);
3. writing the store, wall clock (placing, every chunk of every array: the units' region writes
   on one writer thread per CPU as the in-process route writes them, the shared chunks, the
   coordinates, rejects and attributes, validation at commit), from units processed beforehand
   so that nothing else runs meanwhile, against compressing the same arrays with the same codec
   and chunks into a Zarr ``MemoryStore`` (each array at once, and chunk by chunk);
4. the units on a Dask ``LocalCluster`` of 1 and of 2 worker processes, and of 1 worker held to
   one CPU (each timed run on a cluster of its own, alone: started, imports warmed and one
   curation run apart, untimed, closed after, :func:`scale.alone_alternated`; the driver runs
   in a Dask task, as in the flow's ``curate-units`` task): times, CPU seconds of this process and the cluster
   (cores kept busy: one worker keeps more than one busy, as the driver and zarr's compression
   threads run beside its unit thread), the speed-up beside the CPU ceiling, and whether the
   stores are equal byte for byte; then the *work ceiling*: the units' work alone (processing and in-memory
   compression, :func:`_unit_work`) in 1 process and in 2, and the Amdahl bound it gives with
   the measured serial metadata and commit;
5. the Utah-scale network (``--utah``, ``emin synth seismic --stations 1500 --events 3000``)
   curated on a cluster of each of ``--utah-workers`` (default 2; ``1,2`` adds the speed-up at
   scale and the byte comparison of the two stores): traces, sizes, wall time and the peak
   resident memory of this process and every child (the cluster's workers), sampled every 0.2 s;
   its files are read into the page cache first, so the run that goes first is not the one
   that pays for the disk.

Demo-network timings are the best of ``--repeats`` (default 3), alternated (read and curation;
the clusters' runs), as the machine may be shared.
Usage: ``python bench/seismic_scale.py [--net DIR] [--utah DIR] [--unit-mb 8] [--repeats 3] [--no-utah]
[--no-demo] [--utah-workers 2]``
(``bench/scale.py --seismic-scale`` runs it too).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="WARNING")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out"
DEMO = OUT / "seismic_demo"
UTAH = OUT / "seismic_scale"


def demo_network(net_dir: Path) -> Path:
    """The 200-station, 400-event demo network under ``net_dir`` (generated once)."""
    from pipeline.synthetic.seismic_network import generate_seismic_network

    if not (net_dir / "README.md").exists():
        start = time.perf_counter()
        generate_seismic_network(net_dir, seed=0, n_stations=200, n_events=400)
        print(f"generated {net_dir} in {time.perf_counter() - start:.0f} s", flush=True)
    return net_dir


def network_inputs(net_dir: Path) -> Any:
    """SeismicInputs of a generated network."""
    from schemas.seismic import SeismicInputs

    return SeismicInputs.from_glob(
        str(net_dir / "waveforms" / "*.mseed"),
        net_dir / "stations.xml",
        net_dir / "events.xml",
        net_dir / "picks.csv",
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time and result of ``fn()``."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def obspy_read_all(files: list[Path]) -> int:
    """Read every file with ``obspy.read`` (nothing else); returns the trace count."""
    import obspy

    return sum(len(obspy.read(str(f))) for f in files)


def memory_compression(store: Path, *, chunk_by_chunk: bool = False) -> tuple[float, int]:
    """Seconds to compress every array of ``store`` (same chunks, same codecs) into a MemoryStore.

    Each array in one assignment (zarr encodes its chunks in parallel, on every core), or
    ``chunk_by_chunk``: one assignment per chunk along the first axis, as the store's writer
    writes each chunk once it is complete (one core per chunk).
    """
    import zarr

    src = zarr.open_group(str(store), mode="r")
    arrays = {}
    for path, arr in src.arrays():
        arrays[path] = (arr, np.asarray(arr[...]))
    for name, arr in src["rejects"].arrays():
        arrays[f"rejects/{name}"] = (arr, np.asarray(arr[...]))
    mem = zarr.storage.MemoryStore()
    dst = zarr.open_group(mem, mode="w", zarr_format=3)
    start = time.perf_counter()
    for path, (arr, values) in arrays.items():
        out = dst.create_array(
            path,
            shape=arr.shape,
            dtype=arr.dtype,
            chunks=arr.chunks,
            compressors=arr.compressors,
            serializer=arr.serializer,
            fill_value=arr.fill_value,
        )
        if not (chunk_by_chunk and values.ndim):
            out[...] = values
            continue
        for i in range(0, len(values), arr.chunks[0]):
            out[i : i + arr.chunks[0]] = values[i : i + arr.chunks[0]]
    return time.perf_counter() - start, sum(v.nbytes for _, v in arrays.values())


def store_write(inputs: Any, target: Path, unit_mb: float) -> Callable[[], float]:
    """A function that writes ``target`` afresh from units processed once beforehand and returns
    its wall time (placing, region writes, shared chunks, coordinates, rejects, attributes,
    validation, consolidation), nothing else running meanwhile. The units
    are written as :func:`~pipeline.seismic.curate.run_here` writes them (one writer thread per CPU)."""
    from pipeline.cpus import local_threads
    from pipeline.seismic.batch import UnitJob, process_unit
    from pipeline.seismic.curate import input_checksums_for, write_placed
    from pipeline.seismic.store import SeismicStoreWriter
    from pipeline.seismic.units import plan_units
    from pipeline.seismic.windows import metadata_for
    from schemas.seismic import SeismicCurationParams

    params = SeismicCurationParams()
    meta = metadata_for(inputs, params)
    units = plan_units(inputs.waveforms, unit_mb)
    processed = [process_unit(u, UnitJob(meta, params)) for u in units]
    checksums = input_checksums_for(inputs)

    def write() -> float:
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        writer = SeismicStoreWriter(target, params)
        writer.add_rejects(meta.rejects)
        for written in write_placed(enumerate(processed), writer.place, writers=local_threads()):
            writer.finish(written)
        writer.commit(checksums)
        return time.perf_counter() - start

    return write


def _unit_work(units: list[Any], job: Any) -> float:
    """Process ``units`` and compress their arrays with the store's codec, in memory, chunk by
    chunk (a worker's work without orchestration or files); seconds taken."""
    from pipeline.publishing.zarr_io import compressor
    from pipeline.seismic.batch import process_unit

    codec = compressor()[0]._blosc_codec  # the numcodecs Blosc of the store's chunks
    start = time.perf_counter()
    for unit in units:
        for values in process_unit(unit, job)[0].arrays().values():
            for i in range(0, len(values), job.params.traces_per_chunk):
                codec.encode(np.ascontiguousarray(values[i : i + job.params.traces_per_chunk]))
    return time.perf_counter() - start


def work_ceiling(inputs: Any, unit_mb: float, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of every unit's work (:func:`_unit_work`) in 1 process and in
    2 (every other unit each), pools started and warmed apart: how much faster 2 processes do
    this work on this machine right now, with no Dask, no driver and no store. Its ratio is the
    ceiling of the 2-worker speed-up for this workload (memory bandwidth and the shared L3
    included, which the CPU-loop ceiling does not see)."""
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.seismic.batch import UnitJob
    from pipeline.seismic.units import plan_units
    from pipeline.seismic.windows import metadata_for
    from schemas.seismic import SeismicCurationParams

    params = SeismicCurationParams()
    job = UnitJob(metadata_for(inputs, params), params)
    units = plan_units(inputs.waveforms, unit_mb)
    best = {1: float("inf"), 2: float("inf")}
    with ProcessPoolExecutor(1) as one, ProcessPoolExecutor(2) as two:
        list(one.map(_unit_work, [units[:1]], [job]))  # imports and caches warm
        list(two.map(_unit_work, [units[:1], units[1:2]], [job, job]))
        for _ in range(repeats):  # alternated
            start = time.perf_counter()
            list(one.map(_unit_work, [units], [job]))
            best[1] = min(best[1], time.perf_counter() - start)
            start = time.perf_counter()
            list(two.map(_unit_work, [units[0::2], units[1::2]], [job, job]))
            best[2] = min(best[2], time.perf_counter() - start)
    return best[1], best[2]


def _drive(target: str, inputs: Any, unit_mb: float) -> dict[str, float]:
    """The flow's curate-units task without Prefect (runs in a Dask task): metadata, units, commit."""
    from flows.runners import unit_runner
    from pipeline.seismic.curate import curate_units
    from pipeline.seismic.store import SeismicStoreWriter
    from pipeline.seismic.windows import metadata_for
    from schemas.seismic import SeismicCurationParams

    params = SeismicCurationParams()
    start = time.perf_counter()
    meta = metadata_for(inputs, params)
    t_meta = time.perf_counter() - start
    writer = SeismicStoreWriter(target, params)
    _, timings = curate_units(writer, inputs, meta, unit_mb=unit_mb, runner=unit_runner())
    return {"metadata": t_meta, **timings}  # read/preprocess/spectrogram/write: summed over the workers


def start_cluster(n_workers: int) -> tuple[Any, Any, float]:
    """A LocalCluster of ``n_workers`` processes (as the flow's), its client and its start time (imports warm)."""
    from distributed import Client, LocalCluster

    from flows.runners import configure_local_workers, local_cluster_kwargs

    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO chatter on close
    configure_local_workers()  # as make_task_runner does for the flow's local cluster
    start = time.perf_counter()
    cluster = LocalCluster(**local_cluster_kwargs(n_workers))
    client = Client(cluster)
    client.run(lambda: __import__("pipeline.seismic.curate") and __import__("flows.runners"))
    return cluster, client, time.perf_counter() - start


def _pin_to_one_cpu() -> None:
    """Hold every thread of this process (and so every thread it starts later) to its first CPU."""
    cpu = {min(os.sched_getaffinity(0))}
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpu)
        except OSError:  # a thread that ended meanwhile
            continue


def on_cluster(
    client: Any, target: Path, inputs: Any, unit_mb: float
) -> tuple[float, dict[str, float], float]:
    """(wall, time split, CPU seconds of this process and the cluster's) of one curation into a
    fresh ``target``, the driver in a Dask task."""
    from scale import tree_cpu_s

    shutil.rmtree(target, ignore_errors=True)
    cpu = tree_cpu_s()
    wall, split = timed(lambda: client.submit(_drive, str(target), inputs, unit_mb, pure=False).result())
    return wall, split, tree_cpu_s() - cpu


def same_bytes(a: Path, b: Path) -> tuple[bool, int]:
    """Whether two stores hold the same files with the same bytes, and how many files."""
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa), len(fa)


class PeakRSS:
    """Peak resident memory of this process plus all its children, sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        rss = []
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                rss.append(p.memory_info().rss)
            except psutil.Error:
                continue
        self.peak = max(self.peak, sum(rss))
        self.peak_single = max(self.peak_single, max(rss, default=0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def du(path: Path) -> float:
    """GB of files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e9


def run(
    net_dir: Path | None, utah: Path | None, unit_mb: float, repeats: int, utah_workers: list[int]
) -> None:
    """Every measurement of the module docstring, printed as it is made (the demo network's
    without ``net_dir``, the Utah-scale network's without ``utah``, left out)."""
    from scale import cpu_ceiling

    print(f"cpus: {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(
        f"CPU ceiling: 2 processes run a CPU-bound loop {cpu_ceiling():.2f}x faster than 1 right now",
        flush=True,
    )
    if net_dir is not None:
        run_demo(net_dir, unit_mb, repeats)
    if utah is not None:
        run_utah(utah, unit_mb, utah_workers)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


def run_demo(net_dir: Path, unit_mb: float, repeats: int) -> None:
    """Items 2-4 of the module docstring on the demo network."""
    from scale import alone_alternated, cpu_ceiling

    from pipeline.cpus import local_threads
    from pipeline.seismic.curate import curate_seismic
    from schemas.seismic import SeismicCurationParams

    inputs = network_inputs(demo_network(net_dir))
    files = sorted(inputs.waveforms)
    size = sum(f.stat().st_size for f in files) / 1e6
    obspy_read_all(files)  # page cache warm for both
    out = DEMO / "e2e.zarr"
    reads, e2es, e2es_1 = [], [], []
    for _ in range(repeats):  # alternated, best of each: the machine is shared
        reads.append(timed(lambda: obspy_read_all(files)))
        shutil.rmtree(out, ignore_errors=True)
        e2es.append(timed(lambda: curate_seismic(inputs, out, SeismicCurationParams(), unit_mb=unit_mb)))
        shutil.rmtree(out, ignore_errors=True)
        e2es_1.append(
            timed(lambda: curate_seismic(inputs, out, SeismicCurationParams(), unit_mb=unit_mb, threads=1))
        )
    t_read, n_channel = min(reads, key=lambda r: r[0])
    t_e2e, summary = min(e2es, key=lambda r: r[0])
    t_e2e_1, summary_1 = min(e2es_1, key=lambda r: r[0])
    print(
        f"\ndemo network {net_dir}: {len(files)} files, {size:.0f} MB, {n_channel} channel traces", flush=True
    )
    print(
        f"  obspy.read alone            : {t_read:7.2f} s (best of {repeats}, alternated with the curation)",
        flush=True,
    )
    print(
        f"  curation end to end (--no-prefect, unit {unit_mb:g} MB, {local_threads()} unit threads + a writer): "
        f"{t_e2e:7.2f} s = {t_e2e / t_read:.2f}x obspy.read (target <= 5x); {summary.n_added} traces stored, "
        f"{summary.n_new_rejects} rejects",
        flush=True,
    )
    print("    " + ", ".join(f"{k} {v:.2f} s" for k, v in summary.timings_s.items()) + " (stages summed over threads)",
          flush=True)  # fmt: skip
    print(
        f"  the same with 1 unit thread + the writer: {t_e2e_1:7.2f} s = {t_e2e_1 / t_read:.2f}x obspy.read",
        flush=True,
    )
    print("    " + ", ".join(f"{k} {v:.2f} s" for k, v in summary_1.timings_s.items()), flush=True)
    write = store_write(inputs, DEMO / "write.zarr", unit_mb)
    writes, mems, mems_chunked = [], [], []
    for _ in range(repeats):  # alternated, best of each
        writes.append(write())
        mems.append(memory_compression(DEMO / "write.zarr"))
        mems_chunked.append(memory_compression(DEMO / "write.zarr", chunk_by_chunk=True))
    t_write = min(writes)
    t_mem, n_bytes = min(mems, key=lambda r: r[0])
    t_chunked = min(t for t, _ in mems_chunked)
    print(
        f"  writing the store           : {t_write:7.2f} s (units processed beforehand, nothing else running; best of "
        f"{repeats}: {' '.join(f'{w:.2f}' for w in writes)}) vs {t_mem:.2f} s compressing the same {n_bytes / 1e6:.0f} MB "
        f"with the same codec in memory, each array at once = {t_write / t_mem:.2f}x (target <= 1.5x); vs "
        f"{t_chunked:.2f} s compressing them chunk by chunk, as the writer does = {t_write / t_chunked:.2f}x",
        flush=True,
    )
    setups = {"1 worker": 1, "2 workers": 2, "1 worker, 1 CPU": 1}
    stores = {k: DEMO / f"dask{i}.zarr" for i, k in enumerate(setups)}

    def start(k: str) -> tuple[Any, Callable[[], None], float]:
        cluster, client, took = start_cluster(setups[k])
        if k == "1 worker, 1 CPU":
            client.run(_pin_to_one_cpu)

        def close() -> None:
            client.close()
            cluster.close()

        return client, close, took

    # each timed run on a fresh cluster alone, after one untimed curation; arms alternated
    runs, started = alone_alternated(
        list(setups), start, lambda k, client: on_cluster(client, stores[k], inputs, unit_mb), repeats
    )
    walls, cores = {}, {}
    for k in setups:
        walls[k], split, cpu = min(runs[k], key=lambda r: r[0])
        cores[k] = cpu / walls[k]
        print(
            f"  {k + ':':28s}{walls[k]:7.2f} s best of {repeats} "
            f"({' '.join(f'{r[0]:.2f}' for r in runs[k])}; cluster start {started[k]:.2f} s, apart; "
            + ", ".join(f"{name} {v:.2f} s" for name, v in split.items())
            + f", unit stages summed over workers); {cpu:.2f} CPU-s = {cores[k]:.2f} cores busy on average",
            flush=True,
        )
    equal = [same_bytes(stores["1 worker"], stores[k]) for k in ("2 workers", "1 worker, 1 CPU")]
    w1, w2 = work_ceiling(inputs, unit_mb, repeats)
    one = min(runs["1 worker"], key=lambda r: r[0])[1]
    serial = (one["metadata"] + one["commit"]) / walls["1 worker"]  # before the first unit, after the last
    bound = 1 / (serial + (1 - serial) / (w1 / w2))
    speed_up = walls["1 worker"] / walls["2 workers"]
    print(
        f"  2 workers vs 1              : {speed_up:.2f}x (target >= 1.7x; CPU ceiling now "
        f"{cpu_ceiling():.2f}x); stores byte-identical: {all(e for e, _ in equal)} ({equal[0][1]} files)\n"
        f"  work ceiling                : the units' work alone (processing + compression in memory, no Dask, no "
        f"store) {w1:.2f} s in 1 process, {w2:.2f} s in 2 = {w1 / w2:.2f}x; with the serial metadata and commit "
        f"({serial:.0%} of the 1-worker run) the bound is {bound:.2f}x, and the 2 workers reach "
        f"{speed_up / bound:.0%} of it\n"
        f"  cores                       : the 1-worker run keeps {cores['1 worker']:.2f} cores busy (the driver, its "
        f"shared-chunk writes and zarr's compression threads beside the unit thread), so with the same work 2 "
        f"workers can be at most {2 / cores['1 worker']:.2f}x faster on 2 cores; against the 1-worker cluster "
        f"held to one CPU, 2 workers on 2 CPUs are {walls['1 worker, 1 CPU'] / walls['2 workers']:.2f}x faster",
        flush=True,
    )


def run_utah(utah: Path, unit_mb: float, utah_workers: list[int]) -> None:
    """Item 5 of the module docstring: the Utah-scale network on clusters of ``utah_workers``."""
    from scale import cpu_ceiling

    from pipeline.publishing.zarr_io import open_store

    uinputs = network_inputs(utah)
    usize = du(utah / "waveforms")
    for f in uinputs.waveforms:  # into the page cache, so that no run pays for the disk
        Path(f).read_bytes()
    print(
        f"\nUtah-scale network {utah}: {len(uinputs.waveforms)} files, {usize:.2f} GB of miniSEED", flush=True
    )
    uwalls: dict[int, float] = {}
    for n in utah_workers:
        target = OUT / ("seismic_scale.zarr" if n == 2 else f"seismic_scale-{n}w.zarr")
        with PeakRSS() as rss:
            cluster, client, started = start_cluster(n)
            uwalls[n], split, cpu = on_cluster(client, target, uinputs, unit_mb)
            client.close()
            cluster.close()
        n_traces = open_store(target).sizes["trace"]
        print(
            f"  {n} Dask worker(s): {uwalls[n]:.0f} s ({n_traces} traces stored, {du(target):.2f} GB store; cluster "
            f"start {started:.1f} s); peak RSS {rss.peak / 2**30:.2f} GiB, this process and its workers together "
            f"(largest process {rss.peak_single / 2**30:.2f} GiB; target < 4 GB)\n    "
            + ", ".join(f"{k} {v:.1f} s" for k, v in split.items())
            + f" (unit stages summed over workers); {cpu:.0f} CPU-s = {cpu / uwalls[n]:.2f} cores busy on average",
            flush=True,
        )
    if {1, 2} <= set(uwalls):
        equal, n_files = same_bytes(OUT / "seismic_scale-1w.zarr", OUT / "seismic_scale.zarr")
        print(
            f"  2 workers vs 1 at Utah scale: {uwalls[1] / uwalls[2]:.2f}x (target >= 1.7x; CPU ceiling now "
            f"{cpu_ceiling():.2f}x); stores byte-identical: {equal} ({n_files} files)",
            flush=True,
        )


def main() -> None:
    """Command-line entry point."""
    from pipeline.seismic.units import DEFAULT_UNIT_MB

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", type=Path, default=DEMO / "net", help="demo network (generated when absent)")
    ap.add_argument("--utah", type=Path, default=UTAH, help="Utah-scale network (emin synth seismic output)")
    ap.add_argument("--unit-mb", type=float, default=DEFAULT_UNIT_MB)
    ap.add_argument("--no-utah", action="store_true", help="skip the Utah-scale run")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo network's measurements")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for the demo network's timings")
    ap.add_argument(
        "--utah-workers",
        default="2",
        help="comma-separated Dask worker counts for the Utah-scale run (e.g. 1,2)",
    )
    args = ap.parse_args()
    utah = None if args.no_utah else args.utah
    if utah is not None and not (utah / "README.md").exists():
        sys.exit(f"no network at {utah}: emin synth seismic --out {utah} --stations 1500 --events 3000")
    run(
        None if args.no_demo else args.net,
        utah,
        args.unit_mb,
        args.repeats,
        [int(n) for n in args.utah_workers.split(",") if n],
    )


if __name__ == "__main__":
    main()
