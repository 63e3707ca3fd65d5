"""CLI commands `synth seismic` and `curate seismic` (registered by flows/cli/main.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from flows.cli.common import console, fail
from pipeline.seismic.units import DEFAULT_UNIT_MB


def register(synth_app: typer.Typer, curate_app: typer.Typer) -> None:
    """Add ``synth seismic`` and ``curate seismic`` to the given sub-apps.

    Long only because it holds the two command functions (typer needs them defined here).
    """

    @synth_app.command("seismic")
    def synth_seismic(
        out: Path = typer.Option(..., "--out", help="directory to write the synthetic network into"),
        seed: int = typer.Option(0, "--seed"),
        stations: int = typer.Option(280, "--stations"),
        events: int = typer.Option(500, "--events"),
    ) -> None:
        """Write a synthetic Utah-like network (miniSEED, StationXML, QuakeML, picks)."""
        from pipeline.synthetic.seismic_network import generate_seismic_network

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
        entry: str | None = typer.Option(None, "--entry", help="seismic_dataset entry of the catalog"),
        catalog: Path = typer.Option(Path("data_catalog.yaml"), "--catalog", help="catalog file"),
        waveforms: str | None = typer.Option(None, "--waveforms", help="glob of waveform files (quote it)"),
        inventory: Path | None = typer.Option(None, "--inventory", help="StationXML"),
        events: Path | None = typer.Option(None, "--events", help="QuakeML or CSV catalog"),
        out: Path | None = typer.Option(None, "--out", help="Zarr store to create or append to"),
        picks: Path | None = typer.Option(None, "--picks", help="P picks (CSV or QuakeML)"),
        max_horizontal_error_km: float | None = typer.Option(
            None,
            "--max-horizontal-error-km",
            help="reject events with catalog error >= this (default: the entry's value, else 1 km as in the report)",
        ),
        keep_all_errors: bool = typer.Option(False, "--keep-all-errors", help="no horizontal-error filter"),
        keep_waveforms: bool = typer.Option(
            False, "--keep-waveforms", help="also store the windowed ZNE waveforms (for SeisBench export)"
        ),
        cross_spectra: bool = typer.Option(
            False,
            "--cross-spectra",
            help="also store the Z-N/Z-E cross-spectra (polarity channels: back azimuth becomes learnable)",
        ),
        unit_mb: float = typer.Option(
            DEFAULT_UNIT_MB, "--unit-mb", help="work unit size in MB of waveform files (the fan-out's grain)"
        ),
        publish: str | None = typer.Option(
            None, "--publish", help="also publish as a version of this dataset name (entries: their name)"
        ),
        root: str | None = typer.Option(None, "--root", help="dataset root for --publish"),
        use_prefect: bool = typer.Option(
            True, "--prefect/--no-prefect", help="run as the curate-seismic flow"
        ),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
        workers: int = typer.Option(
            1, "--workers", help="Dask workers for the work-unit fan-out (>=2: local cluster)"
        ),
        cluster: str | None = typer.Option(
            None, "--cluster", help="existing Dask scheduler, e.g. tcp://host:8786"
        ),
    ) -> None:
        """Curate waveforms + stations + events into the spectrogram store (appends by trace id).

        Give either --entry NAME (catalog) or --waveforms/--inventory/--events/--out.
        """
        from flows.curate_seismic import curate_seismic_job
        from flows.jobs import SeismicJob, resolve_job
        from flows.progress import StageProgress, listening_stages
        from pipeline.errors import EminError
        from schemas.seismic import SeismicInputs

        if not use_prefect and (workers > 1 or cluster is not None):
            fail("--workers/--cluster fan units out through the flow: drop --no-prefect, or drop them")
        if entry is None and (waveforms is None or inventory is None or events is None or out is None):
            fail("give --entry NAME, or all of --waveforms, --inventory, --events and --out")
        try:
            direct = None
            if entry is None:
                assert waveforms is not None and inventory is not None and events is not None
                direct = SeismicInputs.from_glob(waveforms, inventory, events, picks)
            job: SeismicJob = resolve_job(
                "seismic", entry, str(catalog), direct, None, None if out is None else str(out), publish, root
            )
        except EminError as exc:
            fail(str(exc))
        params = job.params
        if keep_waveforms:
            params = params.model_copy(update={"keep_waveforms": True})
        if cross_spectra:
            params = params.model_copy(update={"cross_spectra": True})
        if keep_all_errors:
            params = params.model_copy(update={"max_horizontal_error_km": None})
        elif max_horizontal_error_km is not None:
            params = params.model_copy(update={"max_horizontal_error_km": max_horizontal_error_km})
        job = dataclasses.replace(job, params=params)
        from pipeline.publishing.zarr_io import check_target
        from schemas.seismic import EMIN_KIND

        check_target(job.target, kind=EMIN_KIND, append=True, root=job.root)  # before any work
        if not job.inputs.waveforms:
            fail(
                f"no waveform file matches {waveforms or entry!r}\n"
                "  fix: quote the glob and check it matches files (e.g. --waveforms 'data/*.mseed')"
            )
        if use_prefect:  # deterministic input errors: one clear message before any task starts
            from pipeline.io.waveforms import load_catalog, load_inventory, load_picks

            load_inventory(job.inputs.inventory)
            load_picks(job.inputs.picks, load_catalog(job.inputs.events)[0])
        try:
            with StageProgress(quiet=quiet) as bars, listening_stages(bars):
                summary = curate_seismic_job(
                    job, prefect=use_prefect, unit_mb=unit_mb, workers=workers, cluster=cluster
                )
        except EminError as exc:
            fail(str(exc))
        out = job.target
        console.print(
            f"{out}: +{summary.n_added} traces ({summary.n_already_present} already present), "
            f"+{summary.n_new_rejects} rejects; counts {summary.counts.get('per_sensor_type_split', {})}"
        )
        typer.echo(summary.version_store or str(Path(out).resolve()))
