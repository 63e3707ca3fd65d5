"""CLI commands ``emin train hsi`` and ``emin train seismic`` (registered by :func:`register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import (
    DeviceOption,
    EpochsOption,
    ParamOption,
    PatienceOption,
    PrefectOption,
    RunDirOption,
    SeedOption,
    StoreOption,
    command_group,
    console,
    parse_params,
    resolve_store,
)

MODES = "baseline | emin | student-teacher | finetune | ssl"
ALPHAS = "fixed | sampled | mgda"
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or summary table")]


def _run(
    kind: str,
    fields: dict[str, Any],
    extra: list[str],
    out: Path | None,
    use_prefect: bool,
    quiet: bool = False,
) -> None:
    """Validate the config, run the flow (or the plain function) and print the summary."""
    from schemas.training import HSITrainConfig, SeismicTrainConfig

    cls = HSITrainConfig if kind == "hsi" else SeismicTrainConfig
    fields = {k: v for k, v in fields.items() if v is not None} | parse_params(extra)
    fields["store"] = resolve_store(str(fields["store"]))
    if fields.get("patience") == 0:
        fields["patience"] = None
    probe = cls.model_validate({**fields, "out_dir": None})
    run_dir = out if out is not None else Path("runs") / probe.run_name(kind)
    config = cls.model_validate({**fields, "out_dir": str(run_dir)})
    _execute_and_show(kind, config, use_prefect, quiet)
    typer.echo(str(Path(str(config.out_dir)).resolve()))


# --- progress bar + summary table (flows/progress.py); quiet under --quiet or without a TTY ---
def _execute_and_show(kind: str, config: Any, use_prefect: bool, quiet: bool) -> None:
    """Train via the flow or directly with a rich progress bar; print the metrics as a rich table."""
    from flows.progress import TerminalProgress, interactive, listening, metrics_table

    with TerminalProgress(f"train {kind} ({config.mode})", quiet=quiet) as bar:
        if use_prefect:
            from flows.train import train_hsi_flow, train_seismic_flow

            flow_fn = train_hsi_flow if kind == "hsi" else train_seismic_flow
            with listening(bar):
                out = flow_fn(config)
            metrics, summary = out["metrics"], str(out["summary"])
        else:
            from models.runs import summary_markdown, to_jsonable
            from models.training.hsi import train_hsi
            from models.training.seismic import train_seismic

            result = (train_hsi if kind == "hsi" else train_seismic)(config, on_epoch=bar)
            metrics, summary = to_jsonable(result.metrics), summary_markdown(result)
    if interactive(quiet):
        console.print(metrics_table(metrics))
    elif not quiet:
        console.print(summary)


def register(app: typer.Typer) -> None:
    """Add the ``train`` sub-app with ``hsi`` and ``seismic`` commands to ``app``."""
    train_app = command_group("Train EMIN fusion models (Prefect flows train-hsi / train-seismic).")
    app.add_typer(train_app, name="train")

    @train_app.command("hsi")
    def train_hsi_cmd(
        store: StoreOption = "demo_hsi",
        mode: Annotated[str, typer.Option(help=MODES)] = "baseline",
        alpha: Annotated[str, typer.Option(help=ALPHAS)] = "fixed",
        alpha_value: Annotated[float | None, typer.Option(help="CE weight α (alpha=fixed)")] = None,
        net: Annotated[str, typer.Option(help="hydra | mlp (per-modality MLPs)")] = "hydra",
        epochs: EpochsOption = None,
        batch_size: Annotated[int | None, typer.Option()] = None,
        lr: Annotated[float | None, typer.Option()] = None,
        patience: PatienceOption = None,
        label_fraction: Annotated[float | None, typer.Option(help="fraction of training labels kept")] = None,
        teachers: Annotated[str | None, typer.Option(help="student-teacher: comma list, e.g. SWIR")] = None,
        switch_epoch: Annotated[int | None, typer.Option(help="finetune: first EMIN epoch")] = None,
        seed: SeedOption = 0,
        device: DeviceOption = "auto",
        out: RunDirOption = None,
        param: ParamOption = None,
        use_prefect: PrefectOption = True,
        quiet: QuietOption = False,
    ) -> None:
        """Train a Hydra / per-modality-MLP classifier on an HSI store and write a run folder."""
        fields = {
            "store": store, "mode": mode, "alpha": alpha, "alpha_value": alpha_value, "net": net,
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience,
            "label_fraction": label_fraction, "switch_epoch": switch_epoch, "seed": seed, "device": device,
            "teachers": None if teachers is None else [t.strip() for t in teachers.split(",") if t.strip()],
        }  # fmt: skip
        _run("hsi", fields, param or [], out, use_prefect, quiet)

    @train_app.command("seismic")
    def train_seismic_cmd(
        store: StoreOption = "demo_seismic",
        mode: Annotated[str, typer.Option(help=MODES)] = "baseline",
        alpha: Annotated[str, typer.Option(help=ALPHAS)] = "fixed",
        alpha_value: Annotated[
            float | None, typer.Option(help="supervised-loss weight α (alpha=fixed)")
        ] = None,
        arch: Annotated[str, typer.Option(help="small | vgg11 | vgg13 | vgg16 | vgg19")] = "small",
        epochs: EpochsOption = None,
        batch_size: Annotated[int | None, typer.Option()] = None,
        lr: Annotated[float | None, typer.Option()] = None,
        patience: PatienceOption = None,
        label_fraction: Annotated[
            float | None, typer.Option(help="fraction of training events labelled")
        ] = None,
        max_traces: Annotated[int | None, typer.Option(help="use only the first N traces")] = None,
        seed: SeedOption = 0,
        device: DeviceOption = "auto",
        out: RunDirOption = None,
        param: ParamOption = None,
        use_prefect: PrefectOption = True,
        quiet: QuietOption = False,
    ) -> None:
        """Train a VGG-style location regressor on a seismic store and write a run folder."""
        fields = {
            "store": store, "mode": mode, "alpha": alpha, "alpha_value": alpha_value, "arch": arch,
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience,
            "label_fraction": label_fraction, "max_traces": max_traces, "seed": seed, "device": device,
        }  # fmt: skip
        _run("seismic", fields, param or [], out, use_prefect, quiet)
