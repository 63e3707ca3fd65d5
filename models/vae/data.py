"""Data for the multimodal GMM-VAE: :class:`models.data.HSIData` plus each modality's band axis.

A published HSI store (``docs/format.md``) is read with :func:`models.data.load_hsi`; the band
centres come from its ``wavelength_<modality>`` coordinates (``xarray.open_zarr``).
:meth:`VAEData.from_arrays` builds the same container from plain arrays (benchmarks, tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.data import HSIData, load_hsi
from pipeline.errors import InputError, MissingInputError

__all__ = ["VAEData", "load_vae_data"]


@dataclass(frozen=True)
class VAEData:
    """Samples (``hsi``: ``x [M, N, D_max]`` zero padded, ``mask [M, N]``, labels, folds) and the
    band coordinate of each modality (``wavelengths[m]``, length ``in_dims[m]``; ``None`` when
    the modality has none, e.g. an image)."""

    hsi: HSIData
    wavelengths: list[np.ndarray | None]

    @property
    def modalities(self) -> list[str]:
        """Modality names, in order."""
        return list(self.hsi.modalities)

    @classmethod
    def from_arrays(
        cls,
        xs: Sequence[np.ndarray],
        labels: np.ndarray,
        *,
        present: np.ndarray | None = None,
        folds: np.ndarray | None = None,
        modalities: Sequence[str] | None = None,
        wavelengths: Sequence[np.ndarray | None] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> VAEData:
        """From per-modality arrays ``xs[m] [N, D_m]`` (NaN allowed where absent).

        ``present [N, M]`` defaults to "all bands finite"; ``folds`` default to 1.
        """
        n = int(np.asarray(labels).shape[0])
        m = len(xs)
        dims = [int(np.asarray(a).shape[1]) for a in xs]
        if any(np.asarray(a).shape[0] != n for a in xs):
            raise InputError("every modality needs one row per label", fix="align the arrays")
        x = np.zeros((m, n, max(dims)), np.float32)
        pres = np.zeros((m, n), bool)
        for i, a in enumerate(xs):
            arr = np.asarray(a, dtype=np.float32)
            pres[i] = np.isfinite(arr).all(axis=1) if present is None else np.asarray(present)[:, i]
            x[i, :, : dims[i]] = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        x[~pres] = 0.0
        lab = np.asarray(labels).astype(np.int64)
        names = list(modalities) if modalities is not None else [f"X{i + 1}" for i in range(m)]
        cls_names = (
            list(class_names) if class_names is not None else [str(c) for c in range(int(lab.max()) + 1)]
        )
        hsi = HSIData(
            x=torch.from_numpy(x),
            mask=torch.from_numpy(pres),
            labels=torch.from_numpy(lab),
            folds=torch.from_numpy(
                np.ones(n, np.int64) if folds is None else np.asarray(folds).astype(np.int64)
            ),
            sample_id=torch.arange(n),
            modalities=names,
            in_dims=dims,
            class_names=cls_names,
            sensor_types={nm: "" for nm in names},
        )
        wls = list(wavelengths) if wavelengths is not None else [None] * m
        return cls(hsi=hsi, wavelengths=[None if w is None else np.asarray(w, np.float64) for w in wls])


def load_vae_data(store: str | Path, modalities: Sequence[str] | None = None) -> VAEData:
    """Read an HSI store (``data.zarr`` of a published version) with its band wavelengths."""
    import xarray as xr

    p = Path(store)
    if not p.exists():
        raise MissingInputError(
            "HSI store not found", path=p, fix="give the data.zarr of a published HSI dataset version"
        )
    try:
        hsi = load_hsi(p, "cpu", modalities)
    except ValueError as exc:  # unknown modality names
        raise InputError(str(exc), path=p, fix="pick modalities from the store's 'modality' coord") from exc
    wls: list[np.ndarray | None] = []
    with xr.open_zarr(str(p)) as ds:
        for name, d in zip(hsi.modalities, hsi.in_dims, strict=True):
            key = f"wavelength_{name}"
            if key not in ds.coords and key not in ds.variables:
                wls.append(None)
                continue
            wl = np.asarray(ds[key].values, dtype=np.float64)
            if wl.shape != (d,):
                raise InputError(f"{key} has {wl.shape} values for {d} bands", path=p)
            wls.append(wl)
    return VAEData(hsi=hsi, wavelengths=wls)
