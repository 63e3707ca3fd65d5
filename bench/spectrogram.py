"""Benchmark: batched spectrograms vs a per-trace scipy loop, and end-to-end demo curation.

Run: ``.venv/bin/python bench/spectrogram.py [--traces 10000] [--curate-demo DIR]``. Prints, in one
run, the speed-up of :func:`pipeline.seismic.signal.batched_log_spectrogram` over a Python loop of
``scipy.signal.spectrogram`` on the same traces (results checked equal), and with
``--curate-demo`` the curation throughput on a generated demo network and where the time goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.signal

from pipeline.seismic.signal import batched_log_spectrogram


def bench_spectrogram(n_traces: int, n_samples: int = 12_000, fs: float = 100.0, batch: int = 1000) -> None:
    """Time both routes on the same [n_traces, n_samples] float64 windows and check they agree."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_traces, n_samples))  # float64, as the pipeline's windows
    t = time.perf_counter()
    ours = np.empty((n_traces, 51, n_samples // 100), np.float32)
    for i in range(0, n_traces, batch):
        ours[i : i + batch] = batched_log_spectrogram(x[i : i + batch], fs, nperseg=100)[2]
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    ref = np.empty_like(ours)
    for i in range(n_traces):
        _, _, s = scipy.signal.spectrogram(x[i], fs=fs, window="hann", nperseg=100, noverlap=0,
                                           detrend="constant", scaling="density", mode="psd")  # fmt: skip
        ref[i] = np.log10(s + 1e-20)
    t_loop = time.perf_counter() - t
    err = float(np.max(np.abs(ours - ref)))
    print(f"spectrograms of {n_traces} traces x {n_samples} samples (51 freq x {n_samples // 100} frames)")
    print(f"  batched (rfft)     : {t_batched:7.2f} s  ({n_traces / t_batched:9.0f} traces/s)")
    print(f"  per-trace scipy    : {t_loop:7.2f} s  ({n_traces / t_loop:9.0f} traces/s)")
    print(f"  speed-up           : {t_loop / t_batched:7.1f}x   max |log10 diff| = {err:.2e}")


def bench_curation(directory: Path, n_stations: int, n_events: int) -> None:
    """Generate (if absent) and curate a demo network; print throughput and the time split."""
    from pipeline.seismic.curate import curate_seismic
    from pipeline.synthetic.seismic_network import generate_seismic_network
    from schemas.seismic import SeismicCurationParams, SeismicInputs

    net_dir = directory / "net"
    t = time.perf_counter()
    net = generate_seismic_network(net_dir, seed=0, n_stations=n_stations, n_events=n_events)
    print(f"generate: {time.perf_counter() - t:.1f} s, {net.n_observations} observations, "
          f"{net.n_channel_traces} channel traces, {len(net.waveform_files)} files")  # fmt: skip
    inputs = SeismicInputs.from_glob(net.waveform_glob, net.inventory, net.events, net.picks)
    out = directory / "seismic.zarr"
    t = time.perf_counter()
    s = curate_seismic(inputs, out, SeismicCurationParams())
    dt = time.perf_counter() - t
    n_in = s.n_added + s.n_new_rejects
    print(f"curate: {dt:.1f} s, {s.n_added} traces stored, {s.n_new_rejects} rejects; "
          f"{n_in / dt:.0f} traces/s, {s.n_files / dt:.1f} files/s")  # fmt: skip
    for k, v in s.timings_s.items():
        print(f"  {k:12s} {v:7.1f} s  ({100 * v / dt:4.1f} %)")


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--traces", type=int, default=10_000)
    ap.add_argument("--curate-demo", type=Path, default=None, help="directory for the demo network + store")
    ap.add_argument("--stations", type=int, default=280)
    ap.add_argument("--events", type=int, default=500)
    args = ap.parse_args()
    bench_spectrogram(args.traces)
    if args.curate_demo is not None:
        bench_curation(args.curate_demo, args.stations, args.events)
    else:
        with tempfile.TemporaryDirectory() as d:
            bench_curation(Path(d), 40, 30)


if __name__ == "__main__":
    main()
