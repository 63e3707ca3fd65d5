"""``emin serve``: a local Prefect server, the process work pool, every deployment and a worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import console


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

        Runs until Ctrl-C, then stops the worker and the server.
        """
        from flows.serve import local_stack

        home = home.resolve()
        start = time.perf_counter()
        with console.status("starting Prefect server, deploying, starting worker ..."):
            stack_cm = local_stack(home, port=port, pool=pool, poll_seconds=poll)
            stack = stack_cm.__enter__()
        try:
            console.print(
                f"[green]Prefect is up[/] in {time.perf_counter() - start:.0f} s "
                f"(home {home}, logs in {stack.logs})\n"
                f"  UI:      [bold]{stack.ui_url}[/]\n"
                f"  worker:  pool '{pool}', polling every {poll:g} s\n\n"
                "Run a deployment from another shell:\n"
                f"  export PREFECT_API_URL={stack.api_url}\n"
                "  prefect deployment run 'curate-hsi/demo' --watch\n"
                "  prefect deployment run 'curate-hsi/demo' --param workers=2 --watch   # Dask fan-out\n\n"
                "Ctrl-C stops the worker and the server."
            )
            while all(p.poll() is None for p in stack.procs.values()):
                time.sleep(1)
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            console.print(f"[bold red]{', '.join(dead)} exited[/]:\n{stack.log_tail(dead[0])}")
            raise typer.Exit(1)
        except KeyboardInterrupt:
            console.print("stopping worker and server ...")
        finally:
            stack_cm.__exit__(None, None, None)
