"""What the Prefect UI and the terminal show: form schemas, artifacts after publishing, progress, warnings."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FLOWS = [
    ("flows/curate_hsi.py", "curate_hsi_flow"),
    ("flows/curate_seismic.py", "curate_seismic_flow"),
    ("flows/train.py", "train_hsi_flow"),
    ("flows/train.py", "train_seismic_flow"),
]
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("path", "name"), FLOWS)
def test_flow_parameter_schema_describes_every_field(path: str, name: str) -> None:
    import importlib

    from prefect.utilities.callables import parameter_schema_from_entrypoint

    module = importlib.import_module(path[:-3].replace("/", "."))
    flow = getattr(module, name)
    for schema in (
        flow.parameters.model_dump_for_openapi(),  # what `flow.serve()`/the SDK register
        parameter_schema_from_entrypoint(
            f"{REPO / path}:{name}"
        ).model_dump_for_openapi(),  # `prefect deploy`
    ):
        props: dict[str, Any] = schema["properties"]
        assert props
        for field, spec in props.items():
            assert spec.get("description"), f"{name}.{field} has no description"
            assert spec.get("title") and spec["title"] != field, f"{name}.{field} has no human title"
            default = spec.get("default")
            assert not (spec.get("type") == "array" and default is None), (
                f"{name}.{field}: list without default"
            )


def test_nested_models_default_to_instances_and_bounds_show() -> None:
    from flows.curate_hsi import curate_hsi_flow
    from flows.train import train_hsi_flow

    props = curate_hsi_flow.parameters.model_dump_for_openapi()["properties"]
    assert props["params"]["default"]["vnir_range_nm"] == [400.0, 900.0]  # an instance, not None
    assert "entry" in props and "override" in props["entry"]["description"]
    train = train_hsi_flow.parameters.model_dump_for_openapi()["properties"]
    assert train["lr"]["title"] == "Learning rate" and train["lr"]["exclusiveMinimum"] == 0.0
    assert train["epochs"]["minimum"] == 1 and train["teachers"]["default"] == ["SWIR"]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny HSI store curated by the library and published as a version."""
    from conftest import tiny_inputs
    from scenes import make_tiny_scene

    from flows.publishing import publish_version
    from pipeline.hsi.curate import curate_hsi
    from schemas.hsi import HSICurationParams

    root = tmp_path_factory.mktemp("ui_pub")
    scene = make_tiny_scene(root / "scene")
    store = curate_hsi(
        tiny_inputs(scene), HSICurationParams(seed=1, max_points_per_class=200), out=root / "w.zarr"
    )
    version = publish_version(str(store), name="tiny", root=str(root / "published"))
    return {"store": store, "version": version, "root": str(root / "published")}


def test_curation_artifact_after_publish_names_the_version(published: dict[str, Any]) -> None:
    from flows.artifacts import curation_headline, curation_markdown
    from pipeline.publishing.zarr_io import open_store
    from pipeline.reports.dataset import dataset_figures, table1_rows

    version = published["version"]
    facts = curation_headline(version, published["store"], root=published["root"])
    assert facts["version"] == version.version and facts["path"] == version.path
    assert facts["manifest_sha256"].startswith("sha256:") and facts["stac_item"].endswith(
        f"{version.version}.json"
    )
    ds = open_store(published["store"]).load()
    md = curation_markdown("curate-hsi", facts, table=table1_rows(ds), figures=dataset_figures(ds))
    headline = md.splitlines()[0]
    assert version.version in headline and "tiny" in headline
    assert f"**published** `{version.path}`" in md
    assert f"samples **{ds.attrs['n_samples']}**" in md and f"rejected **{ds.attrs['n_rejected']}**" in md
    assert md.count("](data:image/png;base64,") == 4  # Fig 5, map, spectra, folds
    assert "Table 1" in md and "| total |" in md
    # the working copy is named as such, never as the published path
    assert f"working copy `{published['store']}`" in md


def test_unpublished_curation_says_so(tmp_path: Path) -> None:
    from flows.artifacts import curation_headline, headline_markdown

    facts = curation_headline(None, tmp_path / "s.zarr", root=None)
    assert "not published" in headline_markdown(facts, "curate-hsi")


def test_dataset_report_is_self_contained(published: dict[str, Any], tmp_path: Path) -> None:
    from pipeline.reports import render_dataset_report, write_dataset_report

    v = published["version"]
    html = render_dataset_report("tiny", root=published["root"])
    assert v.version in html and "Table 1" in html and 'id="table1"' in html
    assert html.count('src="data:image/png;base64,') == 4
    assert "http://" not in html and "https://" not in html and "<script" not in html  # nothing fetched
    path = write_dataset_report("tiny", v.version, root=published["root"])
    assert path == f"{v.path}/report.html" and Path(path).read_text() == html


