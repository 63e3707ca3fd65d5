"""Benchmark: Hydra training, baseline vs EMIN, and the seismic CNN, on synthetic tensors.

Run: ``python bench/train.py [--device auto|cpu|cuda] [--epochs 3] [--vgg small,vgg16]``.
Needs only torch + numpy (no zarr, xarray or prefect), so it runs on a bare GPU box. It times
the real training code (:func:`models.training.loop.hsi_epoch`, :func:`models.training.loop.seismic_epoch`) on
data of the demo shapes: 6 modalities, 37k samples, 60–130 bands, batch 500; VGG on
3 × 51 × 120 spectrograms. It prints epoch time and samples/s per setting and the EMIN
overhead relative to the baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.nets import SMALL_VGG, VGG_CFGS, Hydra, VGGRegressor, shared_parameters
from models.synthetic import synthetic_hsi, synthetic_seismic
from models.training.hsi import hsi_epoch
from models.training.loop import resolve_device
from models.training.seismic import seismic_epoch

BANDS = (66, 62, 70, 110, 120, 130)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_hsi(device: torch.device, n: int, batch: int, epochs: int, amp: bool) -> dict[str, float]:
    """Seconds per epoch of Hydra training for baseline, EMIN (fixed α), EMIN-MGDA."""
    data = synthetic_hsi(n=n, in_dims=BANDS, n_classes=10, seed=0).to(device)
    n_train = data.n
    labelled = torch.ones(n_train, dtype=torch.bool, device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    settings = {"baseline": 1.0, "emin": 0.5, "emin-mgda": None}
    runs = {}
    for name, alpha in settings.items():
        torch.manual_seed(0)
        model = Hydra(BANDS, 10, width=120, hidden=(120, 120, 120)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        runs[name] = (model, opt, shared_parameters(model) if alpha is None else [])
    times: dict[str, list[float]] = {name: [] for name in settings}
    for e in range(epochs + 1):  # first round is warm-up; settings interleaved so load hits all alike
        for name, alpha in settings.items():
            model, opt, shared = runs[name]
            order = torch.randperm(n_train, generator=gen, device=device)
            _sync(device)
            t = time.perf_counter()
            means = hsi_epoch(
                model, opt, data, order, labelled, batch_size=batch, alpha=alpha, shared=shared, amp=amp
            )
            means.tolist()  # the one host sync per epoch the trainer does
            _sync(device)
            if e:
                times[name].append(time.perf_counter() - t)
    results = {name: min(ts) for name, ts in times.items()}
    for name, sec in results.items():
        print(f"  hydra {name:10s}: {sec:7.3f} s/epoch (best of {epochs})  {n_train / sec:10.0f} samples/s")
    base = results["baseline"]
    print(f"  EMIN overhead vs baseline: {100 * (results['emin'] / base - 1):+.1f} %   "
          f"(MGDA: {100 * (results['emin-mgda'] / base - 1):+.1f} %)")  # fmt: skip
    return results


def bench_seismic(device: torch.device, arch: str, n: int, batch: int, steps: int, amp: bool) -> None:
    """Samples/s of the location CNN, supervised only and with seismic EMIN."""
    data = synthetic_seismic(n_events=max(n // 8, 2), stations_per_event=8, n_freq=51, n_time=120, seed=0)
    data = data.to(device)
    target = torch.stack([data.distance_km / 100.0, data.sin_baz, data.cos_baz], dim=1)
    labelled = torch.ones(data.n, dtype=torch.bool, device=device)
    cfg = SMALL_VGG if arch == "small" else VGG_CFGS[arch]
    for name, alpha in (("baseline", 1.0), ("emin", 0.5)):
        torch.manual_seed(0)
        model = VGGRegressor(3, cfg=cfg, head_hidden=(256,)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        order = torch.arange(batch * (steps + 1), device=device) % data.n
        seismic_epoch(
            model, opt, data, target, order[:batch], labelled, batch_size=batch, alpha=alpha, amp=amp
        )
        _sync(device)
        t = time.perf_counter()
        means = seismic_epoch(
            model, opt, data, target, order[batch:], labelled, batch_size=batch, alpha=alpha, amp=amp
        )
        means.tolist()
        _sync(device)
        dt = time.perf_counter() - t
        print(f"  {arch:6s} {name:9s}: {dt / steps:7.3f} s/step (batch {batch})  {steps * batch / dt:9.1f} samples/s",
              flush=True)  # fmt: skip


def main() -> None:
    """Parse arguments and run both benchmarks."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (cuda when present) | cpu | cuda")
    ap.add_argument("--samples", type=int, default=37_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    ap.add_argument("--vgg", default="small,vgg16", help="comma list of seismic archs")
    ap.add_argument("--seismic-batch", type=int, default=0, help="0 = 32 on CPU, 256 on CUDA")
    ap.add_argument("--seismic-steps", type=int, default=3)
    ap.add_argument("--no-amp", action="store_true", help="fp32 on CUDA (default bf16 autocast)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    amp = not args.no_amp
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()} threads"
    )
    print(
        f"torch {torch.__version__} on {device} ({name}), amp={'bf16' if amp and device.type == 'cuda' else 'off'}"
    )
    print(
        f"HSI Hydra (6 modalities, bands {BANDS}, {args.samples} samples, batch {args.batch}, width 120, 3x120 backbone)"
    )
    bench_hsi(device, args.samples, args.batch, args.epochs, amp)
    sb = args.seismic_batch or (256 if device.type == "cuda" else 32)
    print("seismic VGG regressor on 3 x 51 x 120")
    for arch in [a.strip() for a in args.vgg.split(",") if a.strip()]:
        bench_seismic(device, arch, max(sb * (args.seismic_steps + 1), 64), sb, args.seismic_steps, amp)


if __name__ == "__main__":
    main()
