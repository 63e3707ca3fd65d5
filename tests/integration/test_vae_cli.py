"""``emin train vae`` end to end on a tiny HSI store: run folder, loadable checkpoint, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli.main import app
from models.synthetic import hsi_to_dataset, synthetic_hsi

pytestmark = pytest.mark.integration


def test_train_vae_cli_writes_a_run_folder(tmp_path: Path) -> None:
    store = tmp_path / "hsi.zarr"
    hsi_to_dataset(synthetic_hsi(n=200, in_dims=(6, 5), n_classes=3, seed=0)).to_zarr(
        store, mode="w", consolidated=True
    )
    out = tmp_path / "run"
    args = ["train", "vae", "--store", str(store), "--epochs", "2", "--out", str(out), "--no-prefect",
            "--param", "warmup_epochs=1", "--param", "cross_epochs=1", "--param", "hidden=16"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["clustering_accuracy"]["fused"] <= 1.0
    state = torch.load(out / "model.pt", weights_only=True)
    assert isinstance(state, dict)
    bad = CliRunner().invoke(app, [*args[:-6], "--param", "latent_dim=0"])
    assert bad.exit_code == 2 and "latent_dim" in bad.output and "Traceback" not in bad.output
