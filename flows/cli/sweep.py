"""CLI command ``emin sweep hsi`` (registered by :func:`register`): the Prefect flow ``sweep``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    ClusterOption,
    DeviceOption,
    StoreOption,
    WorkersOption,
    command_group,
    console,
    parse_params,
    resolve_store,
)


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` sub-app with the ``hsi`` command to ``app``."""
    sweep_app = command_group("Hyperparameter sweeps (Prefect flow `sweep`, Optuna study on disk).")
    app.add_typer(sweep_app, name="sweep")

    @sweep_app.command("hsi")
    def sweep_hsi_cmd(
        store: StoreOption = "demo_hsi",
        out: Annotated[Path, typer.Option(help="sweep folder (study.db, trials.csv, plots)")] = Path(
            "runs/sweep-hsi"
        ),
        mode: Annotated[
            str, typer.Option(help="baseline | emin (emin also searches α and fixed/mgda)")
        ] = "emin",
        n_trials: Annotated[int, typer.Option(help="COMPLETE trials wanted (a re-run resumes)")] = 20,
        max_new_trials: Annotated[int | None, typer.Option(help="stop this run after N new trials")] = None,
        cv_folds: Annotated[int, typer.Option(help="validation folds per trial, 1-4 (1 = quick)")] = 4,
        seeds: Annotated[int, typer.Option(help="re-runs of the best configuration (0 = none)")] = 5,
        epochs: Annotated[int, typer.Option()] = 30,
        patience: Annotated[int, typer.Option(help="early-stopping patience; 0 = off")] = 10,
        parallel: Annotated[int, typer.Option(help="trial tasks in flight at once")] = 1,
        stack: Annotated[
            int, typer.Option(help="trials trained at once per task (pays on a GPU, not on a CPU)")
        ] = 1,
        workers: WorkersOption = 1,
        cluster: ClusterOption = None,
        gpu: Annotated[bool, typer.Option(help="trials request a GPU worker resource (Dask)")] = False,
        device: DeviceOption = "auto",
        study_name: Annotated[str, typer.Option()] = "hsi-sweep",
        sampler_seed: Annotated[int, typer.Option()] = 0,
        sampler: Annotated[str, typer.Option(help="tpe | random")] = "tpe",
        space: Annotated[
            str,
            typer.Option(help="table2 (default ranges) | report (round 2: per-layer widths, no dropout/wd)"),
        ] = "table2",
        space_param: Annotated[
            list[str] | None, typer.Option(help="override a space field, KEY=VALUE (e.g. dropout=null)")
        ] = None,
        param: Annotated[list[str] | None, typer.Option(help="any other training field, KEY=VALUE")] = None,
    ) -> None:
        """Search Hydra/EMIN hyperparameters (report Table 2) with Optuna; resumable."""
        from flows.sweep import SweepParams, sweep_flow
        from models.sweep_space import SweepSpace

        base = {"epochs": epochs, "patience": patience or None, "device": device} | parse_params(param or [])
        params = SweepParams(
            store=resolve_store(store, "hsi"), out_dir=str(out), study_name=study_name, mode=mode,  # type: ignore[arg-type]
            n_trials=n_trials, max_new_trials=max_new_trials, cv_folds=cv_folds, final_seeds=seeds,
            parallel=max(parallel, workers), stack=stack, sampler_seed=sampler_seed, base=base,
            workers=workers, cluster=cluster, gpu=gpu, sampler=sampler,  # type: ignore[arg-type]
            space=(SweepSpace.report if space == "report" else SweepSpace)(**parse_params(space_param or [])),
        )  # fmt: skip
        params.base_config()
        result = sweep_flow(params)
        console.print(result.get("summary", f"{result['n_complete']} complete trials"))
        typer.echo(
            json.dumps({k: result.get(k) for k in ("study", "n_complete", "best", "final")}, default=str)
        )
