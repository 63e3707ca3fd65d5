"""Benchmark: curate-hsi on a Dask LocalCluster of 1 vs 2 workers, extraction routes, sweep throughput.

One run prints:

1. a calibration: how much faster 2 processes run a CPU-bound loop than 1 on this machine
   right now (the ceiling for any 2-worker run; below 2x when the cores are shared);
2. a single flight line of 2+ GB (the synthetic scene's VNIR1, a deflate GeoTIFF, at
   ``--flight-scale``, rendered window by window under ``bench/out/scale/``) and the multi-raster scenes of
   ``--scales`` (1 = the demo scene of ``emin synth hsi``; larger = bigger rasters, generated
   once): the serial, in-process time of each library step, then for 1 and 2 workers
   (cluster started apart and timed as ``cluster start``, flow code imported and raster
   checksums memoised on every worker), best of ``--repeats``:
   * ``curation``: the ``curate-hsi`` flow run's duration as Prefect records it (start to
     Completed; what the UI shows);
   * ``wall``: the same call's wall time, which adds Prefect's flow-run teardown (it joins a
     heartbeat thread that sleeps in 1 s steps, so wall times land near whole seconds);
   * ``fan-out``: first ``extract-*`` task start to last ``extract-*`` task end;
   * ``windows``: first to last window group (Dask futures inside the extract tasks);
   and the 1 -> 2 worker speed-ups, with Amdahl's bound from the measured serial part
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
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

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


class RunTimes(NamedTuple):
    """One curate-hsi run: recorded duration, wall time, extract-task span and window-group span."""

    curation: float
    wall: float
    fan_out: float
    windows: float


def timed_run(run: Callable[[], Any], client: Any) -> RunTimes:
    """Call the flow (``return_state=True``); task times from the Prefect API, window groups from Dask."""
    from distributed import get_task_stream
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_task_stream(client) as stream:
        start = time.perf_counter()
        state = run()
        wall = time.perf_counter() - start
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
    return RunTimes((flow_run.end_time - flow_run.start_time).total_seconds(), wall, fan_out, windows)


def run_scene(label: str, inputs: Any, repeats: int, *, single: bool) -> dict[int, RunTimes]:
    """Stage times, then cluster start and best curation times with 1 and 2 workers, and the speed-ups."""
    from distributed import Client, LocalCluster

    from flows.curate_hsi import curate_hsi_flow
    from flows.runners import configure_local_workers, worker_env
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
    results: dict[int, RunTimes] = {}
    configure_local_workers()  # as make_task_runner does for the flow's local cluster
    for workers in (1, 2):
        start = time.perf_counter()
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, env=worker_env()
        )
        with cluster, Client(cluster, set_as_default=False) as client:
            client.run(lambda: __import__("flows.curate_hsi"))  # warm imports on every worker
            for spec in inputs.rasters:  # checksums memoised on every worker (printed above as "checksums")
                client.run(cached_file_sha256, str(spec.path))
            started = time.perf_counter() - start
            run = partial(
                curate_hsi_flow,
                inputs=inputs,
                params=params,
                out=str(OUT / f"dask{workers}.zarr"),
                cluster=cluster.scheduler_address,
                overwrite=True,
                return_state=True,
            )
            runs = [timed_run(run, client) for _ in range(repeats)]
        best = RunTimes(*(min(r[i] for r in runs) for i in range(4)))
        results[workers] = best
        print(
            f"  {workers} worker(s): cluster start {started:.2f} s, curation {best.curation:.2f} s "
            f"(wall {best.wall:.2f} s), fan-out {best.fan_out:.2f} s, windows {best.windows:.2f} s",
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
