"""Evaluation of a fitted multimodal VAE: clustering accuracy (Hungarian), cross-modal
reconstruction, fingerprints and the few-label linear probe."""

from __future__ import annotations

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


@torch.no_grad()
def evaluate_vae(
    model: MultimodalVAE, data: VAEData, train_idx: Tensor, test_idx: Tensor, config: VAETrainConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics (JSON-ready) and plot arrays of a fitted model on ``test_idx`` (see module doc)."""
    hsi = data.hsi
    dev = model.mu_c.device
    x = hsi.x.to(dev)
    mask = hsi.mask.to(dev)
    labels = hsi.labels.to(dev)
    m_count = len(hsi.modalities)
    n_classes = len(hsi.class_names)

    def run(fn: Any, idx: Tensor) -> list[Tensor]:
        parts = [fn(x[:, b.to(dev)], mask[:, b.to(dev)]) for b in idx.split(4096)]
        return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]

    def fused(xb: Tensor, mb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, lv = model.posterior(xb, mb)
        return mu, lv, model.cluster_probs(mu, lv)

    all_idx = torch.arange(hsi.n)
    mu_all, _, p_all = run(fused, all_idx)
    clusters_all = p_all.argmax(1)
    te = test_idx.to(dev)
    tr = train_idx.to(dev)
    y_te = labels[te]
    acc: dict[str, Any] = {
        "fused": cluster_accuracy(clusters_all[te], y_te),
        "fused_train": cluster_accuracy(clusters_all[tr], labels[tr]),
    }
    if model.physics is not None:
        (p_opt,) = run(lambda xb, mb: (model.elbo_optimal_cluster_probs(xb, mb),), test_idx)
        acc["fused_elbo_optimal"] = cluster_accuracy(p_opt.argmax(1), y_te)
    _, _, p_cross = run(lambda xb, mb: model.cross_posterior(xb, mb), test_idx)
    acc["cross_fused"] = cluster_accuracy(p_cross.argmax(1), y_te)
    per_mod: dict[str, Any] = {}
    joint_uni: dict[str, Any] = {}
    for i, name in enumerate(hsi.modalities):
        pres = mask[i, te]
        only = torch.zeros_like(mask)
        only[i] = mask[i]

        def one(xb: Tensor, mb: Tensor, i: int = i) -> tuple[Tensor, Tensor, Tensor]:
            solo = torch.zeros_like(mb)
            solo[i] = mb[i]
            return model.cross_posterior(xb, solo)

        def one_joint(xb: Tensor, mb: Tensor, i: int = i) -> tuple[Tensor, Tensor, Tensor]:
            solo = torch.zeros_like(mb)
            solo[i] = mb[i]
            return fused(xb, solo)

        _, _, p_i = run(one, test_idx)
        _, _, pj = run(one_joint, test_idx)
        per_mod[name] = {
            "accuracy": cluster_accuracy(p_i.argmax(1)[pres], y_te[pres]),
            "agreement_with_fused": float((p_i.argmax(1)[pres] == clusters_all[te][pres]).double().mean())
            if bool(pres.any())
            else float("nan"),
            "n": int(pres.sum()),
        }
        joint_uni[name] = cluster_accuracy(pj.argmax(1)[pres], y_te[pres])
    acc["per_modality_cross"] = per_mod
    acc["per_modality_joint_encoder"] = joint_uni

    # k-means baselines on the (standardised) spectra: per modality and concatenated
    xs = (model.clean(x, mask) - model.in_mean.unsqueeze(1)) / model.in_std.unsqueeze(1)
    xs = torch.where(mask.unsqueeze(-1), xs, torch.zeros((), device=dev))
    km: dict[str, Any] = {}
    for i, name in enumerate(hsi.modalities):
        tr_i = tr[mask[i, tr]]
        te_i = te[mask[i, te]]
        d = hsi.in_dims[i]
        if tr_i.numel() >= model.n_clusters and te_i.numel():
            cen, _ = kmeans(xs[i, tr_i, :d], model.n_clusters, seed=config.seed, n_init=2)
            km[name] = cluster_accuracy(
                torch.cdist(xs[i, te_i, :d].double(), cen.double()).argmin(1), labels[te_i]
            )
    cat = torch.cat([xs[i, :, : hsi.in_dims[i]] for i in range(m_count)], dim=1)
    cen, _ = kmeans(cat[tr], model.n_clusters, seed=config.seed, n_init=2)
    km["concatenated_mean_imputed"] = cluster_accuracy(
        torch.cdist(cat[te].double(), cen.double()).argmin(1), y_te
    )

    # cross-modal generation of each modality from the others (test fold)
    rmse: dict[str, Any] = {}
    recon_examples: dict[str, Any] = {}
    for j, name in enumerate(hsi.modalities):
        d = hsi.in_dims[j]
        others = mask[:, te].clone()
        others[j] = False
        ok = mask[j, te] & others.any(0)
        if not bool(ok.any()):
            continue
        sel_idx = te[ok]
        mean, var = model.generate(j, x[:, sel_idx], mask[:, sel_idx])
        target = x[j, sel_idx, :d]
        tr_j = tr[mask[j, tr]]
        base = x[j, tr_j, :d].mean(0, keepdim=True).expand_as(target)
        every = torch.ones(target.shape[0], dtype=torch.bool, device=dev)
        rmse[name] = {
            "model": masked_rmse(mean, target, every),
            "model_sampled": masked_rmse(
                model.generate(j, x[:, sel_idx], mask[:, sel_idx], route="sample")[0], target, every
            )
            if model.decoder_kinds[j] == "mlp"
            else None,
            "mean_spectrum_baseline": masked_rmse(base, target, every),
            "mean_predicted_std": float(var.sqrt().mean()),
            "coverage_2sigma": float(((mean - target).abs() <= 2 * var.sqrt()).double().mean()),
            "n": int(target.shape[0]),
        }
        k = min(4, target.shape[0])
        recon_examples[name] = {
            "target": target[:k].cpu().numpy(),
            "mean": mean[:k].cpu().numpy(),
            "std": var[:k].sqrt().cpu().numpy(),
        }

    # fingerprints: mean ± sigma of the assigned samples per cluster and modality, decoded spectra
    fp_mean = np.full((model.n_clusters, m_count, max(hsi.in_dims)), np.nan)
    fp_std = np.full_like(fp_mean, np.nan)
    decoded = np.full_like(fp_mean, np.nan)
    for i in range(m_count):
        d = hsi.in_dims[i]
        decoded[:, i, :d] = model.cluster_spectra(i).cpu().numpy()
        for c in range(model.n_clusters):
            s = mask[i] & (clusters_all == c)
            if bool(s.any()):
                fp_mean[c, i, :d] = x[i, s, :d].mean(0).cpu().numpy()
                fp_std[c, i, :d] = x[i, s, :d].std(0, unbiased=False).cpu().numpy()
    cmap = cluster_label_map(clusters_all[te].cpu(), y_te.cpu())

    # linear probe on the fused latent means with label_budget labels per class (train folds)
    y_tr = labels[tr].cpu().numpy()
    pick = _per_class_subset(y_tr, config.label_budget, config.seed)
    probe = linear_probe(
        mu_all[tr][pick].cpu(),
        labels[tr][pick].cpu(),
        mu_all[te].cpu(),
        y_te.cpu(),
        n_classes,
        seed=config.seed,
    )
    probe["per_class"] = config.label_budget

    metrics: dict[str, Any] = {
        "modalities": list(hsi.modalities),
        "class_names": list(hsi.class_names),
        "decoders": list(model.decoder_kinds),
        "n_clusters": model.n_clusters,
        "clustering_accuracy": acc,
        "kmeans_accuracy": km,
        "cross_modal_rmse": rmse,
        "linear_probe": probe,
        "cluster_to_label": {
            str(c): hsi.class_names[lab] if lab < n_classes else str(lab) for c, lab in cmap.items()
        },
        "cluster_sizes": torch.bincount(clusters_all, minlength=model.n_clusters).tolist(),
        "pi": torch.softmax(model.pi_logits, 0).tolist(),
    }
    if model.physics is not None:
        metrics["abundances"] = model.physics.abundances().tolist()
    extras: dict[str, Any] = {
        "latent": mu_all.cpu().numpy(),
        "clusters": clusters_all.cpu().numpy(),
        "labels": labels.cpu().numpy(),
        "mu_c": model.mu_c.cpu().numpy(),
        "fingerprint_mean": fp_mean,
        "fingerprint_std": fp_std,
        "fingerprint_decoded": decoded,
        "recon_examples": recon_examples,
        "wavelengths": data.wavelengths,
        "in_dims": list(hsi.in_dims),
    }
    if model.physics is not None:
        extras["abundances"] = model.physics.abundances().detach().cpu().numpy()
    return metrics, extras
