"""Every deployment in prefect.yaml points at a real flow and its parameters validate against it.

The server test registers only the deployments it runs (registering all of them costs minutes);
this checks the rest the way ``prefect deploy`` would: import the entrypoint, validate the
parameters with the flow's own parameter model.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_deployment_names_are_unique_and_say_what_they_do() -> None:
    names = [d["name"] for d in DEPLOYMENTS]
    assert len(names) == len(set(names))
    assert "demo" not in names and all(d.get("description") for d in DEPLOYMENTS)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_is_a_flow_and_parameters_validate(deployment: dict[str, object]) -> None:
    path, _, attr = str(deployment["entrypoint"]).partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, attr)
    assert isinstance(flow, Flow)
    params = dict(deployment.get("parameters") or {})  # type: ignore[call-overload]
    unknown = set(params) - set(flow.parameters.properties)  # prefect would drop them silently
    assert not unknown, f"{deployment['name']}: {sorted(unknown)} are not parameters of {attr}"
    flow.validate_parameters(params)
