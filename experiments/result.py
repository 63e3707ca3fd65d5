"""What an experiment produced: the records the runner writes and the report renders."""

from __future__ import annotations

from dataclasses import dataclass
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
