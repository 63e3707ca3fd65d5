"""CLI commands ``emin train hsi``, ``emin train seismic`` and ``emin fuse`` (registered by :func:`register`)."""

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

MODES = (
    "baseline | emin | student-teacher | finetune | ssl (shorthand for --emin/--unlabelled/--alpha-schedule)"
)
ALPHAS = "fixed | sampled | mgda"
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or summary table")]

PresetOpt = Annotated[str | None, typer.Option(help="report: the report's settings (explicit flags win)")]
EminOpt = Annotated[str | None, typer.Option(help="none | gaussian | student-teacher (overrides --mode)")]
UnlabelledOpt = Annotated[str | None, typer.Option(help="use | drop: EMIN on the unlabelled pool")]
ScheduleOpt = Annotated[
    str | None, typer.Option(help="fixed | sampled | mgda | finetune (overrides --alpha)")
]
RestoreOpt = Annotated[str | None, typer.Option(help="best | last | best-after-switch (weights kept)")]


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [t.strip() for t in value.split(",") if t.strip()]


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
    preset = fields.pop("preset", None)
    fields = {k: v for k, v in fields.items() if v is not None} | parse_params(extra)
    if preset is not None:
        fields = cls.preset_fields(preset, str(fields.get("mode", "baseline"))) | fields
    fields["store"] = resolve_store(str(fields["store"]), kind)
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


def register(app: typer.Typer) -> typer.Typer:
    """Add the ``train`` sub-app with ``hsi`` and ``seismic`` commands (and ``emin fuse``) to ``app``;
    returns the ``train`` sub-app."""
    from flows.cli import fuse as cli_fuse

    train_app = command_group("Train EMIN fusion models (Prefect flows train-hsi / train-seismic).")
    app.add_typer(train_app, name="train")
    cli_fuse.register(app)

    @train_app.command("hsi")
    def train_hsi_cmd(
        store: StoreOption = "demo_hsi",
        mode: Annotated[str | None, typer.Option(help=MODES)] = None,
        alpha: Annotated[str | None, typer.Option(help=ALPHAS)] = None,
        preset: PresetOpt = None,
        emin: EminOpt = None,
        unlabelled: UnlabelledOpt = None,
        alpha_schedule: ScheduleOpt = None,
        restore: RestoreOpt = None,
        modalities: Annotated[str | None, typer.Option(help="train on these modalities, e.g. VNIR1")] = None,
        labelled_per_class: Annotated[int | None, typer.Option(help="label budget per class")] = None,
        normalise: Annotated[str | None, typer.Option(help="zscore | none")] = None,
        trace_samples: Annotated[int | None, typer.Option(help="trace K probe samples (traces.npz)")] = None,
        trace_every: Annotated[int | None, typer.Option(help="trace every N epochs")] = None,
        alpha_value: Annotated[float | None, typer.Option(help="CE weight α (alpha=fixed)")] = None,
        net: Annotated[str | None, typer.Option(help="hydra | mlp (per-modality MLPs)")] = None,
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
            "teachers": _csv(teachers), "preset": preset, "emin": emin, "unlabelled": unlabelled,
            "alpha_schedule": alpha_schedule, "restore": restore, "modalities": _csv(modalities),
            "labelled_per_class": labelled_per_class, "normalise": normalise, "trace_samples": trace_samples,
            "trace_every": trace_every,
        }  # fmt: skip
        _run("hsi", fields, param or [], out, use_prefect, quiet)

    @train_app.command("seismic")
    def train_seismic_cmd(
        store: StoreOption = "demo_seismic",
        mode: Annotated[str | None, typer.Option(help=MODES)] = None,
        alpha: Annotated[str | None, typer.Option(help=ALPHAS)] = None,
        preset: PresetOpt = None,
        emin: EminOpt = None,
        unlabelled: UnlabelledOpt = None,
        alpha_schedule: ScheduleOpt = None,
        restore: RestoreOpt = None,
        labelled_events: Annotated[int | None, typer.Option(help="label budget: training events")] = None,
        centre: Annotated[str | None, typer.Option(help="EMIN centre: mean | median")] = None,
        networks: Annotated[str | None, typer.Option(help="per-sensor | shared")] = None,
        alpha_value: Annotated[
            float | None, typer.Option(help="supervised-loss weight α (alpha=fixed)")
        ] = None,
        arch: Annotated[str | None, typer.Option(help="small | vgg11 | vgg13 | vgg16 | vgg19")] = None,
        inputs: Annotated[
            str | None,
            typer.Option(help="power | power+polarity (needs a store curated with --cross-spectra)"),
        ] = None,
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
            "preset": preset, "emin": emin, "unlabelled": unlabelled, "alpha_schedule": alpha_schedule,
            "restore": restore, "labelled_events": labelled_events, "centre": centre, "networks": networks,
            "inputs": inputs,
        }  # fmt: skip
        _run("seismic", fields, param or [], out, use_prefect, quiet)

    return train_app
