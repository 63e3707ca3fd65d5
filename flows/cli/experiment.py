"""CLI ``emin experiment list | show NAME | run NAME|SPEC.yaml`` (registered by :func:`register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer
import yaml
from rich.console import Console
from rich.table import Table

from flows.cli.common import ClusterOption, DeviceOption, WorkersOption, command_group, console

_out = Console(soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``experiment`` sub-app to ``app``.

    Long on purpose: it only holds the typer command functions (each short), defined in one
    closure so the sub-app stays local to this module.
    """
    exp_app = command_group("The report's experiments on any published dataset (Prefect flow `experiment`).")
    app.add_typer(exp_app, name="experiment")

    @exp_app.command("list")
    def list_cmd() -> None:
        """The shipped presets (ordinary specs in experiments/presets/ a user can copy and edit)."""
        from experiments.spec import list_presets, load_spec

        grid = Table(title="experiment presets")
        for col in ("name", "kind", "arms", "title"):
            grid.add_column(col)
        for n in list_presets():
            s = load_spec(n)
            grid.add_row(n, s.kind, ", ".join(s.arms), s.title)
        console.print(grid)

    @exp_app.command("show")
    def show_cmd(name: Annotated[str, typer.Argument(help="preset name or spec file")]) -> None:
        """Print a spec as YAML (copy it, edit it, run it with `emin experiment run FILE`)."""
        from experiments.spec import load_spec

        _out.print(yaml.safe_dump(load_spec(name).model_dump(mode="json"), sort_keys=False))

    @exp_app.command("run")
    def run_cmd(
        name: Annotated[str, typer.Argument(help="preset name or spec file")],
        store: Annotated[str | None, typer.Option(help="published dataset name or store path")] = None,
        budget: Annotated[str, typer.Option(help="smoke | demo | report")] = "demo",
        seeds: Annotated[int | None, typer.Option(help="number of seeds (>= 2 for a verdict)")] = None,
        out: Annotated[Path, typer.Option(help="experiment results folder")] = Path("experiments_out"),
        workers: WorkersOption = 1,
        cluster: ClusterOption = None,
        device: DeviceOption = "auto",
        use_prefect: Annotated[bool, typer.Option("--prefect/--no-prefect", help="run as a flow")] = True,
    ) -> None:
        """Run (or resume) an experiment; prints the verdict table and the report's path."""
        import pandas as pd

        from experiments.runner import prepare, run_experiment
        from experiments.spec import BudgetName, load_spec
        from pipeline.errors import InputError

        spec = load_spec(name)
        if budget not in ("smoke", "demo", "report"):
            raise InputError(f"unknown budget {budget!r}", fix="use --budget smoke, demo or report")
        level = cast(BudgetName, budget)
        if use_prefect:
            from flows.experiment import experiment_flow

            prepare(spec, level, store=store, seeds=seeds, out_root=out)  # every check before any task
            done = experiment_flow(
                name=name, budget=level, store=store, seeds=seeds, out_root=str(out),
                workers=workers, cluster=cluster, gpu=device == "cuda",
            )  # fmt: skip
            folder = Path(done["folder"])
        else:
            folder = run_experiment(
                spec, budget=level, store=store, seeds=seeds, out_root=out, device=device
            ).folder
        comps = pd.read_csv(folder / "comparisons.csv")
        cols = (
            "arm_b",
            "arm_a",
            "metric",
            "n_seeds",
            "mean_diff",
            "ci_low",
            "ci_high",
            "p_holm",
            "significant",
        )
        grid = Table(title=f"{spec.name} ({budget}): paired comparisons (b − a)")
        for col in cols:
            grid.add_column(col)
        for row in comps[list(cols)].itertuples(index=False):
            grid.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        console.print(grid)
        findings = pd.read_csv(folder / "findings.csv") if (folder / "findings.csv").exists() else None
        if findings is not None:
            for f in findings.itertuples(index=False):
                console.print(f"[bold]{f.verdict}[/]: {f.claim}")
        typer.echo(str((folder / "report.html").resolve()))
