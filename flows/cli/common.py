"""Helpers shared by every ``emin`` sub-command: error exits, ``NAME=VALUE`` options, store lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


def fail(message: object, code: int = 2) -> NoReturn:
    """Print an error in red on stderr and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def parse_pairs(values: list[str], option: str) -> dict[str, str]:
    """``["A=x", "B=y"]`` -> ``{"A": "x", "B": "y"}`` with a clear error on a malformed item."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            fail(f"{option} expects NAME=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def parse_params(values: list[str]) -> dict[str, Any]:
    """``--param key=value`` overrides (``-`` in keys read as ``_``); values parsed as YAML."""
    return {k.replace("-", "_"): yaml.safe_load(v) for k, v in parse_pairs(values, "--param").items()}


def resolve_store(store: str) -> str:
    """A store path as given, or the latest published version of a dataset name; must exist."""
    if not (Path(store).exists() or "/" in store or store.endswith(".zarr")):
        from pipeline.errors import EminError
        from pipeline.publishing.registry import resolve
        from pipeline.publishing.versions import default_root

        try:
            _, folder = resolve(store, root=default_root())
        except EminError as exc:
            fail(exc)
        store = f"{folder}/data.zarr"
    if not Path(store).exists():
        fail(f"store {store} does not exist; give a store path or a name from `emin datasets list`")
    return store


# Options that several commands share (typer reads help and flags from these annotations).
StoreOption = Annotated[str, typer.Option(help="a store path, or a published dataset name (latest version)")]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda")]
WorkersOption = Annotated[int, typer.Option(help="Dask workers for the fan-out (>=2: a local cluster)")]
ClusterOption = Annotated[str | None, typer.Option(help="existing Dask scheduler, e.g. tcp://host:8786")]
EpochsOption = Annotated[int | None, typer.Option()]
PatienceOption = Annotated[int | None, typer.Option(help="early-stopping patience; 0 = off")]
SeedOption = Annotated[int, typer.Option()]
RunDirOption = Annotated[Path | None, typer.Option(help="run folder (default runs/<name>)")]
ParamOption = Annotated[list[str] | None, typer.Option(help="any other config field, KEY=VALUE")]
PrefectOption = Annotated[bool, typer.Option("--prefect/--no-prefect", help="run as a flow")]
