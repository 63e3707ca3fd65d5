"""CLI commands `synth seismic` and `curate seismic` (registered by flows/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(synth_app: typer.Typer, curate_app: typer.Typer) -> None:
    """Add ``synth seismic`` and ``curate seismic`` to the given sub-apps."""

    @synth_app.command("seismic")
    def synth_seismic(
        out: Path = typer.Option(..., "--out", help="directory to write the synthetic network into"),
        seed: int = typer.Option(0, "--seed"),
        stations: int = typer.Option(280, "--stations"),
        events: int = typer.Option(500, "--events"),
    ) -> None:
        """Write a synthetic Utah-like network (miniSEED, StationXML, QuakeML, picks)."""
        from pipeline.seismic_synth import generate_seismic_network

        net = generate_seismic_network(out, seed=seed, n_stations=stations, n_events=events)
        console.print(
            f"wrote {net.n_events} events, {net.n_stations} stations, {net.n_observations} observations "
            f"({net.n_channel_traces} channel traces) to {net.out_dir}"
        )
        console.print(
            f"next: emin curate seismic --waveforms '{net.waveform_glob}' --inventory {net.inventory} "
            f"--events {net.events} --picks {net.picks} --out seismic.zarr"
        )

    @curate_app.command("seismic")
    def curate_seismic_cmd(
        waveforms: str = typer.Option(..., "--waveforms", help="glob of waveform files (quote it)"),
        inventory: Path = typer.Option(..., "--inventory", help="StationXML"),
        events: Path = typer.Option(..., "--events", help="QuakeML or CSV catalog"),
        out: Path = typer.Option(..., "--out", help="Zarr store to create or append to"),
        picks: Path | None = typer.Option(None, "--picks", help="P picks (CSV or QuakeML)"),
        max_horizontal_error_km: float = typer.Option(
            1.0, "--max-horizontal-error-km", help="reject events with catalog error >= this (report: 1 km)"
        ),
        keep_all_errors: bool = typer.Option(False, "--keep-all-errors", help="no horizontal-error filter"),
        batch_files: int = typer.Option(32, "--batch-files"),
        use_prefect: bool = typer.Option(
            True, "--prefect/--no-prefect", help="run as the curate-seismic flow"
        ),
    ) -> None:
        """Curate waveforms + stations + events into the spectrogram store (appends by trace id)."""
        from schemas.seismic import SeismicCurationParams, SeismicInputs

        params = SeismicCurationParams(
            max_horizontal_error_km=None if keep_all_errors else max_horizontal_error_km
        )
        inputs = SeismicInputs.from_glob(waveforms, inventory, events, picks)
        if not inputs.waveforms:
            raise typer.BadParameter(f"no file matches {waveforms!r}", param_hint="--waveforms")
        if use_prefect:
            from flows.curate_seismic import curate_seismic_flow

            summary = curate_seismic_flow(
                waveforms=[str(p) for p in inputs.waveforms],
                inventory=str(inventory),
                events=str(events),
                out=str(out),
                picks=None if picks is None else str(picks),
                params=params,
                batch_files=batch_files,
            )
        else:
            from pipeline.seismic_store import curate_seismic

            summary = curate_seismic(inputs, out, params, batch_files=batch_files)
        console.print(
            f"{out}: +{summary.n_added} traces ({summary.n_already_present} already present), "
            f"+{summary.n_new_rejects} rejects; counts {summary.counts.get('per_sensor_type_split', {})}"
        )
