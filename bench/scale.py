"""Benchmark: curate-hsi on a Dask LocalCluster of 1 vs 2 workers, extraction routes, sweep throughput.

One run prints:

1. a calibration: how much faster 2 processes run a CPU-bound loop than 1 on this machine
   right now (the ceiling for any 2-worker run; below 2x when the cores are shared);
2. a single flight line of 2+ GB (the synthetic scene's VNIR1, a deflate GeoTIFF, at
   ``--flight-scale``, rendered window by window under ``bench/out/scale/``) and the multi-raster scenes of
   ``--scales`` (1 = the demo scene of ``emin synth hsi``; larger = bigger rasters, generated
   once): the serial, in-process time of each library step, then for 1 and 2 workers
   (each timed run on a cluster of its own, alone on the machine: started apart and timed as
   ``cluster start``, flow code imported and raster checksums memoised on every worker, one
   untimed run first, closed after; the runs alternated, 1 then 2 workers, as the machine is
   shared; :func:`alone_alternated`), best of ``--repeats``:
   * ``curation``: the ``curate-hsi`` flow run's duration as Prefect records it (start to
     Completed; what the UI shows);
   * ``wall``: the same call's wall time, which adds Prefect's flow-run teardown (it joins a
     heartbeat thread that sleeps in 1 s steps, so wall times land near whole seconds);
   * ``fan-out``: first ``extract-*`` task start to last ``extract-*`` task end;
   * ``windows``: first to last window group (Dask futures inside the extract tasks);
   * ``CPU``: CPU seconds of the whole call, by process: the flow's (flow engine, Dask
     scheduler and client), Prefect's API server and the workers, and the cores kept busy;
   and the 1 -> 2 worker speed-ups, with two bounds. The *cores bound* ``2 x curation(1) /
   CPU(2)``: 2 cores cannot do the CPU seconds the 2-worker run used in less than half of
   them, whatever the scheduling (the flow process and the API server use the second core
   beside a single worker for free, and compete with the workers when there are two).
   Amdahl's bound from the measured serial part
   ``S = curation(1) - P``: ``P`` is the 1-worker time of what spreads over the workers, the
   window groups for the single raster (one raster: its task's own steps stay serial), the
   extract tasks for a scene (many rasters: they spread whole);
3. block-wise extraction vs rasterio ``sample()`` vs the rioxarray route on the same points
   of a 2+ GB tiled GeoTIFF (``bench/extract.py``, kept under ``bench/out/extract/``);
4. sweep throughput (trials/hour) of HSI Hydra+EMIN trials one at a time vs K at once
   (``bench/sweep.py``): on the CPU, and on CUDA with K = 64 when a GPU is present.

Task caching is refreshed (``PREFECT_TASKS_REFRESH_CACHE``) so every repeat really extracts.
Usage: ``python bench/scale.py [--flight-scale 11] [--scales 3] [--repeats 3]
[--extract-points 20000] [--sweep-k 8] [--no-flight] [--no-extract] [--no-sweep]``;
``python bench/scale.py --seismic-scale [--unit-mb 16] [--no-utah]`` runs the seismic benchmark
instead (``bench/seismic_scale.py``: ratios to obspy.read and to in-memory compression, 1 vs 2
workers with this module's CPU ceiling, the Utah-scale network).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

os.environ.update(
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    DO_NOT_TRACK="1",
    PREFECT_TASKS_REFRESH_CACHE="true",
    PREFECT_LOGGING_LEVEL="WARNING",
)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "scale"
K = TypeVar("K")
C = TypeVar("C")
R = TypeVar("R")


def scene_inputs(scale: float) -> Any:
    """The synthetic scene at ``scale`` as HSIInputs (generated on first use)."""
    return _generated(OUT / f"hsi-scale{scale:g}", scale=scale)


def flight_inputs(scale: float) -> Any:
    """The scene's VNIR1 flight line alone, rendered 64 rows at a time, among 2000 polygons.

    A deflate-compressed, 256-tiled float32 GeoTIFF like the demo's (3.1 GB on disk, 5.1 GB of
    pixels at scale 11): reading it is decoding, which is what spreads over workers. The
    polygon count stays at 2000 whatever the scale: sampling (a union of every polygon) and
    the other serial steps then cost what a demo-sized label set costs.
    """
    return _generated(
        OUT / f"hsi-flight{scale:g}", scale=scale, n_polygons=2000, rasters=("VNIR1",), window_rows=64
    )


def _generated(root: Path, *, scale: float, n_polygons: int | None = None, **kwargs: Any) -> Any:
    """HSIInputs of a scene under ``root``, generated once (by default 200 polygons per scale squared)."""
    from pipeline.synthetic.hsi_scene import generate_hsi_scene
    from schemas.hsi import HSIInputs, RasterSpec

    marker = root / ".complete"
    if not marker.exists():
        start = time.perf_counter()
        n = int(200 * scale * scale) if n_polygons is None else n_polygons
        generate_hsi_scene(root, seed=0, n_polygons=n, scale=scale, **kwargs)
        marker.touch()
        print(f"generated {root} in {time.perf_counter() - start:.0f} s", flush=True)
    scene = generate_scene_paths(root)
    return HSIInputs(
        polygons=scene["polygons"],
        class_column="class_name",
        transmission=scene["transmission"],
        rasters=[RasterSpec(name=n, path=p, sensor=n[:4]) for n, p in scene["rasters"].items() if p.exists()],
    )


def generate_scene_paths(root: Path) -> dict[str, Any]:
    """File names of a generated scene (the layout of data_catalog.yaml's demo_hsi_scene)."""
    names = {"VNIR1": "vnir1.tif", "VNIR2": "vnir2.img", "VNIR3": "vnir3.tif"}
    names |= {"SWIR1": "swir1.tif", "SWIR2": "swir2.img", "SWIR3": "swir3.tif"}
    return {
        "polygons": root / "polygons.gpkg",
        "transmission": root / "transmission.csv",
        "rasters": {n: root / f for n, f in names.items()},
    }


def alone_alternated(
    arms: Sequence[K],
    start: Callable[[K], tuple[C, Callable[[], None], float]],
    run: Callable[[K, C], R],
    repeats: int,
) -> tuple[dict[K, list[R]], dict[K, float]]:
    """``repeats`` timed runs of every arm, alternated, each on a cluster of its own, alone.

    ``start(arm)`` gives ``(cluster handle, close, seconds it took)``; each timed ``run`` follows
    one untimed run on the same fresh cluster (a worker's first run imports and warms up the
    rest), and the cluster is closed before the next arm starts. No other cluster idles beside
    a timed run: an idle LocalCluster's heartbeats and monitors took ~5 % of a core here, free
    beside one busy worker on 2 cores and taken from the workers when there are two (the
    flight line's window groups on 2 workers: 7.41-7.66 s alone, 7.86-8.02 s beside an idle
    1-worker cluster). Returns every arm's runs and its fastest start.
    """
    runs: dict[K, list[R]] = {arm: [] for arm in arms}
    starts = dict.fromkeys(arms, math.inf)
    for _ in range(repeats):
        for arm in arms:
            handle, close, took = start(arm)
            try:
                run(arm, handle)  # untimed
                runs[arm].append(run(arm, handle))
            finally:
                close()
            starts[arm] = min(starts[arm], took)
    return runs, starts


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Fastest wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def cpu_ceiling(n: int = 15_000_000) -> float:
    """Speed-up of 2 processes over 1 on a pure-Python loop: the best any 2-worker run can do here now."""
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    _burn(n), _burn(n)
    serial = time.perf_counter() - start
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_burn, [1, 1]))
        start = time.perf_counter()
        list(pool.map(_burn, [n, n]))
        parallel = time.perf_counter() - start
    return serial / parallel


