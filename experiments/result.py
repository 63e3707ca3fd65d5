"""What an experiment produced: the records the runner writes and the report renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.spec import ExperimentSpec
from experiments.stats import PairedComparison


@dataclass(frozen=True)
class Dataset:
    """The store an experiment trains on: its path, version id and attributes."""

    store: str
    version: str
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Figure:
    """One figure of the report: file stem, caption, PNG bytes and the numbers it plotted."""

    name: str
    caption: str
    png: bytes
    data: dict[str, Any]


@dataclass
class ExperimentResult:
    """Everything an experiment produced (also written under ``folder``)."""

    spec: ExperimentSpec
    budget: str
    folder: Path
    dataset: Dataset
    results: pd.DataFrame
    comparisons: list[PairedComparison]
    cells: list[dict[str, Any]]
    values: list[tuple[list[float], list[float]]]
    findings: list[dict[str, Any]]
    wall_time_s: float
    device: str
    tuning: list[dict[str, Any]] = field(default_factory=list)  # rows of tuning.csv (per-modality arms)
    figures: list[Figure] = field(default_factory=list)  # the report's, once written


def is_member(results: pd.DataFrame) -> pd.Series:
    """Rows of per-modality member runs (their arm's fused row stands for them in comparisons
    and figures)."""
    return results["member"].fillna("").astype(str) != ""
