"""Benchmark: sweep throughput, HSI trials one at a time vs K trials at once on one device.

Run: ``python bench/sweep.py [--device cpu|cuda|auto] [--k 8] [--epochs 2] [--n 37000]``
(``--device cuda --k 64`` on a GPU). Needs only torch + numpy (no zarr, xarray, pydantic or
prefect). Data: synthetic, demo-shaped (6 modalities, 62–130 bands, 10 classes, ``--n``
samples, batch 500). Trials: K Hydra+EMIN (fixed α) configurations of one family (3 backbone
layers) with widths drawn from the Table 2 range 10–120 and log-uniform lr / weight decay.
One at a time: :func:`models.training.loop.hsi_epoch` per trial (Hydra + ``torch.optim.Adam``). At
once: :func:`models.training.stacked.stacked_hsi_epoch` (:class:`models.training.stacked.StackedHydra` padded to
the widest trial + :class:`models.training.stacked.StackedAdam`). ``--width W`` gives every trial width W (no padding). Settings are interleaved, the first
round is a warm-up and the best epoch is reported. Trials/hour assume ``--trial-epochs``
training epochs per trial (evaluation excluded).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.nets import Hydra
from models.synthetic import synthetic_hsi
from models.training.hsi import hsi_epoch
from models.training.loop import resolve_device
from models.training.stacked import stacked_hsi_epoch
from models.training.stacked_hydra import StackedAdam, StackedHydra

BANDS = (66, 62, 70, 110, 120, 130)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class SweepTiming:
    """Best epoch times of K trials one at a time vs at once, and the trials/hour they give."""

    device: str
    k: int
    per_trial_s: float  # one epoch of one trial, trained alone (mean over the K trials)
    stacked_s: float  # one epoch of all K trials at once
    trial_epochs: int

    @property
    def trials_per_hour_one(self) -> float:
        return 3600.0 / (self.per_trial_s * self.trial_epochs)

    @property
    def trials_per_hour_stacked(self) -> float:
        return 3600.0 * self.k / (self.stacked_s * self.trial_epochs)

    def lines(self) -> list[str]:
        """The printed report."""
        return [
            f"  one at a time: {self.per_trial_s:8.3f} s/epoch per trial (mean of K)",
            f"  K at once:     {self.stacked_s:8.3f} s/epoch for all {self.k} trials",
            f"  trials/hour at {self.trial_epochs} epochs/trial: one at a time {self.trials_per_hour_one:10.1f}, "
            f"K at once {self.trials_per_hour_stacked:10.1f}  "
            f"({self.trials_per_hour_stacked / self.trials_per_hour_one:.2f}x)",
        ]


def measure(
    device_name: str = "auto",
    *,
    k: int = 8,
    epochs: int = 2,
    n: int = 37000,
    batch: int = 500,
    layers: int = 3,
    width: int = 0,
    trial_epochs: int = 30,
    amp: bool = True,
) -> SweepTiming:
    """Time K Hydra+EMIN trials one at a time and at once (see the module docstring)."""
    device = resolve_device(device_name)
    rng = np.random.default_rng(0)
    widths = [width] * k if width else [int(w) for w in rng.integers(10, 121, k)]
    lrs = [float(v) for v in 10 ** rng.uniform(-5, -2, k)]
    wds = [float(v) for v in 10 ** rng.uniform(-8, -1, k)]
    alpha = 0.05
    data = synthetic_hsi(n=n, in_dims=BANDS, n_classes=10, seed=0).to(device)
    labelled = torch.ones(data.n, dtype=torch.bool, device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    singles = []
    for i, w in enumerate(widths):
        torch.manual_seed(i)
        net = Hydra(BANDS, 10, width=w, hidden=[w] * layers).to(device)
        singles.append((net, torch.optim.Adam(net.parameters(), lr=lrs[i], weight_decay=wds[i])))
    stacked = StackedHydra.from_models([net for net, _ in singles])
    sopt = StackedAdam(list(stacked.parameters()), lrs, wds)
    alphas = torch.full((k,), alpha, device=device)
    print(f"device {device}, K = {k}, n = {data.n}, batch {batch}, widths {sorted(widths)}", flush=True)
    t_single: list[float] = []
    t_stack: list[float] = []
    for e in range(epochs + 1):
        total = 0.0
        for net, opt in singles:
            order = torch.randperm(data.n, generator=gen, device=device)
            _sync(device)
            t = time.perf_counter()
            hsi_epoch(net, opt, data, order, labelled, batch_size=batch, alpha=alpha, amp=amp).tolist()
            _sync(device)
            total += time.perf_counter() - t
        order_k = torch.stack([torch.randperm(data.n, generator=gen, device=device) for _ in range(k)])
        _sync(device)
        t = time.perf_counter()
        stacked_hsi_epoch(stacked, sopt, data, order_k, batch_size=batch, alpha=alphas, amp=amp).tolist()
        _sync(device)
        if e:  # the first round is a warm-up
            t_single.append(total)
            t_stack.append(time.perf_counter() - t)
    return SweepTiming(str(device), k, min(t_single) / k, min(t_stack), trial_epochs)


def main() -> None:
    """Parse arguments, time both ways, print epoch times, speed-up and trials/hour."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--k", type=int, default=8, help="trials at once")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    ap.add_argument("--n", type=int, default=37000, help="training samples")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--width", type=int, default=0, help="one width for every trial (0 = random 10-120)")
    ap.add_argument("--trial-epochs", type=int, default=30, help="epochs per trial for trials/hour")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    timing = measure(
        args.device,
        k=args.k,
        epochs=args.epochs,
        n=args.n,
        batch=args.batch,
        layers=args.layers,
        width=args.width,
        trial_epochs=args.trial_epochs,
        amp=not args.no_amp,
    )
    print("\n".join(timing.lines()))


if __name__ == "__main__":
    main()
