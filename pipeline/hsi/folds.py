"""Seeded, stratified fold assignment."""

from __future__ import annotations

import numpy as np


def stratified_folds(labels: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Folds 1..n_folds such that each class's count per fold differs by at most one.

    Each class is shuffled and dealt round-robin; the starting fold rotates from
    class to class so that fold sizes also stay balanced overall.
    """
    folds = np.zeros(labels.size, dtype=np.int8)
    start = 0
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        members = members[rng.permutation(members.size)]
        folds[members] = (start + np.arange(members.size)) % n_folds + 1
        start = (start + members.size) % n_folds
    return folds
