"""CLI commands `synth seismic` and `curate seismic` (registered by flows/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import console, fail


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
        batch_files: int = typer.Option(32, "--batch-files"),
        publish: str | None = typer.Option(
            None, "--publish", help="also publish as a version of this dataset name (entries: their name)"
        ),
        root: str | None = typer.Option(None, "--root", help="dataset root for --publish"),
        use_prefect: bool = typer.Option(
            True, "--prefect/--no-prefect", help="run as the curate-seismic flow"
        ),
        workers: int = typer.Option(
            1, "--workers", help="Dask workers for the batch fan-out (>=2: local cluster)"
        ),
        cluster: str | None = typer.Option(
            None, "--cluster", help="existing Dask scheduler, e.g. tcp://host:8786"
        ),
    ) -> None:
        """Curate waveforms + stations + events into the spectrogram store (appends by trace id).

        Give either --entry NAME (catalog) or --waveforms/--inventory/--events/--out.
        """
        from pipeline.errors import EminError
        from schemas.catalog import load_catalog
        from schemas.seismic import SeismicCurationParams, SeismicInputs

        if not use_prefect and (workers > 1 or cluster is not None):
            fail("--workers/--cluster fan batches out through the flow: drop --no-prefect, or drop them")
        if entry is not None:
            try:
                cat = load_catalog(catalog)
                inputs, params, target = cat.seismic_job(entry)
                cat_publish, cat_root = cat.publication(entry)
            except EminError as exc:
                fail(str(exc))
            out = out or target
            publish, root = publish or cat_publish, root or cat_root
        else:
            if waveforms is None or inventory is None or events is None or out is None:
                fail("give --entry NAME, or all of --waveforms, --inventory, --events and --out")
            assert waveforms is not None and inventory is not None and events is not None
            inputs = SeismicInputs.from_glob(waveforms, inventory, events, picks)
            params = SeismicCurationParams()
        assert out is not None
        if keep_waveforms:
            params = params.model_copy(update={"keep_waveforms": True})
        if keep_all_errors:
            params = params.model_copy(update={"max_horizontal_error_km": None})
        elif max_horizontal_error_km is not None:
            params = params.model_copy(update={"max_horizontal_error_km": max_horizontal_error_km})
        if not inputs.waveforms:
            fail(f"no waveform file matches {waveforms or entry!r}")
        try:
            if use_prefect:
                from flows.curate_seismic import curate_seismic_flow

                summary = curate_seismic_flow(
                    waveforms=[str(p) for p in inputs.waveforms],
                    inventory=str(inputs.inventory),
                    events=str(inputs.events),
                    out=str(out),
                    picks=None if inputs.picks is None else str(inputs.picks),
                    params=params,
                    batch_files=batch_files,
                    publish=publish,
                    root=root,
                    cluster=cluster,
                    workers=workers,
                )
            else:
                from pipeline.seismic.curate import curate_seismic

                summary = curate_seismic(inputs, out, params, batch_files=batch_files)
        except EminError as exc:
            fail(str(exc))
        console.print(
            f"{out}: +{summary.n_added} traces ({summary.n_already_present} already present), "
            f"+{summary.n_new_rejects} rejects; counts {summary.counts.get('per_sensor_type_split', {})}"
        )
        typer.echo(summary.version_store or str(Path(out).resolve()))
