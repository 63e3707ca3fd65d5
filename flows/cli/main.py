"""The ``emin`` command line: generate demo data, curate datasets, validate stores."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# the ephemeral API server waits 20 s by default; a busy 2-core laptop needs longer to start it
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.cli import datasets as cli_datasets
from flows.cli import experiment as cli_experiment
from flows.cli import seismic as cli_seismic
from flows.cli import serve as cli_serve
from flows.cli import sweep as cli_sweep
from flows.cli import train as cli_train
from flows.cli import vae as cli_vae
from flows.cli.common import (
    ClusterOption,
    PrefectOption,
    WorkersOption,
    command_group,
    console,
    fail,
    parse_pairs,
    parse_params,
)

app = command_group("emin-fusion: curate multi-modality datasets and train EMIN fusion models.")
synth_app = command_group("Generate synthetic demo inputs in real file formats.")
curate_app = command_group("Curate raw inputs into a published Zarr dataset.")
app.add_typer(synth_app, name="synth")
app.add_typer(curate_app, name="curate")
cli_seismic.register(synth_app, curate_app)
cli_datasets.register(app)
cli_vae.register(cli_train.register(app))
cli_sweep.register(app)
cli_experiment.register(app)
cli_serve.register(app)
out_console = Console(soft_wrap=True)


@synth_app.command("hsi")
def synth_hsi(
    out: Annotated[Path, typer.Option(help="folder to write the scene into")] = Path("data/demo/hsi"),
    seed: Annotated[int, typer.Option(help="random seed; same seed, same files")] = 0,
    polygons: Annotated[int, typer.Option(help="number of labelled polygons")] = 200,
    scale: Annotated[float, typer.Option(help="site size factor (1.0 = full demo site)")] = 1.0,
) -> None:
    """Write the synthetic UNESE-like demo scene (GeoPackage, GeoTIFF, ENVI, transmission CSV)."""
    from pipeline.synthetic.hsi_scene import generate_hsi_scene

    start = time.perf_counter()
    with console.status(f"generating HSI demo scene in {out} ..."):
        scene = generate_hsi_scene(out, seed=seed, n_polygons=polygons, scale=scale)
    console.print(f"wrote {len(scene.rasters)} rasters + polygons in {time.perf_counter() - start:.1f} s")
    out_console.print(str(scene.root))


def _hsi_inputs_from_args(
    polygons: Path,
    class_column: str | None,
    raster: list[str],
    sensor: list[str],
    transmission: Path | None,
    layer: str | None,
) -> Any:
    from schemas.hsi import HSIInputs, RasterSpec

    if class_column is None:
        fail("--class-column is required with --polygons")
    paths = parse_pairs(raster, "--raster")
    sensors = parse_pairs(sensor, "--sensor")
    if not paths:
        fail("give at least one --raster NAME=PATH (with a matching --sensor NAME=VNIR|SWIR)")
    unknown = sorted(set(sensors) - set(paths))
    missing = sorted(set(paths) - set(sensors))
    if unknown or missing:
        fail(f"--sensor must name every --raster exactly once (missing: {missing}, unknown: {unknown})")
    specs = [RasterSpec(name=n, path=Path(p), sensor=sensors[n].upper()) for n, p in paths.items()]  # type: ignore[arg-type]
    return HSIInputs(
        polygons=polygons, class_column=class_column, rasters=specs, transmission=transmission, layer=layer
    )


@curate_app.command("hsi")
def curate_hsi(
    entry: Annotated[str | None, typer.Option(help="hsi_dataset entry of the catalog")] = None,
    catalog: Annotated[Path, typer.Option(help="catalog file")] = Path("data_catalog.yaml"),
    polygons: Annotated[Path | None, typer.Option(help="labelled polygons (any OGR file)")] = None,
    class_column: Annotated[str | None, typer.Option(help="column holding class names")] = None,
    layer: Annotated[str | None, typer.Option(help="layer of a multi-layer polygon file")] = None,
    raster: Annotated[list[str], typer.Option(help="NAME=PATH, repeat per modality")] = [],  # noqa: B006
    sensor: Annotated[list[str], typer.Option(help="NAME=VNIR|SWIR, one per --raster")] = [],  # noqa: B006
    transmission: Annotated[Path | None, typer.Option(help="CSV wavelength_nm,transmission")] = None,
    out: Annotated[Path | None, typer.Option(help="where to publish the Zarr store")] = None,
    seed: Annotated[int | None, typer.Option(help="override the sampling/fold seed")] = None,
    param: Annotated[list[str], typer.Option(help="override a curation parameter: key=value")] = [],  # noqa: B006
    publish: Annotated[
        str | None, typer.Option(help="also publish as a version of this dataset name (entries: their name)")
    ] = None,
    root: Annotated[
        str | None, typer.Option(help="dataset root for --publish (default $EMIN_DATA_ROOT)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace an existing HSI store at --out (nothing else)")
    ] = False,
    use_prefect: PrefectOption = True,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bars")] = False,
    workers: WorkersOption = 1,
    cluster: ClusterOption = None,
) -> None:
    """Curate an HSI dataset from a catalog entry (--entry) or from direct paths (--polygons ...).

    Prints Table 1 and, as the last line on stdout, the path of the store (the published
    version's store when publishing).
    """
    from flows.curate_hsi import curate_hsi_job
    from flows.jobs import resolve_job
    from flows.progress import StageProgress, listening_stages
    from pipeline.hsi.store import table1_frame
    from pipeline.publishing.zarr_io import open_store
    from schemas.hsi import HSICurationParams

    if (entry is None) == (polygons is None):
        fail("give either --entry NAME (catalog) or --polygons with --raster/--sensor/--out")
    if entry is not None:
        job = resolve_job(
            "hsi",
            entry,
            str(catalog),
            None,
            None,
            None if out is None else str(out),
            publish,
            root,
            overwrite,
        )
    else:
        if out is None:
            fail("--out is required with --polygons")
        assert polygons is not None and out is not None
        inputs = _hsi_inputs_from_args(polygons, class_column, raster, sensor, transmission, layer)
        job = resolve_job("hsi", None, str(catalog), inputs, None, str(out), publish, root, overwrite)
    overrides = parse_params(param)
    if seed is not None:
        overrides["seed"] = seed
    params = HSICurationParams.model_validate({**job.params.model_dump(), **overrides})
    from pipeline.hsi.curate import preflight
    from pipeline.hsi.store import KIND
    from pipeline.publishing.zarr_io import check_target

    # deterministic input errors: one clear message before any flow/task starts
    check_target(job.target, kind=KIND, overwrite=job.overwrite, root=job.root)
    preflight(job.inputs, params)
    start = time.perf_counter()
    with StageProgress(quiet=quiet) as bars, listening_stages(bars):
        path = curate_hsi_job(
            dataclasses.replace(job, params=params), prefect=use_prefect, workers=workers, cluster=cluster
        )
    elapsed = time.perf_counter() - start
    ds = open_store(path)
    show_table1(table1_frame(ds), title=f"Table 1: samples per class and modality ({elapsed:.1f} s)")
    hist = ds.attrs["modality_count_histogram"]
    console.print("modalities per sampled point: " + ", ".join(f"{k}: {v}" for k, v in enumerate(hist)))
    console.print(f"{ds.attrs['n_samples']} samples, {ds.attrs['n_rejected']} rejected (see group 'rejects')")
    for message in ds.attrs.get("quality_warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(str(message))}")
    out_console.print(path)


def show_table1(table: Any, *, title: str) -> None:
    """Print Table 1 as a rich table on stderr (stdout keeps only the store path)."""
    grid = Table(title=title)
    grid.add_column("class")
    for col in table.columns:
        grid.add_column(str(col), justify="right")
    for idx, row in table.iterrows():
        grid.add_row(str(idx), *(f"{v:g}" for v in row.to_numpy()))
    console.print(grid)


@app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="a published store")]) -> None:
    """Check a published store against its contract (docs/format.md); exit 1 on any violation."""
    from pipeline.publishing.contract import validate_store

    problems = validate_store(path)
    if problems:
        console.print(f"[bold red]{path} violates the contract:[/]")
        for p in problems:
            console.print(f"  - {p}")
        raise typer.Exit(1)
    console.print(f"[green]{path} satisfies the contract[/]")


def main() -> None:
    """Console entry point; hides third-party deprecation noise (affine inside rasterio).

    Ctrl-C is routed through :mod:`pipeline.interrupt` first, before any slow import.
    """
    from pipeline import interrupt

    interrupt.install()
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    from pipeline.orphans import mark_owner

    mark_owner()  # helper processes (Prefect's server, Dask workers) can be traced back to this run
    app(prog_name="emin")


if __name__ == "__main__":
    main()