def stage_times(inputs: Any, params: Any) -> dict[str, float]:
    """Serial, in-process time of each library step (where the time goes)."""
    from pipeline.checksums import cached_file_sha256
    from pipeline.hsi import curate as hsi
    from pipeline.hsi import extract as hsi_extract
    from pipeline.hsi import store as hsi_store

    t: dict[str, float] = {}
    start = time.perf_counter()
    for spec in inputs.rasters:  # first use in this process: what a fresh worker pays, then memoised
        cached_file_sha256(spec.path)
    t["checksums"] = time.perf_counter() - start
    start = time.perf_counter()
    transmission = hsi.load_transmission(inputs, params)
    polygons, report = hsi.load_polygons(inputs, params)
    t["polygons"] = time.perf_counter() - start
    start = time.perf_counter()
    points = hsi.sample_points(polygons, params, report)
    t["sampling"] = time.perf_counter() - start
    start = time.perf_counter()
    extractions = [hsi_extract.extract_modality(s, points, params, transmission) for s in inputs.rasters]
    t["extraction"] = time.perf_counter() - start
    start = time.perf_counter()
    ds, rejects = hsi_store.assemble_dataset(
        points, extractions, params, provenance=hsi_store.provenance_for(inputs, extractions)
    )
    t["assembly"] = time.perf_counter() - start
    start = time.perf_counter()
    hsi_store.write_hsi_store(ds, rejects, OUT / "serial.zarr", chunk=params.sample_chunk, overwrite=True)
    t["publish"] = time.perf_counter() - start
    return t


