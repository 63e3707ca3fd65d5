"""Helpers shared by every ``emin`` sub-command: the one error mapping, ``NAME=VALUE`` options,
store lookup and the option annotations several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from pipeline import interrupt
from pipeline.errors import EminError

console = Console(stderr=True, soft_wrap=True)

#: Exit code of every failure caused by the user's input (a bug keeps its traceback and exits 1).
INPUT_ERROR_EXIT = 2
#: Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
INTERRUPTED_EXIT = 130
INTERRUPTED_MESSAGE = (
    "interrupted: the run stopped before it published or replaced anything\n"
    "  fix: run the command again; `emin publish gc` removes anything an interrupted run left"
)


def fail(message: object, code: int = INPUT_ERROR_EXIT) -> NoReturn:
    """Print an error in red on stderr and exit non-zero."""
    console.print(f"[bold red]error:[/] {escape(str(message))}")
    raise typer.Exit(code)


def error_message(exc: EminError | ValidationError) -> str:
    """The product's error format for ``exc``: what, where (file or field) and the fix.

    A pydantic error becomes one line per bad field (``field: message``); an
    :class:`~pipeline.errors.EminError` already carries its file/field and fix.
    """
    if isinstance(exc, ValidationError):
        lines = [f"invalid {exc.title} settings:"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(settings)"
            lines.append(f"  {where}: {err['msg']} (got {err.get('input')!r})")
        lines.append("  fix: correct the named option(s); `emin <command> --help` lists them")
        return "\n".join(lines)
    return str(exc)


class EminGroup(TyperGroup):
    """The root command group: maps the error tree (and pydantic's) to one message and exit 2.

    This is the one place where a product error becomes an exit code, for every sub-command,
    whether run from the shell or from ``typer.testing.CliRunner``.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.Abort, click.ClickException):
            raise  # exits and usage errors keep their own message and code
        except KeyboardInterrupt:
            fail(INTERRUPTED_MESSAGE, INTERRUPTED_EXIT)
        except Exception as exc:
            # an interrupt a library turned into its own error (pydantic-core wraps it in a
            # serialisation error; a killed helper server surfaces as a connection error)
            if interrupt.interrupted():
                fail(INTERRUPTED_MESSAGE, INTERRUPTED_EXIT)
            if isinstance(exc, EminError | ValidationError):
                fail(error_message(exc))
            raise


def command_group(help: str) -> typer.Typer:
    """A typer app whose commands report product errors through :class:`EminGroup`.

    Every ``emin`` (sub-)app is made here, so the mapping holds however the apps are nested.
    """
    return typer.Typer(cls=EminGroup, help=help)


def parse_pairs(values: list[str], option: str) -> dict[str, str]:
    """``["A=x", "B=y"]`` -> ``{"A": "x", "B": "y"}`` with a clear error on a malformed or repeated item."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            fail(f"{option} expects NAME=VALUE, got {item!r}")
        if key.strip() in pairs:
            fail(
                f"{option} names {key.strip()!r} twice ({pairs[key.strip()]!r} and {value.strip()!r}); "
                f"fix: give each {option} NAME once (use a different NAME per modality)"
            )
        pairs[key.strip()] = value.strip()
    return pairs


def parse_params(values: list[str]) -> dict[str, Any]:
    """``--param key=value`` overrides (``-`` in keys read as ``_``); values parsed as YAML."""
    return {k.replace("-", "_"): yaml.safe_load(v) for k, v in parse_pairs(values, "--param").items()}


def resolve_store(store: str, kind: str | None = None) -> str:
    """A store path as given, or the latest published version of a dataset name.

    The store must be a readable emin store of ``kind``: see
    :func:`pipeline.publishing.contract.require_store` (errors name the file and the fix).
    ``kind`` is the trainer's (``hsi`` or ``seismic``); None accepts any known kind.
    """
    if not (Path(store).exists() or "/" in store or store.endswith(".zarr")):
        from pipeline.publishing.registry import resolve
        from pipeline.publishing.versions import default_root

        _, folder = resolve(store, root=default_root())
        store = f"{folder}/data.zarr"
    if not Path(store).exists():
        fail(f"store {store} does not exist; give a store path or a name from `emin datasets list`")
    from pipeline.publishing.contract import STORE_KIND, require_store

    require_store(store, None if kind is None else STORE_KIND[kind])
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
