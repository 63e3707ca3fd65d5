"""Deployments on a real Prefect server: server + work pool + `prefect deploy --all` + worker, then a run.

Everything runs on loopback with a temporary PREFECT_HOME and SQLite database; the
server and worker process groups are stopped in a ``finally`` (flows.serve.local_stack).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from scenes import TinyScene, write_tiny_catalog

from pipeline.publishing.contract import validate_store


def _catalog(tmp_path: Path, scene: TinyScene) -> Path:
    return write_tiny_catalog(tmp_path, scene, {"seed": 1, "max_points_per_class": 300})


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: dict[str, object] = json.loads(resp.read())
        return body


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_deployment_run_on_real_server(tiny_scene: TinyScene, tmp_path: Path) -> None:
    from flows.serve import local_stack

    catalog = _catalog(tmp_path, tiny_scene)
    with local_stack(tmp_path / "prefect-home", poll_seconds=1, deployments=["demo-hsi"]) as stack:
        deployment = _get(f"{stack.api_url}/deployments/name/curate-hsi/demo-hsi")
        assert deployment["work_pool_name"] == "emin-process"
        schema = json.dumps(deployment["parameter_openapi_schema"])
        assert "HSICurationParams" in schema and "max_points_per_class" in schema  # typed form in the UI
        schedules = deployment["schedules"]
        assert isinstance(schedules, list) and schedules and not schedules[0]["active"]

        params = json.dumps({"entry": "tiny", "catalog": str(catalog)})
        run = stack.prefect(
            "deployment", "run", "curate-hsi/demo-hsi", "--params", params,
            "--watch", "--watch-interval", "1", "--watch-timeout", "150",
            timeout=180,
        )  # fmt: skip
        assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-2000:]}\n{stack.log_tail('worker')}"
        assert "Completed" in run.stdout
        procs = dict(stack.procs)
    assert all(p.poll() is not None for p in procs.values()), "server/worker still running"
    store = tmp_path / "published" / "tiny.zarr"
    assert validate_store(store) == []
    assert any((tmp_path / "prefect-home" / "storage").iterdir())  # cached task results persisted
