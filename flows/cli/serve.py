"""``emin serve``: a local Prefect server, the process work pool, every deployment and a worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import console

DEPLOYMENTS = (
    "curate-hsi/demo-hsi",
    "curate-seismic/demo-seismic",
    "train-hsi/hsi-baseline",
    "train-hsi/hsi-emin",
)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``emin`` app."""

    @app.command("serve")
    def serve(
        port: Annotated[int, typer.Option(help="server port on 127.0.0.1")] = 4200,
        home: Annotated[
            Path, typer.Option(help="PREFECT_HOME of the server (database, results, logs)")
        ] = Path("runs/prefect"),
        pool: Annotated[str, typer.Option(help="process work pool to create and serve")] = "emin-process",
        poll: Annotated[float, typer.Option(help="seconds between worker polls")] = 5.0,
    ) -> None:
        """Start a Prefect server on 127.0.0.1, register prefect.yaml's deployments, run a worker.

        Prints the UI's URL as soon as the server answers. Runs until Ctrl-C, SIGTERM or SIGHUP,
        then stops the worker and the server (their whole process groups).
        """
        from flows.serve import Stopped, local_stack, stop_on_signals

        home = home.resolve()
        start = time.perf_counter()

        def announce(stack: Any) -> None:
            console.print(
                f"[green]Prefect server is up[/] in {time.perf_counter() - start:.0f} s: UI [bold]{stack.ui_url}[/]",
                highlight=False,
            )

        try:
            with stop_on_signals():
                console.print("starting Prefect server ...")
                with local_stack(home, port=port, pool=pool, poll_seconds=poll, on_server=announce) as stack:
                    runs = "\n".join(f"  prefect deployment run '{d}' --watch" for d in DEPLOYMENTS)
                    console.print(
                        f"[green]deployed, worker started[/] in {time.perf_counter() - start:.0f} s "
                        f"(home {home}, logs in {stack.logs})\n"
                        f"  UI:      [bold]{stack.ui_url}[/]\n"
                        f"  worker:  pool '{pool}', polling every {poll:g} s\n\n"
                        "Run a deployment from another shell:\n"
                        f"  export PREFECT_API_URL={stack.api_url}\n{runs}\n\n"
                        "Ctrl-C stops the worker and the server.",
                        highlight=False,
                    )
                    while all(p.poll() is None for p in stack.procs.values()):
                        time.sleep(0.5)
                    dead = [n for n, p in stack.procs.items() if p.poll() is not None]
                    console.print(f"[bold red]{', '.join(dead)} exited[/]:\n{stack.log_tail(dead[0])}")
                    raise typer.Exit(1)
        except (KeyboardInterrupt, Stopped) as exc:
            console.print(f"stopped ({type(exc).__name__} {exc}): worker and server shut down")
