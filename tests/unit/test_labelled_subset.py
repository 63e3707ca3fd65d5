"""One labelled-subset draw: the torch dataset and the trainer label the same samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data import load_hsi
from models.synthetic import hsi_to_dataset, synthetic_hsi
from models.training.hsi import hsi_split
from pipeline.publishing.torch_data import HSISampleDataset
from schemas.training import HSITrainConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labelled") / "hsi.zarr"
    hsi_to_dataset(synthetic_hsi(n=240, seed=7)).to_zarr(path, consolidated=True)
    return path


@pytest.mark.parametrize(("seed", "fraction"), [(0, 0.3), (5, 0.1), (11, 0.5)])
def test_torch_dataset_and_trainer_label_the_same_samples(store: Path, seed: int, fraction: float) -> None:
    cfg = HSITrainConfig(
        store=str(store),
        mode="ssl",
        label_fraction=fraction,
        seed=seed,
        val_fold=4,
        test_fold=5,
        device="cpu",
    )
    split = hsi_split(cfg, load_hsi(store))
    ds = HSISampleDataset(store, folds=[1, 2, 3], label_fraction=fraction, seed=seed)
    np.testing.assert_array_equal(np.sort(ds.rows[ds.labelled]), np.sort(split.labelled))
    np.testing.assert_array_equal(np.sort(ds.rows[~ds.labelled]), np.sort(split.unlabelled))
