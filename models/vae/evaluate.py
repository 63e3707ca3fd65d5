"""Evaluation of a fitted multimodal VAE: clustering accuracy (Hungarian), cross-modal
reconstruction, fingerprints and the few-label linear probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.vae.data import VAEData
from models.vae.gaussians import kmeans
from models.vae.metrics import cluster_accuracy, cluster_label_map, linear_probe, masked_rmse
from models.vae.model import MultimodalVAE
from schemas.vae import VAETrainConfig

CHECKPOINT_FORMAT = 1


def _per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


@dataclass
class _Eval:
    """What every part of the evaluation reads: the model, the data on its device, the folds."""

    model: MultimodalVAE
    data: VAEData
    x: Tensor
    mask: Tensor
    labels: Tensor
    tr: Tensor
    te: Tensor
    test_idx: Tensor

    def run(self, fn: Any, idx: Tensor) -> list[Tensor]:
        """``fn(x, mask)`` over ``idx`` in chunks of 4096 samples, outputs concatenated."""
        dev = self.x.device
        parts = [fn(self.x[:, b.to(dev)], self.mask[:, b.to(dev)]) for b in idx.split(4096)]
        return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]

    def fused(self, xb: Tensor, mb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Posterior mean/log-variance over the present modalities and p(c | X)."""
        mu, lv = self.model.posterior(xb, mb)
        return mu, lv, self.model.cluster_probs(mu, lv)


def _solo(mb: Tensor, i: int) -> Tensor:
    """The presence mask with only modality ``i`` kept."""
    solo = torch.zeros_like(mb)
    solo[i] = mb[i]
    return solo


def _cluster_accuracies(ev: _Eval, clusters_all: Tensor) -> dict[str, Any]:
    """Hungarian clustering accuracy: fused, cross-modal (unimodal encoders), per modality."""
    model, te, y_te = ev.model, ev.te, ev.labels[ev.te]
    acc: dict[str, Any] = {
        "fused": cluster_accuracy(clusters_all[te], y_te),
        "fused_train": cluster_accuracy(clusters_all[ev.tr], ev.labels[ev.tr]),
    }
    if model.physics is not None:
        (p_opt,) = ev.run(lambda xb, mb: (model.elbo_optimal_cluster_probs(xb, mb),), ev.test_idx)
        acc["fused_elbo_optimal"] = cluster_accuracy(p_opt.argmax(1), y_te)
    _, _, p_cross = ev.run(lambda xb, mb: model.cross_posterior(xb, mb), ev.test_idx)
    acc["cross_fused"] = cluster_accuracy(p_cross.argmax(1), y_te)
    per_mod: dict[str, Any] = {}
    joint_uni: dict[str, Any] = {}
    for i, name in enumerate(ev.data.hsi.modalities):
        pres = ev.mask[i, te]
        _, _, p_i = ev.run(lambda xb, mb, i=i: model.cross_posterior(xb, _solo(mb, i)), ev.test_idx)
        _, _, pj = ev.run(lambda xb, mb, i=i: ev.fused(xb, _solo(mb, i)), ev.test_idx)
        agree = (p_i.argmax(1)[pres] == clusters_all[te][pres]).double().mean()
        per_mod[name] = {
            "accuracy": cluster_accuracy(p_i.argmax(1)[pres], y_te[pres]),
            "agreement_with_fused": float(agree) if bool(pres.any()) else float("nan"),
            "n": int(pres.sum()),
        }
        joint_uni[name] = cluster_accuracy(pj.argmax(1)[pres], y_te[pres])
    acc["per_modality_cross"] = per_mod
    acc["per_modality_joint_encoder"] = joint_uni
    return acc


def _kmeans_baselines(ev: _Eval, seed: int) -> dict[str, Any]:
    """k-means on the standardised spectra, per modality and concatenated (mean-imputed)."""
    model, hsi, tr, te = ev.model, ev.data.hsi, ev.tr, ev.te
    xs = (model.clean(ev.x, ev.mask) - model.in_mean.unsqueeze(1)) / model.in_std.unsqueeze(1)
    xs = torch.where(ev.mask.unsqueeze(-1), xs, torch.zeros((), device=ev.x.device))
    km: dict[str, Any] = {}
    for i, name in enumerate(hsi.modalities):
        tr_i, te_i, d = tr[ev.mask[i, tr]], te[ev.mask[i, te]], hsi.in_dims[i]
        if tr_i.numel() >= model.n_clusters and te_i.numel():
            cen, _ = kmeans(xs[i, tr_i, :d], model.n_clusters, seed=seed, n_init=2)
            nearest = torch.cdist(xs[i, te_i, :d].double(), cen.double()).argmin(1)
            km[name] = cluster_accuracy(nearest, ev.labels[te_i])
    cat = torch.cat([xs[i, :, : hsi.in_dims[i]] for i in range(len(hsi.modalities))], dim=1)
    cen, _ = kmeans(cat[tr], model.n_clusters, seed=seed, n_init=2)
    nearest = torch.cdist(cat[te].double(), cen.double()).argmin(1)
    km["concatenated_mean_imputed"] = cluster_accuracy(nearest, ev.labels[te])
    return km


