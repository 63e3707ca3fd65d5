"""train-hsi / train-seismic Prefect flows and the ``emin train`` commands on tiny Zarr stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli.train import register
from models.runs import RUN_FILES
from models.synthetic import hsi_to_dataset, seismic_to_dataset, synthetic_hsi, synthetic_seismic
from schemas.training import HSITrainConfig, SeismicTrainConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_stores")
    hsi = root / "hsi.zarr"
    hsi_to_dataset(synthetic_hsi(n=300, seed=0)).to_zarr(hsi, mode="w", consolidated=True)
    seis = root / "seismic.zarr"
    seismic_to_dataset(synthetic_seismic(n_events=20, stations_per_event=4, seed=0)).to_zarr(
        seis, mode="w", consolidated=True
    )
    return {"hsi": hsi, "seismic": seis}


def test_train_hsi_flow_writes_run_and_artifact(
    prefect_harness: None, stores: dict[str, Path], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.train import train_hsi_flow

    cfg = HSITrainConfig(
        store=str(stores["hsi"]),
        mode="emin",
        epochs=2,
        batch_size=64,
        device="cpu",
        out_dir=str(tmp_path / "r"),
    )
    out = train_hsi_flow(cfg)
    assert out["run_dir"] == str(tmp_path / "r")
    for name in RUN_FILES:
        assert (tmp_path / "r" / name).exists()
    assert out["metrics"]["test"]["fused"]["n"] > 0
    with get_client(sync_client=True) as client:
        art = client.read_artifacts()
    keys = {a.key for a in art}
    assert {"train-hsi-summary", "train-hsi-history", "train-hsi-progress"} <= keys
    summary = next(a for a in art if a.key == "train-hsi-summary")
    assert summary.description and "](data:image/png;base64," in str(summary.data)
    progress = [a for a in art if a.key == "train-hsi-progress"]
    assert progress and all(a.data == 100.0 for a in progress)


def test_train_seismic_flow(prefect_harness: None, stores: dict[str, Path], tmp_path: Path) -> None:
    from flows.train import train_seismic_flow

    cfg = SeismicTrainConfig(
        store=str(stores["seismic"]), mode="student-teacher", epochs=1, batch_size=16, head_hidden=[16],
        device="cpu", out_dir=str(tmp_path / "s"),
    )  # fmt: skip
    out = train_seismic_flow(cfg)
    assert (tmp_path / "s" / "location_error_cdf.png").exists()
    assert (tmp_path / "s" / "error_by_distance.png").exists()  # drawn by the flow for its summary
    assert out["metrics"]["predict_the_mean"]["centroid"]["location_error_km_median"] > 0


def test_cli_train_commands(stores: dict[str, Path], tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Scratch root so ``train`` is a sub-command."""

    runner = CliRunner()
    out = tmp_path / "cli_hsi"
    res = runner.invoke(
        app,
        ["train", "hsi", "--store", str(stores["hsi"]), "--mode", "student-teacher", "--teachers", "SWIR",
         "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--out", str(out), "--no-prefect",
         "--param", "hidden=[8, 8]", "--param", "width=8"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["hidden"] == [8, 8]
    assert str(out.resolve()) in res.stdout
    res = runner.invoke(
        app,
        ["train", "seismic", "--store", str(stores["seismic"]), "--epochs", "1", "--batch-size", "16",
         "--device", "cpu", "--out", str(tmp_path / "cli_s"), "--no-prefect", "--param", "head_hidden=[8]"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli_s" / "metrics.json").exists()
    bad = runner.invoke(
        app, ["train", "hsi", "--store", str(stores["hsi"]), "--mode", "nope", "--no-prefect"]
    )
    assert bad.exit_code == 2