def test_epoch_progress_called_once_per_epoch(tmp_path: Path) -> None:
    from flows.artifacts import EpochProgress
    from flows.progress import listening
    from models.synthetic import hsi_to_dataset, synthetic_hsi
    from models.training.hsi import train_hsi
    from schemas.training import HSITrainConfig

    store = tmp_path / "hsi.zarr"
    hsi_to_dataset(synthetic_hsi(n=200, seed=0)).to_zarr(store, mode="w", consolidated=True)
    lines: list[str] = []

    class Logger:
        def info(self, fmt: str, *args: Any) -> None:
            lines.append(fmt % args)

    heard: list[tuple[int, int]] = []
    progress = EpochProgress("hsi", logger=Logger(), artifact=False)
    cfg = HSITrainConfig(store=str(store), epochs=3, batch_size=64, device="cpu", patience=None)
    with listening(lambda e, n, row: heard.append((e, n))):
        result = train_hsi(cfg, on_epoch=progress)
    assert progress.calls == len(result.history) == 3
    assert heard == [(0, 3), (1, 3), (2, 3)]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("val_macro_accuracy" in line for line in lines)


def test_terminal_progress_quiet_without_tty(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.progress import TerminalProgress, interactive

    assert not interactive()  # pytest captures stdout/stderr: not a TTY
    with TerminalProgress("x") as bar:
        bar(0, 2, {"val_macro_accuracy": 0.5})
        bar(1, 2, {"val_macro_accuracy": 0.6})
    assert bar.calls == 2 and not bar.enabled
    assert capsys.readouterr().err == ""


def test_history_rows_and_metrics_table() -> None:
    from flows.artifacts import history_rows
    from flows.progress import metrics_table

    rows = history_rows([{"epoch": 0.0, "train_loss": 1.23456789, "val_macro_accuracy": float("nan")}])
    assert rows == [{"epoch": 0, "train_loss": 1.23457, "val_macro_accuracy": None}]
    m = {"kind": "hsi", "mode": "baseline", "val": {"fused": {"macro_accuracy": 0.5, "n": 10}},
         "test": {"fused": {"macro_accuracy": 0.6, "n": 12}, "VNIR1": {"macro_accuracy": 0.4, "n": 12}}}  # fmt: skip
    assert metrics_table(m).row_count == 3


def test_emin_warnings_reach_the_run_logger() -> None:
    from flows.progress import warnings_to_logger
    from pipeline.errors import EminWarning

    records: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test-ui-warnings")
    logger.addHandler(Handler())
    with warnings_to_logger(logger):
        warnings.warn("polygon 3 repaired", EminWarning, stacklevel=1)
        warnings.warn("polygon 3 repaired", EminWarning, stacklevel=1)  # every time, not once
    assert records == ["EminWarning: polygon 3 repaired"] * 2


def test_seismic_report_sections(tmp_path: Path) -> None:
    from pipeline.publishing.zarr_io import open_store
    from pipeline.reports import dataset_sections, page
    from pipeline.reports.figures import error_by_distance
    from pipeline.seismic.curate import curate_seismic
    from pipeline.synthetic.seismic_network import generate_seismic_network
    from schemas.seismic import SeismicCurationParams, SeismicInputs

    net = generate_seismic_network(tmp_path / "net", seed=6, n_stations=12, n_events=5)
    inputs = SeismicInputs(waveforms=sorted(net.waveform_files), inventory=net.inventory, events=net.events,
                           picks=net.picks)  # fmt: skip
    curate_seismic(inputs, tmp_path / "s.zarr", SeismicCurationParams(max_horizontal_error_km=None))
    ds = open_store(tmp_path / "s.zarr").load()
    html = page("seismic", dataset_sections(ds))
    assert html.count('src="data:image/png;base64,') == 4 and 'id="counts"' in html
    png = error_by_distance([10.0, 20.0, 30.0], [20.0, 60.0, 140.0], ["3C", "1C", "3C"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_stage_progress_listens_to_every_stage_and_stays_quiet_without_a_tty() -> None:
    """Curation stages (raster windows, waveform batches) reach a registered bar, from any thread."""
    import threading

    from flows.progress import StageProgress, listening_stages, notify_stage

    with StageProgress(force=False) as bar, listening_stages(bar):
        threads = [
            threading.Thread(target=lambda i=i: [notify_stage(f"extract R{i}", k, 4) for k in range(1, 5)])
            for i in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    notify_stage("after the block", 1, 1)  # nobody listens any more
    assert bar.calls == 12
    assert not StageProgress(quiet=True).enabled


def test_extraction_progress_logs_every_step_and_tells_the_stage_listeners() -> None:
    """One raster's window groups: a log line per 10 % (not per group), every group to the terminal."""
    from flows.artifacts import ExtractionProgress, Pace
    from flows.progress import listening_stages

    lines: list[str] = []

    class Logger:
        def info(self, fmt: str, *args: Any) -> None:
            lines.append(fmt % args)

    heard: list[tuple[str, int, int]] = []
    progress = ExtractionProgress("VNIR 1", logger=Logger(), artifact=False, pace=Pace(min_interval_s=0.0))
    with listening_stages(lambda stage, done, total: heard.append((stage, done, total))):
        for done in range(1, 38):
            progress(done, 37)
    assert heard == [("extract VNIR 1 (windows)", k, 37) for k in range(1, 38)]
    assert lines[0] == "VNIR 1: 1/37 window groups read (3%)" and lines[-1].endswith(
        "37/37 window groups read (100%)"
    )
    assert len(lines) == 11  # 3 %, then the first group past each further 10 %, the last at 100 %
    assert ExtractionProgress("SWIR_2 (a)").artifact.key == "curate-hsi-extract-swir-2-a"  # type: ignore[union-attr]


def test_fan_out_progress_reports_at_most_once_per_interval_and_always_at_the_end() -> None:
    """A fast fan-out reports no more than once per ``min_interval_s`` (each report is an API request
    from a worker), yet always at the end; a slow one every 10 %. Clock stepped by hand."""
    from flows.artifacts import FanOutProgress, Pace

    lines: list[str] = []

    class Logger:
        def info(self, fmt: str, *args: Any) -> None:
            lines.append(fmt % args)

    now = [0.0]

    def reported(n_units: int, unit_s: float) -> list[str]:
        """The log lines of a fan-out of ``n_units`` units taking ``unit_s`` seconds each."""
        lines.clear()
        now[0] = 0.0
        progress = FanOutProgress(
            "w", key="k", stage="s", what="units", logger=Logger(), artifact=False,
            pace=Pace(clock=lambda: now[0]),
        )  # fmt: skip
        for done in range(1, n_units + 1):
            now[0] += unit_s
            progress(done, n_units)
        return list(lines)

    # 100 units of 1/32 s (exact in binary): the first unit past the next 10 % step once a second
    # has passed since the last report, units 32, 64 and 96 (at 1, 2 and 3 s), then the end
    assert reported(100, 1 / 32) == [f"w: {n}/100 units ({n}%)" for n in (32, 64, 96, 100)]
    # 20 units of 2 s each: every 10 % step is reported (and the first unit, at 5 %)
    assert [line.split(" (")[1] for line in reported(20, 2.0)] == [
        f"{p}%)" for p in range(5, 101, 5) if p % 10 == 0 or p == 5
    ]


def test_sample_map_rings_are_the_polygon_boundaries() -> None:
    """The map's polygon outlines: every ring of polygons with holes and of multipolygons, in order,
    against the lines of GeoPandas' own ``boundary``."""
    import geopandas as gpd
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    from pipeline.reports.figures import _ring_segments

    square = [(0, 0), (4, 0), (4, 4), (0, 4)]
    holed = Polygon(square, [[(1, 1), (2, 1), (2, 2), (1, 2)]])
    multi = MultiPolygon(
        [Polygon([(x + 10, y) for x, y in square]), Polygon([(x + 20, y) for x, y in square])]
    )
    polys = gpd.GeoDataFrame(geometry=[holed, multi, Polygon([(5, 5), (6, 5), (6, 7)])], crs="EPSG:32611")
    expected = [np.asarray(line.coords) for line in shapely.get_parts(polys.boundary.values)]
    got = _ring_segments(polys)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert _ring_segments(polys.iloc[:0]) == []


def test_station_event_paths_each_pair_once() -> None:
    """The map's paths: every station–event pair of the traces, each once (against a set of tuples)."""
    import xarray as xr

    from pipeline.reports.figures import station_event_paths

    rng = np.random.default_rng(3)
    stations = rng.uniform(-10, 10, size=(7, 2))
    events = rng.uniform(-10, 10, size=(5, 2))
    s, e = rng.integers(0, 7, size=300), rng.integers(0, 5, size=300)  # many traces per pair
    ds = xr.Dataset(
        {
            "station_longitude": ("trace", stations[s, 0]),
            "station_latitude": ("trace", stations[s, 1]),
            "event_longitude": ("trace", events[e, 0]),
            "event_latitude": ("trace", events[e, 1]),
        }
    )
    paths = station_event_paths(ds)
    expected = {(*stations[a], *events[b]) for a, b in zip(s.tolist(), e.tolist(), strict=True)}
    got = [tuple(p.ravel().tolist()) for p in paths]
    assert paths.shape == (len(expected), 2, 2)
    assert len(set(got)) == len(got) and set(got) == expected
