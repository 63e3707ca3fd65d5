"""The curate-hsi Prefect flow (catalog entry) and the `emin` CLI, run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from scenes import TinyScene, write_tiny_catalog

from pipeline.publishing.contract import validate_store
from pipeline.publishing.zarr_io import open_store
from schemas.catalog import load_catalog

REPO = Path(__file__).resolve().parents[2]
EMIN = [sys.executable, "-c", "from flows.cli.main import main; main()"]


def _catalog(tmp_path: Path, scene: TinyScene) -> Path:
    return write_tiny_catalog(tmp_path, scene, {"seed": 3, "max_points_per_class": 400})


def test_repo_catalog_is_valid() -> None:
    catalog = load_catalog(REPO / "data_catalog.yaml")
    assert catalog.entries["demo_hsi"].type == "hsi_dataset"


def test_flow_from_catalog_entry_with_artifacts(
    prefect_harness: None, tiny_scene: TinyScene, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.curate_hsi import curate_hsi_flow

    path = curate_hsi_flow(entry="tiny", catalog=str(_catalog(tmp_path, tiny_scene)))
    work = (tmp_path / "published" / "tiny.zarr").resolve()
    assert validate_store(work) == []
    # the entry publishes by default: an immutable version in <catalog dir>/data/published
    from pipeline.publishing.registry import open_dataset
    from pipeline.publishing.versions import read_latest

    root = tmp_path / "data" / "published"
    latest = read_latest("tiny", root=root)
    assert latest is not None and Path(path) == root / "tiny" / latest / "data.zarr"
    assert validate_store(path) == []
    ds = open_store(path)
    assert ds["x"].values.tolist() == open_store(work)["x"].values.tolist()
    assert open_dataset("tiny", root=root, verify=True).sizes == ds.sizes
    # same inputs, same parameters: the same version, not a new one
    again = curate_hsi_flow(entry="tiny", catalog=str(_catalog(tmp_path, tiny_scene)))
    assert again == path
    assert ds.attrs["parameters"]["seed"] == 3 and ds.attrs["parameters"]["max_points_per_class"] == 400

    async def artifact_keys() -> set[str]:
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts() if a.key}

    import asyncio

    assert {"curate-hsi-table1", "curate-hsi-summary"} <= asyncio.run(artifact_keys())


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    return subprocess.run([*EMIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.integration
def test_cli_direct_arguments_then_validate(tiny_scene: TinyScene, tmp_path: Path) -> None:
    out = tmp_path / "cli.zarr"
    args = ["curate", "hsi", "--polygons", str(tiny_scene.polygons), "--class-column", "class_name"]
    args += ["--raster", f"VNIR1={tiny_scene.rasters['VNIR1']}", "--sensor", "VNIR1=VNIR"]
    args += ["--raster", f"SWIR1={tiny_scene.rasters['SWIR1']}", "--sensor", "SWIR1=swir"]
    args += [
        "--transmission",
        str(tiny_scene.transmission),
        "--out",
        str(out),
        "--param",
        "max_points_per_class=300",
    ]
    done = _run(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(out.resolve()) or done.stdout.strip().endswith(
        str(out)
    )
    assert "Table 1" in done.stderr and "% Missing" in done.stderr
    ok = _run(["validate", str(out)], tmp_path)
    assert ok.returncode == 0 and "satisfies the contract" in ok.stderr

    # tamper: drop the rejects group -> validate must fail with a clear message
    import shutil

    shutil.rmtree(out / "rejects")
    bad = _run(["validate", str(out)], tmp_path)
    assert bad.returncode == 1 and "no `rejects` group" in bad.stderr


def test_cli_bad_input_exits_2_with_the_fix(tiny_scene: TinyScene, tmp_path: Path) -> None:
    args = ["curate", "hsi", "--polygons", str(tiny_scene.polygons), "--class-column", "klass"]
    args += [
        "--raster",
        f"V={tiny_scene.rasters['VNIR1']}",
        "--sensor",
        "V=VNIR",
        "--out",
        str(tmp_path / "x.zarr"),
    ]
    done = _run(args, tmp_path)
    assert done.returncode == 2
    assert "class column 'klass' not found" in done.stderr and "fix:" in done.stderr
    assert not (tmp_path / "x.zarr").exists()
    mismatch = _run(
        ["curate", "hsi", "--polygons", "p.gpkg", "--class-column", "c", "--raster", "A=a.tif", "--out", "o"],
        tmp_path,
    )
    assert mismatch.returncode == 2 and "--sensor must name every --raster" in mismatch.stderr
