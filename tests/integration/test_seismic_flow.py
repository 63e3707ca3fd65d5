"""The curate-seismic Prefect flow and the seismic CLI commands on a tiny generated network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer
from store_digests import store_digest
from typer.testing import CliRunner

from pipeline.publishing.contract import validate_seismic_store
from pipeline.publishing.zarr_io import open_store

pytestmark = pytest.mark.integration

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _apps() -> tuple[typer.Typer, typer.Typer, typer.Typer]:
    from flows.cli.seismic import register

    app, synth, curate = typer.Typer(), typer.Typer(), typer.Typer()
    app.add_typer(synth, name="synth")
    app.add_typer(curate, name="curate")
    register(synth, curate)
    return app, synth, curate


def test_cli_synth_then_curate_without_prefect(tmp_path: Path) -> None:
    app, _, _ = _apps()
    runner = CliRunner()
    res = runner.invoke(app, ["synth", "seismic", "--out", str(tmp_path / "net"), "--seed", "5",
                              "--stations", "12", "--events", "4"])  # fmt: skip
    assert res.exit_code == 0, res.output
    args = ["curate", "seismic", "--waveforms", str(tmp_path / "net" / "waveforms" / "*.mseed"),
            "--inventory", str(tmp_path / "net" / "stations.xml"), "--events", str(tmp_path / "net" / "events.xml"),
            "--picks", str(tmp_path / "net" / "picks.csv"), "--out", str(tmp_path / "s.zarr"), "--keep-all-errors",
            "--no-prefect"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert validate_seismic_store(tmp_path / "s.zarr") == []
    res = runner.invoke(app, [*args[:-1], "--waveforms", str(tmp_path / "nothing*.mseed"), "--no-prefect"])
    assert res.exit_code != 0


def test_flow_matches_library_and_reingest_is_noop(prefect_harness: None, tmp_path: Path) -> None:
    from flows.curate_seismic import curate_seismic_flow
    from pipeline.seismic.curate import curate_seismic
    from pipeline.synthetic.seismic_network import generate_seismic_network
    from schemas.seismic import SeismicCurationParams, SeismicInputs

    net = generate_seismic_network(tmp_path / "net", seed=6, n_stations=12, n_events=5)
    params = SeismicCurationParams(max_horizontal_error_km=None)
    kw = dict(inventory=str(net.inventory), events=str(net.events), picks=str(net.picks), params=params)
    files = [str(p) for p in net.waveform_files]
    summary = curate_seismic_flow(waveforms=files, out=str(tmp_path / "f.zarr"), unit_mb=1e-6, **kw)
    assert summary.published and summary.n_added > 0
    assert validate_seismic_store(tmp_path / "f.zarr") == []
    ref = tmp_path / "l.zarr"
    curate_seismic(SeismicInputs(waveforms=net.waveform_files, inventory=net.inventory, events=net.events,
                                 picks=net.picks), ref, params)  # fmt: skip
    a, b = open_store(tmp_path / "f.zarr"), open_store(ref)
    assert (a["spectrogram"].values == b["spectrogram"].values).all()
    before = store_digest(tmp_path / "f.zarr")
    again = curate_seismic_flow(waveforms=files, out=str(tmp_path / "f.zarr"), unit_mb=1e-6, **kw)
    assert again.published is False and store_digest(tmp_path / "f.zarr") == before


def test_batches_on_two_dask_workers_equal_the_library_run(prefect_harness: None, tmp_path: Path) -> None:
    from flows.curate_seismic import curate_seismic_flow
    from pipeline.seismic.curate import curate_seismic
    from pipeline.synthetic.seismic_network import generate_seismic_network
    from schemas.seismic import SeismicCurationParams, SeismicInputs

    net = generate_seismic_network(tmp_path / "net", seed=7, n_stations=10, n_events=4)
    params = SeismicCurationParams(max_horizontal_error_km=None)
    inputs = SeismicInputs(
        waveforms=net.waveform_files, inventory=net.inventory, events=net.events, picks=net.picks
    )
    curate_seismic(inputs, tmp_path / "library.zarr", params)
    summary = curate_seismic_flow(
        waveforms=[str(p) for p in net.waveform_files], inventory=str(net.inventory), events=str(net.events),
        picks=str(net.picks), params=params, out=str(tmp_path / "dask.zarr"), unit_mb=0.4, workers=2,
    )  # fmt: skip
    assert summary.published and summary.n_added > 0
    assert store_digest(tmp_path / "dask.zarr") == store_digest(tmp_path / "library.zarr")


def test_cli_refuses_workers_without_prefect(tmp_path: Path) -> None:
    app, _, _ = _apps()
    res = CliRunner().invoke(app, ["curate", "seismic", "--waveforms", str(tmp_path / "*.mseed"), "--inventory", "i.xml",
                                   "--events", "e.xml", "--out", str(tmp_path / "s.zarr"), "--no-prefect",
                                   "--workers", "2"])  # fmt: skip
    assert res.exit_code != 0 and "drop --no-prefect" in res.output


def test_cli_no_prefect_publish_publishes_a_version(tmp_path: Path) -> None:
    """`emin curate seismic --no-prefect --publish NAME` publishes (it used to drop --publish)."""
    from pipeline.publishing.registry import list_datasets, resolve

    app, _, _ = _apps()
    runner = CliRunner()
    res = runner.invoke(app, ["synth", "seismic", "--out", str(tmp_path / "net"), "--seed", "5",
                              "--stations", "12", "--events", "4"])  # fmt: skip
    assert res.exit_code == 0, res.output
    root = tmp_path / "published"
    args = ["curate", "seismic", "--waveforms", str(tmp_path / "net" / "waveforms" / "*.mseed"),
            "--inventory", str(tmp_path / "net" / "stations.xml"), "--events", str(tmp_path / "net" / "events.xml"),
            "--picks", str(tmp_path / "net" / "picks.csv"), "--out", str(tmp_path / "s.zarr"),
            "--no-prefect", "--publish", "quakes", "--root", str(root)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert [d.name for d in list_datasets(root)] == ["quakes"]
    _, folder = resolve("quakes", root=root)
    printed = res.output.strip().splitlines()[-1]  # the published version's store
    assert printed.startswith(folder) and validate_seismic_store(printed) == []
