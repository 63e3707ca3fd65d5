"""Every ``emin`` command fails on bad input with the product's error format and exit code 2.

Before the one error mapping (``flows/cli/common.py::EminGroup``), ``emin train`` caught only
pydantic errors: a teacher list that selects nothing or ``val_fold == test_fold`` ended in a
traceback while ``emin curate`` failed cleanly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from models.synthetic import hsi_to_dataset, synthetic_hsi

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli_err") / "hsi.zarr"
    data = synthetic_hsi(n=200, in_dims=(6, 5), n_classes=3, seed=0, modalities=("VNIR1", "SWIR1"))
    hsi_to_dataset(data).to_zarr(path, mode="w", consolidated=True)
    return path


TRAIN = ["train", "hsi", "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--no-prefect"]


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--mode", "student-teacher", "--teachers", "XYZ"], "teachers"),
        (["--param", "val_fold=5", "--param", "test_fold=5"], "val_fold"),
        (["--mode", "nope"], "mode"),
        (["--param", "lr=-1"], "lr"),
    ],
)
def test_train_errors_are_one_message_and_exit_2(
    store: Path, tmp_path: Path, extra: list[str], names: str
) -> None:
    res = CliRunner().invoke(app, [*TRAIN, "--store", str(store), "--out", str(tmp_path / "run"), *extra])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "error:" in res.output and names in res.output
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["curate", "hsi", "--entry", "no_such_entry"],
        ["datasets", "show", "no_such_dataset", "--root", "/nonexistent-root"],
        ["validate", "/nonexistent/store.zarr"],
        ["experiment", "run", "no-such-experiment", "--no-prefect"],
        ["train", "vae", "--store", "/nonexistent/store.zarr", "--no-prefect"],
    ],
)
def test_other_commands_fail_cleanly(args: list[str]) -> None:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "error:" in res.output
