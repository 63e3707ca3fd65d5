"""Torch datasets over published stores: selection, NaN-free batches, multi-worker loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from test_publish_support import curate_tiny, seismic_dataset
from torch.utils.data import DataLoader

from pipeline.publishing.codes import strings
from pipeline.publishing.registry import open_dataset
from pipeline.publishing.torch_data import (
    IGNORE_LABEL,
    DataSelectionError,
    HSISampleDataset,
    SpectrogramDataset,
    collate_hsi,
    collate_spectrograms,
)
from pipeline.publishing.versions import publish_dataset

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, xr.Dataset, xr.Dataset]:
    work = tmp_path_factory.mktemp("torchdata")
    ds, _ = curate_tiny(work)
    root = work / "root"
    publish_dataset(ds, name="tiny", root=root, chunks={"sample": 512})
    seis = seismic_dataset()
    publish_dataset(seis, name="seis", root=root, chunks={"trace": 8})
    return root, ds.load(), seis


def test_hsi_dataset_folds_items_and_multiworker_batches(
    published: tuple[Path, xr.Dataset, xr.Dataset],
) -> None:
    root, ds, _ = published
    train = HSISampleDataset(open_dataset("tiny", root=root), folds=[1, 2, 3, 4])
    test = HSISampleDataset(open_dataset("tiny", root=root), folds=[5])
    fold = ds["fold"].values
    assert len(train) == int(np.sum(fold < 5)) and len(test) == int(np.sum(fold == 5))
    assert set(train.rows.tolist()).isdisjoint(test.rows.tolist())
    item = test[3]
    r = int(test.rows[3])
    assert int(item["label"]) == int(ds["label"].values[r])
    for j, m in enumerate(train.modalities):
        assert bool(item["present"][j]) == bool(ds["present"].values[r, j])
        expected = (
            np.nan_to_num(ds[m].values[r]) if ds["present"].values[r, j] else np.zeros(ds.sizes[f"band_{m}"])
        )
        np.testing.assert_allclose(item["x"][m].numpy(), expected)
    loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=2, collate_fn=collate_hsi,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    seen: list[int] = []
    for batch in loader:
        assert batch["present"].dtype == torch.bool
        for j, m in enumerate(train.modalities):
            x = batch["x"][m]
            assert torch.isfinite(x).all()
            assert (x[~batch["present"][:, j]] == 0).all()
            np.testing.assert_allclose(x.numpy(), np.nan_to_num(ds[m].values[batch["index"].numpy()]))
        np.testing.assert_array_equal(batch["label"].numpy(), ds["label"].values[batch["index"].numpy()])
        seen += batch["index"].tolist()
    assert sorted(seen) == sorted(train.rows.tolist())  # every selected sample exactly once


def test_collate_of_single_items_handles_absent_modalities(
    published: tuple[Path, xr.Dataset, xr.Dataset],
) -> None:
    root, ds, _ = published
    data = HSISampleDataset(
        root / "tiny" / open_dataset("tiny", root=root).attrs["emin_dataset"]["version"] / "data.zarr"
    )
    present = ds["present"].values
    only_first = int(np.flatnonzero(present[:, 0] & ~present[:, 1])[0])
    only_second = int(np.flatnonzero(~present[:, 0] & present[:, 1])[0])
    items = [data[only_first], data[only_second]]
    items[1]["x"][data.modalities[0]] = None  # a sample that carries no tensor at all for a modality
    items[0]["x"][data.modalities[1]] = torch.full((data.band_sizes[data.modalities[1]],), float("nan"))
    batch = collate_hsi(items)
    assert batch["present"].tolist() == [[True, False], [False, True]]
    for m in data.modalities:
        assert torch.isfinite(batch["x"][m]).all()
    assert (batch["x"][data.modalities[1]][0] == 0).all() and (batch["x"][data.modalities[0]][1] == 0).all()
    # a modality absent from the whole batch still gets its zeros when band sizes are given
    lone = collate_hsi(
        [{"x": {data.modalities[0]: items[0]["x"][data.modalities[0]]}, "label": 1}], data.band_sizes
    )
    assert lone["x"][data.modalities[1]].shape == (1, data.band_sizes[data.modalities[1]])
    assert lone["present"].tolist() == [[True, False]]


def test_label_fraction_is_seeded_and_stratified(published: tuple[Path, xr.Dataset, xr.Dataset]) -> None:
    root, ds, _ = published
    src = open_dataset("tiny", root=root)
    a = HSISampleDataset(src, folds=[1, 2, 3, 4], label_fraction=0.1, seed=3)
    b = HSISampleDataset(src, folds=[1, 2, 3, 4], label_fraction=0.1, seed=3)
    c = HSISampleDataset(src, folds=[1, 2, 3, 4], label_fraction=0.1, seed=4)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labelled, c.labelled)
    true = ds["label"].values[a.rows]
    for k in np.unique(true):
        n_k = int(np.sum(true == k))
        assert int(np.sum(a.labelled & (true == k))) == max(1, round(0.1 * n_k))
    assert (a.labels[~a.labelled] == IGNORE_LABEL).all() and len(a) == a.rows.size
    dropped = HSISampleDataset(src, folds=[1, 2, 3, 4], label_fraction=0.1, seed=3, unlabelled="drop")
    assert len(dropped) == int(a.labelled.sum()) and (dropped.labels >= 0).all()
    with pytest.raises(DataSelectionError, match="folds"):
        HSISampleDataset(src, folds=[9])
    with pytest.raises(DataSelectionError, match="label_fraction"):
        HSISampleDataset(src, label_fraction=0.0)


@pytest.mark.parametrize("workers", [0, 2])
def test_spectrogram_dataset_splits_and_targets(
    published: tuple[Path, xr.Dataset, xr.Dataset], workers: int
) -> None:
    root, _, seis = published
    data = SpectrogramDataset(
        open_dataset("seis", root=root), splits=["train"], max_memory_bytes=0 if workers else 2**30
    )
    split = strings(seis, "split")
    assert len(data) == int(np.sum(split == "train"))
    loader = DataLoader(data, batch_size=7, num_workers=workers, collate_fn=collate_spectrograms)
    seen = []
    for batch in loader:
        idx = batch["index"].numpy()
        assert (split[idx] == "train").all()
        assert (
            batch["x"].shape[1:] == (3, seis.sizes["freq"], seis.sizes["time"])
            and batch["x"].dtype == torch.float32
        )
        np.testing.assert_array_equal(batch["x"].numpy(), seis["spectrogram"].values[idx])
        want = np.stack([seis[k].values[idx] for k in ("distance_km", "sin_baz", "cos_baz")], 1).astype(
            np.float32
        )
        np.testing.assert_array_equal(batch["y"].numpy(), want)
        seen += idx.tolist()
    assert sorted(seen) == np.flatnonzero(split == "train").tolist()
    one = data[0]
    assert one["x"].shape == (3, seis.sizes["freq"], seis.sizes["time"]) and one["y"].shape == (3,)
    with pytest.raises(DataSelectionError, match="splits"):
        SpectrogramDataset(open_dataset("seis", root=root), splits=["validation"])