def _cross_modal_generation(ev: _Eval) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each modality generated from the others (test fold): RMSE vs the mean spectrum, examples."""
    model, hsi, x, mask, tr, te = ev.model, ev.data.hsi, ev.x, ev.mask, ev.tr, ev.te
    rmse: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    for j, name in enumerate(hsi.modalities):
        d = hsi.in_dims[j]
        others = mask[:, te].clone()
        others[j] = False
        ok = mask[j, te] & others.any(0)
        if not bool(ok.any()):
            continue
        sel = te[ok]
        mean, var = model.generate(j, x[:, sel], mask[:, sel])
        target = x[j, sel, :d]
        base = x[j, tr[mask[j, tr]], :d].mean(0, keepdim=True).expand_as(target)
        every = torch.ones(target.shape[0], dtype=torch.bool, device=x.device)
        sampled = (
            masked_rmse(model.generate(j, x[:, sel], mask[:, sel], route="sample")[0], target, every)
            if model.decoder_kinds[j] == "mlp"
            else None
        )
        rmse[name] = {
            "model": masked_rmse(mean, target, every),
            "model_sampled": sampled,
            "mean_spectrum_baseline": masked_rmse(base, target, every),
            "mean_predicted_std": float(var.sqrt().mean()),
            "coverage_2sigma": float(((mean - target).abs() <= 2 * var.sqrt()).double().mean()),
            "n": int(target.shape[0]),
        }
        k = min(4, target.shape[0])
        examples[name] = {
            "target": target[:k].cpu().numpy(),
            "mean": mean[:k].cpu().numpy(),
            "std": var[:k].sqrt().cpu().numpy(),
        }
    return rmse, examples


def _fingerprints(ev: _Eval, clusters_all: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ± σ spectrum of the samples assigned to each cluster per modality, and the decoded one."""
    model, hsi, x, mask = ev.model, ev.data.hsi, ev.x, ev.mask
    fp_mean = np.full((model.n_clusters, len(hsi.modalities), max(hsi.in_dims)), np.nan)
    fp_std = np.full_like(fp_mean, np.nan)
    decoded = np.full_like(fp_mean, np.nan)
    for i, d in enumerate(hsi.in_dims):
        decoded[:, i, :d] = model.cluster_spectra(i).cpu().numpy()
        for c in range(model.n_clusters):
            s = mask[i] & (clusters_all == c)
            if bool(s.any()):
                fp_mean[c, i, :d] = x[i, s, :d].mean(0).cpu().numpy()
                fp_std[c, i, :d] = x[i, s, :d].std(0, unbiased=False).cpu().numpy()
    return fp_mean, fp_std, decoded


@torch.no_grad()
def evaluate_vae(
    model: MultimodalVAE, data: VAEData, train_idx: Tensor, test_idx: Tensor, config: VAETrainConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics (JSON-ready) and plot arrays of a fitted model on ``test_idx`` (see module doc)."""
    hsi = data.hsi
    dev = model.mu_c.device
    ev = _Eval(
        model, data, hsi.x.to(dev), hsi.mask.to(dev), hsi.labels.to(dev),
        train_idx.to(dev), test_idx.to(dev), test_idx,
    )  # fmt: skip
    n_classes = len(hsi.class_names)
    mu_all, _, p_all = ev.run(ev.fused, torch.arange(hsi.n))
    clusters_all = p_all.argmax(1)
    y_te = ev.labels[ev.te]
    rmse, recon_examples = _cross_modal_generation(ev)
    fp_mean, fp_std, decoded = _fingerprints(ev, clusters_all)
    cmap = cluster_label_map(clusters_all[ev.te].cpu(), y_te.cpu())
    # linear probe on the fused latent means with label_budget labels per class (train folds)
    pick = _per_class_subset(ev.labels[ev.tr].cpu().numpy(), config.label_budget, config.seed)
    probe = linear_probe(
        mu_all[ev.tr][pick].cpu(), ev.labels[ev.tr][pick].cpu(), mu_all[ev.te].cpu(), y_te.cpu(),
        n_classes, seed=config.seed,
    )  # fmt: skip
    probe["per_class"] = config.label_budget
    metrics: dict[str, Any] = {
        "modalities": list(hsi.modalities),
        "class_names": list(hsi.class_names),
        "decoders": list(model.decoder_kinds),
        "n_clusters": model.n_clusters,
        "clustering_accuracy": _cluster_accuracies(ev, clusters_all),
        "kmeans_accuracy": _kmeans_baselines(ev, config.seed),
        "cross_modal_rmse": rmse,
        "linear_probe": probe,
        "cluster_to_label": {
            str(c): hsi.class_names[lab] if lab < n_classes else str(lab) for c, lab in cmap.items()
        },
        "cluster_sizes": torch.bincount(clusters_all, minlength=model.n_clusters).tolist(),
        "pi": torch.softmax(model.pi_logits, 0).tolist(),
    }
    extras: dict[str, Any] = {
        "latent": mu_all.cpu().numpy(),
        "clusters": clusters_all.cpu().numpy(),
        "labels": ev.labels.cpu().numpy(),
        "mu_c": model.mu_c.cpu().numpy(),
        "fingerprint_mean": fp_mean,
        "fingerprint_std": fp_std,
        "fingerprint_decoded": decoded,
        "recon_examples": recon_examples,
        "wavelengths": data.wavelengths,
        "in_dims": list(hsi.in_dims),
    }
    if model.physics is not None:
        metrics["abundances"] = model.physics.abundances().tolist()
        extras["abundances"] = model.physics.abundances().detach().cpu().numpy()
    return metrics, extras
