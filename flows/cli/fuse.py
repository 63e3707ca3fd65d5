"""CLI command ``emin fuse RUN... --out DIR``: post-hoc fusion of separately trained HSI runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import console


def register(app: typer.Typer) -> None:
    """Add the ``fuse`` command to ``app``."""

    @app.command("fuse")
    def fuse_cmd(
        runs: Annotated[list[Path], typer.Argument(help="HSI run folders (each with predictions.npz)")],
        out: Annotated[Path, typer.Option("--out", help="folder for the fused metrics.json/predictions.npz")],
    ) -> None:
        """Fuse runs by the mean softmax over the modalities that observed each test sample."""
        from models.fusion import fuse_runs

        m = fuse_runs(runs, out)
        console.print(
            f"fused {len(runs)} runs ({', '.join(m['modalities'])}): test macro accuracy "
            f"{m['fused']['macro_accuracy']:.4f} on {m['n_test']} samples"
        )
        typer.echo(str(out.resolve()))
