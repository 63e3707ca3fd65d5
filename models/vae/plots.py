"""PNG plots of a GMM-VAE run (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from models.vae.result import VAEResult

__all__ = ["PLOT_FILES", "save_plots"]

PLOT_FILES = ("learning_curves.png", "latent_scatter.png", "fingerprints.png", "reconstructions.png")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pca2(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D PCA of ``z``: (projected points, mean, components [2, L])."""
    mean = z.mean(0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    comp = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])
    return (z - mean) @ comp.T, mean, comp


def _axis(wl: np.ndarray | None, d: int) -> tuple[np.ndarray, str]:
    return (np.asarray(wl), "wavelength (nm)") if wl is not None else (np.arange(d), "band")


def save_plots(result: VAEResult, out_dir: Path) -> list[Path]:
    """Learning curves, latent PCA scatter, cluster fingerprints (and abundances), reconstructions."""
    plt = _plt()
    ex = result.extras
    names = result.metrics["modalities"]
    dims = ex["in_dims"]
    written: list[Path] = []

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for phase in ("warmup", "joint", "cross"):
        rows = [r for r in result.history if r["phase"] == phase]
        if rows:
            ax.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], label=phase)
    ax.set_xlabel("epoch (per phase)")
    ax.set_ylabel("loss (−ELBO / KL per sample)")
    ax.set_yscale("symlog")
    ax.legend()
    fig.tight_layout()
    written.append(out_dir / PLOT_FILES[0])
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    pts, mean, comp = _pca2(ex["latent"])
    centres = (ex["mu_c"] - mean) @ comp.T
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, colour, title in ((axes[0], ex["clusters"], "cluster"), (axes[1], ex["labels"], "true label")):
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=colour, s=3, cmap="tab20", alpha=0.7)
        ax.scatter(centres[:, 0], centres[:, 1], c="k", marker="x", s=40)
        ax.set_title(f"latent means (PCA), coloured by {title}")
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        fig.colorbar(sc, ax=ax, fraction=0.046)
    fig.tight_layout()
    written.append(out_dir / PLOT_FILES[1])
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    has_ab = "abundances" in ex
    ncol = len(names) + (1 if has_ab else 0)
    fig, axes = plt.subplots(1, ncol, figsize=(4.2 * ncol, 3.8), squeeze=False)
    c2l = result.metrics["cluster_to_label"]
    for i, name in enumerate(names):
        ax = axes[0, i]
        xs, xl = _axis(ex["wavelengths"][i], dims[i])
        for c in range(ex["fingerprint_mean"].shape[0]):
            mu = ex["fingerprint_mean"][c, i, : dims[i]]
            sd = ex["fingerprint_std"][c, i, : dims[i]]
            if np.isfinite(mu).all():
                (line,) = ax.plot(xs, mu, lw=1, label=f"{c}→{c2l.get(str(c), '?')}")
                ax.fill_between(xs, mu - sd, mu + sd, color=line.get_color(), alpha=0.15)
                ax.plot(
                    xs, ex["fingerprint_decoded"][c, i, : dims[i]], lw=0.8, ls="--", color=line.get_color()
                )
        ax.set_title(f"{name}: cluster mean ± σ (dashed: decoded)", fontsize=9)
        ax.set_xlabel(xl)
    axes[0, 0].legend(fontsize=6, ncol=2)
    if has_ab:
        ax = axes[0, -1]
        im = ax.imshow(ex["abundances"], aspect="auto", cmap="viridis")
        ax.set_title("physics expert abundances a_ck", fontsize=9)
        ax.set_xlabel("endmember k")
        ax.set_ylabel("cluster c")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    written.append(out_dir / PLOT_FILES[2])
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    rec = ex["recon_examples"]
    mods = [m for m in names if m in rec]
    if mods:
        k = max(len(rec[m]["target"]) for m in mods)
        fig, axes = plt.subplots(len(mods), k, figsize=(3.2 * k, 2.4 * len(mods)), squeeze=False)
        for r, name in enumerate(mods):
            i = names.index(name)
            xs, xl = _axis(ex["wavelengths"][i], dims[i])
            for j in range(k):
                ax = axes[r, j]
                if j >= len(rec[name]["target"]):
                    ax.axis("off")
                    continue
                mu, sd = rec[name]["mean"][j], rec[name]["std"][j]
                ax.plot(xs, rec[name]["target"][j], "k", lw=1, label="held out")
                ax.plot(xs, mu, "C3", lw=1, label="generated")
                ax.fill_between(xs, mu - 2 * sd, mu + 2 * sd, color="C3", alpha=0.2)
                ax.set_title(f"{name} from the others", fontsize=8)
                ax.set_xlabel(xl, fontsize=7)
        axes[0, 0].legend(fontsize=6)
        fig.tight_layout()
        written.append(out_dir / PLOT_FILES[3])
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    return written
