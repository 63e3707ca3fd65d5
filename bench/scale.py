"""Benchmark: curate-hsi with its raster fan-out on a Dask LocalCluster of 1 vs 2 workers.

One run, per scene scale (1 = the demo scene of ``emin synth hsi``; larger = bigger rasters):

1. generates the scene once under ``bench/out/scale/`` (``pipeline.synthetic.generate_hsi_scene``);
2. for 1 and 2 workers: starts a ``LocalCluster`` (timed apart: ``cluster start``), imports the
   flow code on every worker, then times, ``--repeats`` times each (best kept):
   * ``fan-out``: the ``extract-rasters`` subflow alone (every raster extracted on Dask);
   * ``curation``: the whole ``curate-hsi`` flow (polygons, sampling, fan-out, assembly, publish);
3. prints the speed-ups, the serial stage times that bound them (Amdahl), and first a
   calibration: how much faster 2 processes run a CPU-bound loop than 1 on this machine
   right now (the ceiling for any 2-worker run; below 2x when the cores are shared).

Task caching is refreshed (``PREFECT_TASKS_REFRESH_CACHE``) so every repeat really extracts.
Usage: ``python bench/scale.py [--scales 1,3] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

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
    from pipeline.synthetic import generate_hsi_scene
    from schemas.hsi import HSIInputs, RasterSpec

    root = OUT / f"hsi-scale{scale:g}"
    marker = root / ".complete"
    if not marker.exists():
        start = time.perf_counter()
        generate_hsi_scene(root, seed=0, n_polygons=int(200 * scale * scale), scale=scale)
        marker.touch()
        print(f"generated {root} in {time.perf_counter() - start:.0f} s", flush=True)
    scene = generate_scene_paths(root)
    return HSIInputs(
        polygons=scene["polygons"],
        class_column="class_name",
        transmission=scene["transmission"],
        rasters=[RasterSpec(name=n, path=p, sensor=n[:4]) for n, p in scene["rasters"].items()],
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
    from pipeline import hsi

    t: dict[str, float] = {}
    start = time.perf_counter()
    transmission = hsi.load_transmission(inputs, params)
    polygons, report = hsi.load_polygons(inputs, params)
    t["polygons"] = time.perf_counter() - start
    start = time.perf_counter()
    points = hsi.sample_points(polygons, params, report)
    t["sampling"] = time.perf_counter() - start
    start = time.perf_counter()
    extractions = [hsi.extract_modality(s, points, params, transmission) for s in inputs.rasters]
    t["extraction"] = time.perf_counter() - start
    start = time.perf_counter()
    ds, rejects = hsi.assemble_dataset(points, extractions, params, provenance=hsi.provenance_for(inputs))
    t["assembly"] = time.perf_counter() - start
    start = time.perf_counter()
    hsi.write_hsi_store(ds, rejects, OUT / "serial.zarr", chunk=params.sample_chunk)
    t["publish"] = time.perf_counter() - start
    return t


def run_scale(scale: float, repeats: int) -> dict[int, dict[str, float]]:
    """Cluster start, fan-out and whole-curation times with 1 and 2 workers."""
    from distributed import Client, LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows.curate_hsi import curate_hsi_flow, extract_rasters_flow
    from flows.runners import worker_env
    from pipeline import hsi
    from schemas.hsi import HSICurationParams

    inputs, params = scene_inputs(scale), HSICurationParams(seed=0)
    stages = stage_times(inputs, params)
    total = sum(stages.values())
    print(
        f"\nscale {scale:g}: serial stages "
        + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
        + f" (total {total:.2f} s; extraction {100 * stages['extraction'] / total:.0f}%)",
        flush=True,
    )
    transmission = hsi.load_transmission(inputs, params)
    polygons, report = hsi.load_polygons(inputs, params)
    points = hsi.sample_points(polygons, params, report)
    results: dict[int, dict[str, float]] = {}
    for workers in (1, 2):
        start = time.perf_counter()
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, env=worker_env()
        )
        with cluster, Client(cluster) as client:
            client.run(lambda: __import__("flows.curate_hsi"))  # warm imports on every worker
            started = time.perf_counter() - start
            runner = DaskTaskRunner(address=cluster.scheduler_address)
            subflow = extract_rasters_flow.with_options(task_runner=runner)  # type: ignore[arg-type]
            fan_out = best_of(repeats, partial(subflow, inputs, points, params, transmission))
            address, target = cluster.scheduler_address, str(OUT / f"dask{workers}.zarr")
            curation = best_of(
                repeats, partial(curate_hsi_flow, inputs=inputs, params=params, out=target, cluster=address)
            )
        results[workers] = {"cluster start": started, "fan-out": fan_out, "curation": curation}
        print(
            f"  {workers} worker(s): cluster start {started:.2f} s, fan-out {fan_out:.2f} s, "
            f"curation {curation:.2f} s",
            flush=True,
        )
    one, two = results[1], results[2]
    bound = total / (total - stages["extraction"] / 2)
    print(
        f"  speed-up 1 -> 2 workers: fan-out {one['fan-out'] / two['fan-out']:.2f}x, "
        f"curation {one['curation'] / two['curation']:.2f}x "
        f"(Amdahl bound for curation with only extraction parallel: {bound:.2f}x)",
        flush=True,
    )
    return results


def main() -> None:
    """Parse arguments, warm the Prefect API, run every scale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1", help="comma-separated scene scales (1 = demo scene)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
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
    for scale in (float(s) for s in args.scales.split(",")):
        run_scale(scale, args.repeats)


if __name__ == "__main__":
    main()
