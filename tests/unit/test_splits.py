"""Stratified folds: balance per class and overall, reproducibility."""

from __future__ import annotations

import numpy as np

from pipeline.hsi.folds import stratified_folds


def test_each_class_balanced_across_folds() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=4321)
    folds = stratified_folds(labels, 5, np.random.default_rng(1))
    assert set(np.unique(folds).tolist()) == {1, 2, 3, 4, 5}
    for c in np.unique(labels):
        per_fold = np.bincount(folds[labels == c], minlength=6)[1:]
        assert per_fold.max() - per_fold.min() <= 1
    overall = np.bincount(folds, minlength=6)[1:]
    assert overall.max() - overall.min() <= 1


def test_folds_reproducible_and_seed_dependent() -> None:
    labels = np.repeat(np.arange(3), 100)
    a = stratified_folds(labels, 5, np.random.default_rng(4))
    b = stratified_folds(labels, 5, np.random.default_rng(4))
    c = stratified_folds(labels, 5, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