def process_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process and every live descendant, by
    role: ``flow`` (this process: a flow run, the Dask scheduler, the client), ``api`` (Prefect's
    ephemeral API server, a uvicorn child) and ``workers`` (the rest: a local cluster's workers)."""
    import psutil

    me = psutil.Process()
    roles = {"flow": 0.0, "api": 0.0, "workers": 0.0}
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            role = "flow" if proc.pid == me.pid else "api" if "uvicorn" in proc.cmdline() else "workers"
        except psutil.Error:  # ended meanwhile
            continue
        roles[role] += times.user + times.system
    return roles


def tree_cpu_s() -> float:
    """CPU seconds used so far by this process and every live descendant, all roles together."""
    return sum(process_cpu_s().values())


class RunTimes(NamedTuple):
    """One curate-hsi run: recorded duration, wall time, extract-task span, window-group span, and the
    CPU seconds of the call by role (:func:`process_cpu_s`)."""

    curation: float
    wall: float
    fan_out: float
    windows: float
    cpu: dict[str, float]


def timed_run(run: Callable[[], Any], client: Any) -> RunTimes:
    """Call the flow (``return_state=True``); task times from the Prefect API, window groups from
    Dask, CPU seconds from the process tree."""
    from distributed import get_task_stream
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_task_stream(client) as stream:
        cpu = process_cpu_s()
        start = time.perf_counter()
        state = run()
        wall = time.perf_counter() - start
        cpu = {role: used - cpu[role] for role, used in process_cpu_s().items()}
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as api:
        flow_run = api.read_flow_run(run_id)
        tasks = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    spans = [(t.start_time, t.end_time) for t in tasks if t.name.startswith("extract-")]
    ends = [(a.timestamp(), b.timestamp()) for a, b in spans if a is not None and b is not None]
    assert flow_run.start_time and flow_run.end_time and ends, "the run did not complete"
    fan_out = max(b for _, b in ends) - min(a for a, _ in ends)
    groups = [
        (ss["start"], ss["stop"])
        for t in stream.data
        if str(t["key"]).startswith("read_window_group")
        for ss in t["startstops"]
        if ss["action"] == "compute"
    ]
    windows = max(b for _, b in groups) - min(a for a, _ in groups) if groups else 0.0
    return RunTimes((flow_run.end_time - flow_run.start_time).total_seconds(), wall, fan_out, windows, cpu)


def run_scene(label: str, inputs: Any, repeats: int, *, single: bool) -> dict[int, RunTimes]:
    """Stage times, then cluster start and best curation times with 1 and 2 workers, and the speed-ups."""
    from distributed import Client, LocalCluster

    from flows.curate_hsi import curate_hsi_flow
    from flows.runners import configure_local_workers, local_cluster_kwargs, worker_env
    from pipeline.checksums import cached_file_sha256
    from pipeline.io.raster import open_raster_info
    from schemas.hsi import HSICurationParams

    params = HSICurationParams(seed=0)
    size = sum(Path(s.path).stat().st_size for s in inputs.rasters) / 1e9
    raw = 0
    for spec in inputs.rasters:
        info = open_raster_info(spec.path)
        raw += info.width * info.height * info.count * np.dtype(info.dtype).itemsize
    stages = stage_times(inputs, params)
    total = sum(stages.values())
    print(
        f"\n{label}: {len(inputs.rasters)} raster(s), {size:.2f} GB on disk; serial stages "
        + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
        + f" (total {total:.2f} s; extraction {100 * stages['extraction'] / total:.0f}%; pixels {raw / 1e9:.2f} GB)",
        flush=True,
    )
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO chatter on start and close
    configure_local_workers()  # as make_task_runner does for the flow's local cluster

    def start(workers: int) -> tuple[tuple[Any, Any], Callable[[], None], float]:
        begin = time.perf_counter()
        cluster = LocalCluster(**local_cluster_kwargs(workers), env=worker_env())
        client = Client(cluster, set_as_default=False)
        client.run(lambda: __import__("flows.curate_hsi"))  # warm imports on every worker
        for spec in inputs.rasters:  # checksums memoised on every worker (printed above as "checksums")
            client.run(cached_file_sha256, str(spec.path))

        def close() -> None:
            client.close()
            cluster.close()

        return (cluster, client), close, time.perf_counter() - begin

    def run(workers: int, handle: tuple[Any, Any]) -> RunTimes:
        cluster, client = handle
        flow_run = partial(
            curate_hsi_flow,
            inputs=inputs,
            params=params,
            out=str(OUT / f"dask{workers}.zarr"),
            cluster=cluster.scheduler_address,
            overwrite=True,
            return_state=True,
        )
        return timed_run(flow_run, client)

    runs, started = alone_alternated((1, 2), start, run, repeats)
    results: dict[int, RunTimes] = {}
    for workers, times in runs.items():
        best = min(times, key=lambda r: r.curation)  # its CPU seconds with it
        cpu = sum(best.cpu.values())
        cores = cpu / best.wall  # over that call, as its CPU seconds were measured
        results[workers] = best = best._replace(
            wall=min(r.wall for r in times),
            fan_out=min(r.fan_out for r in times),
            windows=min(r.windows for r in times),
        )
        print(
            f"  {workers} worker(s): cluster start {started[workers]:.2f} s, curation {best.curation:.2f} s "
            f"({' '.join(f'{r.curation:.2f}' for r in times)}; wall {best.wall:.2f} s), fan-out {best.fan_out:.2f} s, "
            f"windows {best.windows:.2f} s; the fastest run used {cpu:.2f} CPU-s = {cores:.2f} cores busy "
            f"(flow process {best.cpu['flow']:.2f}, Prefect API {best.cpu['api']:.2f}, workers {best.cpu['workers']:.2f})",
            flush=True,
        )
    one, two = results[1], results[2]
    parallel = one.windows if single else one.fan_out
    serial = one.curation - parallel
    bound = one.curation / (serial + parallel / 2)
    print(
        f"  speed-up 1 -> 2 workers: curation {one.curation / two.curation:.2f}x "
        f"(wall {one.wall / two.wall:.2f}x), fan-out {one.fan_out / two.fan_out:.2f}x"
        + (f", windows {one.windows / two.windows:.2f}x" if two.windows else ""),
        flush=True,
    )
    print(
        f"  cores bound: the 2-worker run used {sum(two.cpu.values()):.2f} CPU-s, which 2 cores need at least "
        f"{sum(two.cpu.values()) / 2:.2f} s for: at most {2 * one.curation / sum(two.cpu.values()):.2f}x "
        f"(the 1-worker run used {sum(one.cpu.values()):.2f} CPU-s: with that work, at most "
        f"{2 * one.curation / sum(one.cpu.values()):.2f}x)",
        flush=True,
    )
    cold = one.curation + stages["checksums"]
    print(
        f"  Amdahl: serial part {serial:.2f} s of {one.curation:.2f} s "
        f"({'everything but the window groups' if single else 'everything but the extract tasks'}); "
        f"a perfectly halved {'window fan-out' if single else 'fan-out'} would give {bound:.2f}x "
        f"(target {1.7 if single else 1.6}x); on a fresh cluster the checksums "
        f"({stages['checksums']:.2f} s) join the serial part: {cold / (serial + stages['checksums'] + parallel / 2):.2f}x",
        flush=True,
    )
    return results


def run_extraction(points: int) -> None:
    """Block-wise extraction vs sample() vs rioxarray on the 2+ GB tiled GeoTIFF of bench/extract.py."""
    from extract import OUT as EXTRACT_OUT
    from extract import big_raster, extraction_lines, time_extraction

    raster = big_raster(EXTRACT_OUT, bands=120, size=3000, seed=0)
    print("\n" + "\n".join(extraction_lines(raster, points, time_extraction(raster, points, 0))), flush=True)


def run_sweeps(k: int, n: int, epochs: int) -> None:
    """Sweep throughput on the CPU (K = ``k``) and, when present, on CUDA (K = 64)."""
    import torch
    from sweep import measure

    print(f"\nsweep throughput, CPU (K = {k}, n = {n}):", flush=True)
    print("\n".join(measure("cpu", k=k, n=n, epochs=epochs).lines()), flush=True)
    if torch.cuda.is_available():
        print("\nsweep throughput, CUDA (K = 64, n = 37000):", flush=True)
        print("\n".join(measure("cuda", k=64).lines()), flush=True)
    else:
        print("  (no CUDA device here: run this script on a GPU machine for the K = 64 figure)", flush=True)


def main() -> None:
    """Parse arguments, warm the Prefect API, run the flight line, every scale, extraction, sweeps."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flight-scale", type=float, default=11.0, help="scale of the single flight line")
    parser.add_argument("--scales", default="3", help="comma-separated scene scales (1 = demo scene)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--extract-points", type=int, default=20_000, help="points of the extraction comparison"
    )
    parser.add_argument("--sweep-k", type=int, default=8, help="trials at once on the CPU")
    parser.add_argument("--sweep-n", type=int, default=12000, help="training samples for the CPU sweep")
    parser.add_argument("--sweep-epochs", type=int, default=1, help="timed epochs (after a warm-up)")
    parser.add_argument("--no-flight", action="store_true", help="skip the single flight line")
    parser.add_argument("--no-extract", action="store_true", help="skip the extraction comparison")
    parser.add_argument("--no-sweep", action="store_true", help="curation and extraction only")
    parser.add_argument("--seismic-scale", action="store_true", help="run bench/seismic_scale.py instead")
    args, rest = parser.parse_known_args()
    if args.seismic_scale:
        import seismic_scale

        sys.argv = [str(Path(seismic_scale.__file__)), *rest]
        seismic_scale.main()
        return
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    OUT.mkdir(parents=True, exist_ok=True)
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        """Start the ephemeral API before anything is timed."""

    warm_up()
    print(
        f"cpus: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; "
        f"2-process ceiling on a CPU-bound loop: {cpu_ceiling():.2f}x",
        flush=True,
    )
    if not args.no_flight:
        s = args.flight_scale
        run_scene(f"single flight line (VNIR1 at scale {s:g})", flight_inputs(s), args.repeats, single=True)
    for scale in (float(x) for x in args.scales.split(",") if x):
        run_scene(f"scene at scale {scale:g}", scene_inputs(scale), args.repeats, single=False)
    if not args.no_extract:
        run_extraction(args.extract_points)
    if not args.no_sweep:
        run_sweeps(args.sweep_k, args.sweep_n, args.sweep_epochs)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
