"""Training of the multimodal GMM-VAE (no Prefect): :func:`train_vae` → :class:`VAEResult`.

Phases (all seeded; deterministic on the CPU through :func:`models.training.loop.train_context`):

1. warm-up: plain VAE (PoE posterior, ``N(0, I)`` prior, MLP decoders for every modality);
2. initialisation of the mixture by k-means of the training latent means (``mu_c``,
   ``var_c``, ``pi``) and of the physics abundances by non-negative least squares on the
   cluster mean spectra;
3. joint fit: closed-form VaDE ELBO, Adam on every parameter but ``mu_c``, which follows the
   streaming EM update (the paper's Algorithm 1) every ``em_every``-th batch;
4. cross-modal encoders: Adam on ``KL(q(Z|X_1..X_D) || q~(Z|X_m))`` (target detached).

Evaluation on the test fold: clustering accuracy (Hungarian) fused and per modality (cross
route), k-means baselines on the same spectra, cross-modal generation RMSE per modality vs
the class-agnostic mean spectrum, fingerprints, and a linear probe with ``label_budget``
labels per class.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

from models.runs import to_jsonable, write_history
from models.training.loop import resolve_device, train_context
from models.vae.data import VAEData, load_vae_data
from models.vae.evaluate import evaluate_vae
from models.vae.gaussians import StreamingMeans, kmeans, latent_expected_log_lik
from models.vae.library import SpectralLibrary, read_library_csv
from models.vae.model import MultimodalVAE, inverse_softplus
from models.vae.result import VAEResult
from pipeline.errors import InputError
from schemas.vae import VAETrainConfig

__all__ = [
    "CHECKPOINT_NAME",
    "load_vae",
    "reseed_dead_clusters",
    "save_vae_run",
    "train_vae",
]

CHECKPOINT_NAME = "model.pt"
CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------------


def _decoder_kinds(config: VAETrainConfig, modalities: list[str]) -> list[str]:
    unknown = sorted(set(config.decoder_overrides) - set(modalities))
    if unknown:
        raise InputError(
            f"decoder_overrides names unknown modalities {unknown}", fix=f"use names from {modalities}"
        )
    return [config.decoder_overrides.get(m, config.decoder) for m in modalities]


def _libraries(
    config: VAETrainConfig, data: VAEData, kinds: list[str], library: SpectralLibrary | None
) -> tuple[list[np.ndarray | None], list[str]]:
    if "physics" not in kinds:
        return [None] * len(kinds), []
    if library is None:
        if config.library_csv is None:
            raise InputError(
                "the physics decoder needs a spectral library",
                fix="set library_csv (wavelength_nm + one column per endmember; see docs/vae.md)",
            )
        library = read_library_csv(config.library_csv)
    libs: list[np.ndarray | None] = []
    for name, kind, wl in zip(data.modalities, kinds, data.wavelengths, strict=True):
        if kind != "physics":
            libs.append(None)
            continue
        if wl is None:
            raise InputError(
                f"modality {name!r} has no wavelengths, so the library cannot be resampled to it",
                fix=f"use decoder_overrides={{{name!r}: 'mlp'}} or a store with wavelength_{name}",
            )
        libs.append(library.resample(wl))
    return libs, list(library.names)


def _splits(data: VAEData, test_fold: int | None) -> tuple[Tensor, Tensor, int]:
    folds = data.hsi.folds
    tf = int(folds.max()) if test_fold is None else int(test_fold)
    test = folds == tf
    if not bool(test.any()):
        raise InputError(f"no sample in test fold {tf}", fix=f"pick one of {sorted(set(folds.tolist()))}")
    train = ~test
    if not bool(train.any()):  # a single fold: unsupervised fit and evaluation on everything
        train = torch.ones_like(test)
    return torch.nonzero(train).flatten(), torch.nonzero(test).flatten(), tf


def _gen(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _batches(idx: Tensor, batch_size: int, g: torch.Generator) -> list[Tensor]:
    perm = idx[torch.randperm(idx.numel(), generator=g, device=idx.device)]
    return list(perm.split(batch_size))


@torch.no_grad()
def _posterior_means(model: MultimodalVAE, x: Tensor, mask: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    mus, lvs = [], []
    for b in idx.split(4096):
        mu, lv = model.posterior(x[:, b], mask[:, b])
        mus.append(mu)
        lvs.append(lv)
    return torch.cat(mus), torch.cat(lvs)


@torch.no_grad()
def _init_mixture(
    model: MultimodalVAE, x: Tensor, mask: Tensor, idx: Tensor, seed: int, em_iters: int = 20
) -> None:
    """Initialise the mixture with the encoders frozen: k-means of the training latent means,
    then ``em_iters`` full-batch EM iterations of the ELBO in the mixture parameters.

    E-step: the ELBO-optimal ``q(c|X) ∝ pi_c exp(E_q[log p(Z|c)] + sum_physics log p(X_m|c))``
    (VaDE's ``p(c|Z)`` replaces it only once the encoders train). M-step: ``pi``, ``mu_c``,
    ``var_c`` (weighted moments), abundances by NNLS on the responsibility-weighted cluster
    mean spectra (the exact minimiser under ``a >= 0``) and the physics decoder variances.
    """
    mu, lv = _posterior_means(model, x, mask, idx)
    mu, lv = mu.double(), lv.double()
    _, assign = kmeans(mu, model.n_clusters, seed=seed)
    r = torch.nn.functional.one_hot(assign, model.n_clusters).double()  # [N, C]
    xs = model.clean(x[:, idx], mask[:, idx]).double()
    ms = mask[:, idx]
    phys = [] if model.physics is None else model.physics.modalities
    for it in range(em_iters + 1):
        # M-step
        mass = r.sum(0).clamp_min(1e-6)
        model.pi_logits.copy_(torch.log(mass / mass.sum()).to(model.pi_logits))
        mu_c = (r.T @ mu) / mass.unsqueeze(-1)
        model.mu_c.copy_(mu_c.to(model.mu_c))
        if model.logvar_c.requires_grad:
            second = (r.T @ (torch.exp(lv) + mu**2)) / mass.unsqueeze(-1) - mu_c**2
            model.logvar_c.copy_(torch.log(second.clamp_min(1e-3)).to(model.logvar_c))
        if model.physics is not None:
            for c in range(model.n_clusters):
                rows_a, rows_b = [], []
                for i in phys:
                    w = r[:, c] * ms[i].double()
                    if float(w.sum()) > 1e-6:
                        rows_a.append(model.physics.library(i).T.double().cpu().numpy())
                        xm = (w.unsqueeze(-1) * xs[i, :, : model.in_dims[i]]).sum(0) / w.sum()
                        rows_b.append(xm.cpu().numpy())
                if rows_a:
                    a, _ = nnls(np.concatenate(rows_a), np.concatenate(rows_b))
                    model.physics.raw_abundance[c] = inverse_softplus(
                        torch.as_tensor(a + 1e-4, dtype=torch.float32)
                    ).to(model.physics.raw_abundance)
            for i in phys:
                d = model.in_dims[i]
                _, sc = model.physics_log_lik(i, xs[i, :, :d].to(model.dec_logvar))
                e = sc.double().unsqueeze(-1) * model.physics.means(i).double().unsqueeze(0)  # [N, C, D]
                res2 = (xs[i, :, :d].unsqueeze(1) - e) ** 2  # [N, C, D]
                w = r * ms[i].double().unsqueeze(-1)
                v = (w.unsqueeze(-1) * res2).sum((0, 1)) / w.sum().clamp_min(1e-6)
                model.dec_logvar[i, :d] = torch.log(v.clamp_min(model.min_var[i] * 1.01)).to(model.dec_logvar)
        if it == em_iters:
            break
        # E-step
        logr = model.log_pi.double().unsqueeze(0) + latent_expected_log_lik(
            mu, lv, model.mu_c.double(), model.logvar_c.double()
        )
        for i in phys:
            assert model.physics is not None
            d = model.in_dims[i]
            ll = model.physics_log_lik(i, xs[i, :, :d].to(model.dec_logvar))[0].double()
            logr = logr + torch.where(
                ms[i].unsqueeze(-1), ll, torch.zeros((), dtype=ll.dtype, device=ll.device)
            )
        r = torch.softmax(logr, dim=-1)


@torch.no_grad()
def reseed_dead_clusters(model: MultimodalVAE, mass: Tensor, fraction: float) -> list[int]:
    """Split the heaviest cluster into every cluster whose EM mass is below ``fraction`` × the
    mean mass (the usual empty-cluster repair of k-means/EM): the dead cluster takes the heavy
    one's mean shifted by +½ sigma along its widest latent axis (the heavy one moves by −½
    sigma), its variances, half its weight and its abundances. Returns the re-seeded clusters."""
    mass = mass.detach().double().cpu()
    if float(mass.sum()) <= 0:
        return []
    dead = [int(c) for c in torch.nonzero(mass < fraction * mass.mean()).flatten()]
    moved: list[int] = []
    for c in dead:
        big = int(mass.argmax())
        if big == c:
            continue
        sd = torch.exp(0.5 * model.logvar_c[big])
        axis = int(sd.argmax())
        shift = torch.zeros_like(sd)
        shift[axis] = 0.5 * sd[axis]
        model.mu_c[c] = model.mu_c[big] + shift
        model.mu_c[big] = model.mu_c[big] - shift
        model.logvar_c[c] = model.logvar_c[big]
        half = model.pi_logits[big] - math.log(2.0)
        model.pi_logits[big] = half
        model.pi_logits[c] = half
        if model.physics is not None:
            model.physics.raw_abundance[c] = model.physics.raw_abundance[big]
        mass[big] = mass[c] = mass[big] / 2
        moved.append(c)
    return moved


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def _fit_phase(
    phase: str,
    epochs: int,
    params: list[torch.nn.Parameter],
    lr: float,
    step_loss: Any,
    train_idx: Tensor,
    batch_size: int,
    g: torch.Generator,
    history: list[dict[str, float]],
    on_epoch_start: Any = None,
) -> None:
    if epochs == 0:
        return
    opt = torch.optim.Adam(params, lr=lr)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        if on_epoch_start is not None:
            on_epoch_start()
        sums: dict[str, float] = {}
        n = 0
        for b in _batches(train_idx, batch_size, g):
            loss, parts = step_loss(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            k = int(b.numel())
            n += k
            for key, val in {"loss": loss.detach(), **parts}.items():
                sums[key] = sums.get(key, 0.0) + float(val) * k
        row: dict[str, float] = {"phase": phase, "epoch": float(epoch)}  # type: ignore[dict-item]
        row.update({key: v / max(n, 1) for key, v in sums.items()})
        row["epoch_time_s"] = time.perf_counter() - t0
        history.append(row)


def train_vae(
    config: VAETrainConfig, data: VAEData | None = None, library: SpectralLibrary | None = None
) -> VAEResult:
    """Fit the multimodal GMM-VAE of ``config`` (on ``data`` or ``config.store``), evaluate it on
    the test fold and, when ``config.out_dir`` is set, write the run folder (:func:`save_vae_run`)."""
    t_start = time.perf_counter()
    device = resolve_device(config.device)
    if data is None:
        if config.store is None:
            raise InputError("no data: give config.store (an HSI data.zarr) or pass data", fix="set store")
        data = load_vae_data(config.store, config.modalities)
    hsi = data.hsi
    kinds = _decoder_kinds(config, data.modalities)
    libs, lib_names = _libraries(config, data, kinds, library)
    train_idx, test_idx, test_fold = _splits(data, config.test_fold)
    n_clusters = config.n_clusters or len(hsi.class_names)
    unknown = sorted(set(config.min_var_overrides) - set(data.modalities))
    if unknown:
        raise InputError(
            f"min_var_overrides names unknown modalities {unknown}", fix=f"use {data.modalities}"
        )
    min_vars = [config.min_var_overrides.get(m, config.min_var) for m in data.modalities]
    x = hsi.x.to(device)
    mask = hsi.mask.to(device)
    train_idx, test_idx = train_idx.to(device), test_idx.to(device)
    sel = torch.zeros(hsi.n, dtype=torch.bool)
    sel[train_idx.cpu()] = True
    band_mean, band_std = hsi.band_stats(sel)

    history: list[dict[str, float]] = []
    with train_context(config.seed, device):
        model = MultimodalVAE(
            hsi.in_dims,
            latent_dim=config.latent_dim,
            n_clusters=n_clusters,
            hidden=config.hidden,
            encoder=config.encoder,
            decoders=kinds,
            libraries=libs,
            learn_cluster_var=config.learn_cluster_var,
            min_var=min_vars,
            physics_scale=config.physics_scale,
        ).to(device)
        model.set_input_stats(band_mean.to(device), band_std.to(device))
        with torch.no_grad():
            floors = torch.tensor(min_vars, device=device).unsqueeze(-1)
            model.dec_logvar.copy_(torch.log(torch.maximum(band_std.to(device) ** 2, 2 * floors)))
        g = _gen(config.seed, device)
        bs = config.batch_size

        joint = [
            p for n_, p in model.named_parameters() if not n_.startswith("cross_encoders") and p.requires_grad
        ]
        warm = [
            p
            for n_, p in model.named_parameters()
            if n_.split(".")[0] in ("encoders", "decoders", "dec_logvar")
        ]

        def warm_step(b: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            loss = -model.warmup_elbo(x[:, b], mask[:, b], g).mean()
            return loss, {}

        _fit_phase("warmup", config.warmup_epochs, warm, config.lr, warm_step, train_idx, bs, g, history)
        _init_mixture(model, x, mask, train_idx, config.seed, config.init_em_iters)

        em = StreamingMeans(n_clusters, config.latent_dim, device)
        step = {"n": 0}

        def joint_step(b: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            out = model.elbo(x[:, b], mask[:, b], g)
            if step["n"] % config.em_every == 0:  # EM update of mu_c, then Adam on the rest
                em.update(out["gamma"], out["mu"])
                with torch.no_grad():
                    model.mu_c.copy_(em.means(model.mu_c, min_mass=1.0))
            step["n"] += 1
            loss = -out["elbo"].mean()
            return loss, {"recon": -out["recon"].detach().mean(), "latent": -out["latent"].detach().mean()}

        epoch_no = {"n": 0}
        reseeded: list[int] = []

        def joint_epoch_start() -> None:
            # empty-cluster repair from the previous epoch's EM mass (first 3/4 of the epochs)
            if config.reseed_dead and 0 < epoch_no["n"] < 0.75 * config.epochs:
                reseeded.extend(reseed_dead_clusters(model, em.mass, config.dead_fraction))
            epoch_no["n"] += 1
            em.reset()

        _fit_phase(
            "joint",
            config.epochs,
            joint,
            config.lr,
            joint_step,
            train_idx,
            bs,
            g,
            history,
            on_epoch_start=joint_epoch_start,
        )

        cross = list(model.cross_encoders.parameters())

        def cross_step(b: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            kl = model.cross_kl(x[:, b], mask[:, b])
            return kl.sum(0).mean(), {}

        _fit_phase(
            "cross", config.cross_epochs, cross, config.cross_lr, cross_step, train_idx, bs, g, history
        )
        model.eval()
        metrics, extras = evaluate_vae(model, data, train_idx.cpu(), test_idx.cpu(), config)
    metrics.update(
        {
            "kind": "vae",
            "device": str(device),
            "test_fold": test_fold,
            "n_train": int(train_idx.numel()),
            "n_test": int(test_idx.numel()),
            "wall_time_s": time.perf_counter() - t_start,
            "n_reseeded_clusters": len(reseeded),
            "final_loss": {
                ph: next((r["loss"] for r in reversed(history) if r["phase"] == ph), None)
                for ph in ("warmup", "joint", "cross")
            },
        }
    )
    meta = {
        "kind": "vae",
        "architecture": model.architecture(),
        "modalities": data.modalities,
        "class_names": list(hsi.class_names),
        "wavelengths": [None if w is None else [float(v) for v in w] for w in data.wavelengths],
        "library_names": lib_names,
    }
    result = VAEResult(model=model, config=config, history=history, metrics=metrics, meta=meta, extras=extras)
    if config.out_dir is not None:
        result.run_dir = save_vae_run(result, Path(config.out_dir))
    return result


# --------------------------------------------------------------------------------------------
# run folder and checkpoint
# --------------------------------------------------------------------------------------------


def save_vae_run(result: VAEResult, out_dir: Path) -> Path:
    """Write ``config.json``, ``metrics.json``, ``history.csv``, ``model.pt`` and the PNG plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = to_jsonable(result.config.model_dump(mode="json"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(to_jsonable(result.metrics), indent=2) + "\n")
    write_history(out_dir / "history.csv", result.history)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save(
        {"format": CHECKPOINT_FORMAT, "kind": "vae", "model": state, "config": config, "meta": result.meta},
        out_dir / CHECKPOINT_NAME,
    )
    if result.config.plots:
        from models.vae.plots import save_plots

        save_plots(result, out_dir)
    return out_dir


def load_vae(path: str | Path) -> tuple[MultimodalVAE, dict[str, Any]]:
    """Rebuild a trained model from ``model.pt`` (or its run folder), ``weights_only=True``."""
    p = Path(path)
    f = p / CHECKPOINT_NAME if p.is_dir() else p
    if not f.is_file():
        raise InputError("no VAE checkpoint here", path=f, fix="give a run folder written by train_vae")
    ckpt: dict[str, Any] = torch.load(f, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("kind") != "vae":
        raise InputError("not a VAE checkpoint of a known format", path=f)
    arch = dict(ckpt["meta"]["architecture"])
    n_end = int(arch.pop("n_endmembers"))
    state = ckpt["model"]
    libs: list[Tensor | None] = [
        state.get(f"physics.library_{i}") if k == "physics" else None for i, k in enumerate(arch["decoders"])
    ]
    in_dims = arch.pop("in_dims")
    model = MultimodalVAE(in_dims, libraries=libs, **arch)
    if model.physics is not None and model.physics.raw_abundance.shape[1] != n_end:
        raise InputError("library size does not match the checkpoint", path=f)
    model.load_state_dict(state)
    model.eval()
    return model, ckpt
