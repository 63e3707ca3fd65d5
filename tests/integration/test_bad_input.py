"""Bad input, tried as a user would: through the real CLI, on small real files.

Every case asserts exit code 2, a message naming the file/field (and a fix), no traceback, and
that the user's files and the published dataset root are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scenes import ORIGIN, TinyScene, write_raster
from typer.testing import CliRunner

import flows.curate_hsi
import flows.curate_seismic  # noqa: F401
from flows.cli.main import app
from pipeline.publishing.registry import verify_dataset
from pipeline.publishing.versions import list_versions, publish_dataset, read_latest
from pipeline.publishing.zarr_io import open_store

pytestmark = pytest.mark.integration


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file (and the name of every folder) under ``folders``."""
    out: dict[str, str] = {}
    for folder in folders:
        if folder.is_file():
            out[str(folder)] = hashlib.sha256(folder.read_bytes()).hexdigest()
            continue
        for p in sorted(folder.rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


class Env:
    """A user's world: input files, a dataset root, and the CLI run with EMIN_DATA_ROOT set."""

    def __init__(self, tmp: Path, scene: TinyScene) -> None:
        self.tmp, self.scene = tmp, scene
        self.user = tmp / "user"
        self.root = tmp / "published"
        self.user.mkdir()
        self.root.mkdir()
        shutil.copytree(scene.root, self.user / "scene")
        self.polygons = self.user / "scene" / scene.polygons.name
        self.vnir = self.user / "scene" / scene.rasters["VNIR1"].name
        self.swir = self.user / "scene" / scene.rasters["SWIR1"].name
        self.transmission = self.user / "scene" / scene.transmission.name

    def run(self, *args: str) -> tuple[int, str]:
        env = {"EMIN_DATA_ROOT": str(self.root), "EMIN_STATE_DIR": str(self.tmp / "state")}
        result = CliRunner().invoke(app, list(args), env=env)
        return result.exit_code, result.output

    def hsi_args(
        self, out: Path, *extra: str, rasters: dict[str, tuple[Path, str]] | None = None
    ) -> list[str]:
        rasters = rasters or {"VNIR1": (self.vnir, "VNIR"), "SWIR1": (self.swir, "SWIR")}
        args = [
            "curate",
            "hsi",
            "--no-prefect",
            "--polygons",
            str(self.polygons),
            "--class-column",
            "class_name",
        ]
        for name, (path, sensor) in rasters.items():
            args += ["--raster", f"{name}={path}", "--sensor", f"{name}={sensor}"]
        args += ["--transmission", str(self.transmission), "--out", str(out)]
        return [*args, "--param", "max_points_per_class=200", *extra]

    def expect_refusal(self, args: list[str], *fragments: str, keep: tuple[Path, ...] = ()) -> str:
        """Run ``args``: exit 2, every fragment in the message, nothing of the user's or the root changed."""
        before = snapshot(self.user, self.root, *keep)
        code, output = self.run(*args)
        assert code == 2, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        for f in fragments:
            assert f in output, (f, output[-3000:])
        assert "fix" in output, output[-3000:]
        assert snapshot(self.user, self.root, *keep) == before
        return output


@pytest.fixture
def env(tiny_scene: TinyScene, tmp_path: Path) -> Iterator[Env]:
    yield Env(tmp_path, tiny_scene)


@pytest.fixture(scope="module")
def published(tiny_scene: TinyScene, tmp_path_factory: pytest.TempPathFactory) -> tuple[Env, Path]:
    """An Env whose root holds one published version of `tiny` (for cases that must not touch it)."""
    e = Env(tmp_path_factory.mktemp("pub"), tiny_scene)
    code, output = e.run(*e.hsi_args(e.tmp / "work.zarr", "--publish", "tiny"))
    assert code == 0, output[-3000:]
    return e, Path(output.strip().splitlines()[-1])


# --- 1. data loss and wrong publishing ----------------------------------------------------------


def test_out_is_an_existing_user_folder(env: Env) -> None:
    mine = env.user / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("months of work")
    env.expect_refusal(env.hsi_args(mine), str(mine), "not an emin store")
    assert (mine / "chapter1.tex").read_text() == "months of work"


def test_out_is_the_input_polygons_file(env: Env) -> None:
    env.expect_refusal(env.hsi_args(env.polygons), str(env.polygons), "not a Zarr store")


def test_out_inside_a_published_version(published: tuple[Env, Path]) -> None:
    e, store = published
    version_folder = store.parent
    for out in (store, version_folder / "extra.zarr", e.root / "tiny" / "new.zarr", e.root / "x.zarr"):
        e.expect_refusal(e.hsi_args(out), str(out), "publish")
    verify_dataset("tiny", root=e.root)


def test_out_holding_another_kind_of_store_or_same_kind_without_overwrite(env: Env) -> None:
    out = env.user / "hsi.zarr"
    code, output = env.run(*env.hsi_args(out))
    assert code == 0, output[-2000:]
    env.expect_refusal(env.hsi_args(out), str(out), "--overwrite")
    seismic_args = ["curate", "seismic", "--no-prefect", "--waveforms", str(env.user / "*.mseed")]
    seismic_args += ["--inventory", str(env.polygons), "--events", str(env.transmission), "--out", str(out)]
    env.expect_refusal(seismic_args, str(out), "hsi_samples")
    code, output = env.run(*env.hsi_args(out, "--overwrite"))  # the documented fix
    assert code == 0, output[-2000:]


def test_failed_run_publishes_nothing_all_nodata_raster(env: Env) -> None:
    with rasterio.open(env.vnir) as src:
        data = np.full((src.count, src.height, src.width), -9999.0, np.float32)
        wl = [float(src.tags(i + 1)["wavelength"]) for i in range(src.count)]
    blank = write_raster(env.user / "blank.tif", data, origin=ORIGIN, res=1.0, wavelengths=np.array(wl))
    args = env.hsi_args(env.tmp / "o.zarr", "--publish", "blanks", rasters={"B": (blank, "VNIR")})
    env.expect_refusal(args, "0 samples", str(blank))
    assert list_versions("blanks", root=env.root) == [] and read_latest("blanks", root=env.root) is None
    assert not (env.tmp / "o.zarr").exists()


def test_empty_string_group_round_trips_and_verifies(tmp_path: Path) -> None:
    """A clean dataset (zero rejects): the empty string columns keep their dtype, --verify passes."""
    import xarray as xr

    ds = xr.Dataset({"v": ("trace", np.arange(3.0))}, attrs={"emin_kind": "test"})
    rejects = xr.Dataset({c: ("reject", np.array([], dtype=object)) for c in ("trace_id", "reason")})
    v = publish_dataset(ds, name="clean", root=tmp_path, groups={"rejects": rejects})
    verify_dataset("clean", root=tmp_path)
    back = open_store(v.store, group="rejects")
    assert back["reason"].dtype.kind == "T" and back.sizes["reject"] == 0
    meta = json.loads((Path(v.store) / "rejects" / "reason" / "zarr.json").read_text())
    assert meta["data_type"] == "string"


# --- 2. silent wrong results ---------------------------------------------------------------------


def test_truncated_envi_is_rejected(env: Env) -> None:
    data = env.swir.read_bytes()
    env.swir.write_bytes(data[: int(len(data) * 0.6)])
    env.expect_refusal(env.hsi_args(env.tmp / "o.zarr"), str(env.swir), "truncated", "60%")


def test_all_negative_reflectance_is_absent_not_zero(env: Env) -> None:
    with rasterio.open(env.vnir) as src:
        good = src.read()
        wl = np.array([float(src.tags(i + 1)["wavelength"]) for i in range(src.count)])
    neg = np.where(good == -9999.0, good, -0.2 - good).astype(np.float32)
    path = write_raster(env.user / "neg.tif", neg, origin=ORIGIN, res=1.0, wavelengths=wl)
    out = env.tmp / "o.zarr"
    args = env.hsi_args(out, rasters={"VNIR1": (env.vnir, "VNIR"), "NEG": (path, "VNIR")})
    code, output = env.run(*args)
    assert code == 0, output[-3000:]
    ds = open_store(out).load()
    j_neg = list(ds.attrs["modalities"]).index("NEG")
    j_vnir = list(ds.attrs["modalities"]).index("VNIR1")
    present = ds["present"].values
    assert not present[:, j_neg].any()  # never an all-zero spectrum marked present
    assert np.isnan(ds["NEG"].values).all()
    # the same footprint and nodata as VNIR1: every point VNIR1 sees is a clipped-constant NEG point
    assert ds.attrs["absent_counts"]["NEG"]["clipped_constant"] == int(present[:, j_vnir].sum())
    assert any("NEG" in w and "constant after clipping" in w for w in ds.attrs["quality_warnings"])
    assert "constant after clipping" in output  # the EminWarning reached the user


def test_repeated_modality_name(env: Env) -> None:
    args = env.hsi_args(env.tmp / "o.zarr")
    args += ["--raster", f"VNIR1={env.swir}"]
    env.expect_refusal(args, "--raster", "'VNIR1' twice")
    env.expect_refusal(
        [*env.hsi_args(env.tmp / "o.zarr"), "--param", "seed=1", "--param", "seed=2"], "--param"
    )


# --- 3. errors a user can act on -----------------------------------------------------------------


def _catalog_with(env: Env, text: str) -> Path:
    path = env.user / "catalog.yaml"
    path.write_text(text)
    return path


def test_malformed_catalog_names_the_line(env: Env) -> None:
    cat = _catalog_with(env, "tiny:\n  type: hsi_dataset\n  scene: [unclosed\n  path: out.zarr\n")
    env.expect_refusal(["curate", "hsi", "--entry", "tiny", "--catalog", str(cat)], str(cat), "line ")


def test_polygons_without_features_or_of_point_type(env: Env) -> None:
    import geopandas as gpd

    gdf = gpd.read_file(env.polygons)
    empty = env.user / "empty.gpkg"
    gdf.iloc[:0].to_file(empty, engine="pyogrio")
    points = env.user / "points.gpkg"
    gdf.assign(geometry=gdf.geometry.centroid).to_file(points, engine="pyogrio")
    lines = env.user / "lines.gpkg"
    gdf.assign(geometry=gdf.geometry.boundary).to_file(lines, engine="pyogrio")
    for path, what in ((empty, "no features"), (points, "Point"), (lines, "LineString")):
        env.polygons = path
        env.expect_refusal(env.hsi_args(env.tmp / "o.zarr"), str(path), what)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "not a readable CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00binary", "not a readable CSV"),
        (b"wavelength_nm,transmission\n400,0.9\n500,high\n", "line 3"),
        (b"wavelength_nm,transmission\n", "no rows"),
    ],
)
def test_bad_transmission_file(env: Env, content: bytes, what: str) -> None:
    env.transmission.write_bytes(content)
    env.expect_refusal(env.hsi_args(env.tmp / "o.zarr"), str(env.transmission), what)


def test_validate_and_train_refuse_what_is_not_a_usable_store(
    published: tuple[Env, Path], tmp_path: Path
) -> None:
    e, store = published
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("x")
    for target, what in ((plain, "not a Zarr store"), (e.polygons, "not a Zarr store")):
        e.expect_refusal(["validate", str(target)], str(target), what, keep=(target,))
        e.expect_refusal(
            ["train", "hsi", "--store", str(target), "--no-prefect"], str(target), what, keep=(target,)
        )

    def damaged(edit: object) -> Path:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}.zarr"
        shutil.copytree(store, copy)
        edit(copy)  # type: ignore[operator]
        return copy

    def truncate_meta(p: Path) -> None:
        meta = p / "label" / "zarr.json"
        meta.write_bytes(meta.read_bytes()[:40])

    def delete_meta(p: Path) -> None:
        (p / "zarr.json").unlink()

    def edit_dtype(p: Path) -> None:
        meta = p / "x" / "zarr.json"
        doc = json.loads(meta.read_text())
        doc["data_type"] = "complex128"
        meta.write_text(json.dumps(doc))

    def corrupt_chunk(p: Path) -> None:
        chunk = next(q for q in sorted((p / "VNIR1" / "c").rglob("*")) if q.is_file())
        chunk.write_bytes(b"\x02\x01garbage" + chunk.read_bytes()[10:])

    cases = [
        (truncate_meta, "label/zarr.json", "not valid JSON"),
        (delete_meta, "not a Zarr store", ""),
        (edit_dtype, "cannot", ""),
        (corrupt_chunk, "chunk 0", "'VNIR1'"),
    ]
    for edit, what, more in cases:
        bad = damaged(edit)
        e.expect_refusal(["validate", str(bad)], str(bad), what, more, keep=(bad,))
    bad = damaged(corrupt_chunk)
    e.expect_refusal(["train", "hsi", "--store", str(bad), "--no-prefect"], "chunk 0", "'VNIR1'", keep=(bad,))
    e.expect_refusal(
        ["train", "seismic", "--store", str(store), "--no-prefect"], "hsi_samples", "seismic", keep=(store,)
    )

    def drop_modality(p: Path) -> None:
        shutil.rmtree(p / "modality")

    bad = damaged(drop_modality)
    code, output = e.run("validate", str(bad))
    assert code in (1, 2) and "Traceback" not in output and "modality" in output, output[-2000:]


def test_picks_and_events_with_bad_values(tmp_path: Path) -> None:
    from pipeline.synthetic.seismic_network import generate_seismic_network

    net = generate_seismic_network(tmp_path / "net", seed=5, n_stations=4, n_events=3)
    user = tmp_path / "net"
    root = tmp_path / "published"
    root.mkdir()

    def run(events: Path, picks: Path) -> None:
        before = snapshot(user, root)
        args = ["curate", "seismic", "--no-prefect", "--waveforms", str(net.waveform_glob)]
        args += ["--inventory", str(net.inventory), "--events", str(events), "--picks", str(picks)]
        args += ["--out", str(tmp_path / "s.zarr"), "--keep-all-errors"]
        result = CliRunner().invoke(app, args, env={"EMIN_DATA_ROOT": str(root)})
        assert result.exit_code == 2, result.output[-3000:]
        assert "Traceback" not in result.output
        assert snapshot(user, root) == before
        assert not (tmp_path / "s.zarr").exists()
        outputs.append(result.output)

    outputs: list[str] = []
    events_csv = user / "events.csv"
    events_csv.write_text(
        "event_id,time,latitude,longitude,depth_km\nE1,2020-01-01T00:00:00Z,forty,-111.5,5\n"
    )
    picks_csv = user / "picks.csv"
    picks_csv.write_text("event_id,network,station,phase,time\nE1,UU,S1,P,yesterday-ish\n")
    picks_bin = user / "picks_bin.csv"
    picks_bin.write_bytes(b"\x00\x01\x02\xff" * 50)
    run(events_csv, Path(net.picks))
    assert "'latitude'" in outputs[-1] and "line 2" in outputs[-1] and str(events_csv) in outputs[-1]
    good_events = events_csv.with_name("good_events.csv")
    good_events.write_text("event_id,time,latitude,longitude,depth_km\nE1,2020-01-01T00:00:00Z,40,-111.5,5\n")
    run(good_events, picks_csv)
    assert "not a time" in outputs[-1] and str(picks_csv) in outputs[-1]
    run(good_events, picks_bin)
    assert "binary" in outputs[-1] and str(picks_bin) in outputs[-1]


@pytest.mark.parametrize("case", ["truncated", "all_nodata"])
def test_prefect_route_reports_bad_input_in_one_message(env: Env, case: str) -> None:
    """With Prefect on (the default), a bad input is one clear message, not task tracebacks.

    ``truncated`` is caught by the preflight (before Prefect starts), ``all_nodata`` inside a
    task run (its log lines keep the one-line message, without the traceback).
    """
    import os
    import subprocess
    import sys

    if case == "truncated":
        data = env.swir.read_bytes()
        env.swir.write_bytes(data[: int(len(data) * 0.6)])
        args = [a for a in env.hsi_args(env.tmp / "o.zarr") if a != "--no-prefect"]
        expect, bad, max_lines = "truncated", env.swir, 6
    else:
        with rasterio.open(env.vnir) as src:
            data = np.full((src.count, src.height, src.width), -9999.0, np.float32)
            wl = np.array([float(src.tags(i + 1)["wavelength"]) for i in range(src.count)])
        bad = write_raster(env.user / "blank.tif", data, origin=ORIGIN, res=1.0, wavelengths=wl)
        args = env.hsi_args(env.tmp / "o.zarr", "--publish", "b", rasters={"B": (bad, "VNIR")})
        args = [a for a in args if a != "--no-prefect"]
        expect, max_lines = "0 samples", 40
    before = snapshot(env.user, env.root)
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli.main", *args[0:]],
        env={**os.environ, "PYTHONPATH": str(repo), "EMIN_DATA_ROOT": str(env.root)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and expect in done.stderr and str(bad) in done.stderr
    assert len(done.stderr.strip().splitlines()) <= max_lines, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("  fix:") or "fix:" in done.stderr
    assert snapshot(env.user, env.root) == before


def test_a_store_breaking_its_contract_never_replaces_the_working_copy(tmp_path: Path) -> None:
    import xarray as xr

    from pipeline.errors import ContractViolation
    from pipeline.publishing.zarr_io import write_atomically, write_zarr

    out = tmp_path / "o.zarr"
    ds = xr.Dataset({"v": ("sample", np.arange(3.0))}, attrs={"emin_kind": "hsi_samples"})
    with write_atomically(out, kind="hsi_samples") as tmp:
        write_zarr(ds, tmp, chunks={})
    before = snapshot(out)
    failing = write_atomically(out, kind="hsi_samples", overwrite=True, validate=lambda p: ["broken"])
    with pytest.raises(ContractViolation, match="broken"), failing as tmp:
        write_zarr(ds.assign(v=ds["v"] + 1), tmp, chunks={})
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["o.zarr"]  # no temporary, no lock left


def test_gc_from_the_cli_removes_what_a_killed_run_left_beside_out(env: Env) -> None:
    """A leftover of a killed run (registered, owner gone) is removed; a look-alike of the user's is not."""
    import subprocess
    import sys

    from pipeline.publishing.zarr_io import register_temporary

    leftover = env.tmp / ".o.zarr.tmp-0123456789ab"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (leftover / "x").mkdir(parents=True)
    import os

    saved = os.environ.get("EMIN_STATE_DIR")
    os.environ["EMIN_STATE_DIR"] = str(env.tmp / "state")
    try:
        register_temporary(leftover)
    finally:
        os.environ.pop("EMIN_STATE_DIR")
        if saved is not None:
            os.environ["EMIN_STATE_DIR"] = saved
    registry = env.tmp / "state" / "temporaries"
    registry.write_text(
        registry.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {dead.stdout.strip()}')
    )
    users = env.user / ".notes.tmp-0123456789ab"  # named like a temporary, never registered
    users.mkdir()
    code, output = env.run("publish", "gc")
    assert code == 0, output
    assert not leftover.exists() and users.exists()
    assert str(leftover) in output


def test_seismic_curation_where_every_trace_is_rejected_publishes_nothing(tmp_path: Path) -> None:
    from pipeline.publishing.contract import validate_store
    from pipeline.synthetic.seismic_network import generate_seismic_network

    net = generate_seismic_network(tmp_path / "net", seed=3, n_stations=4, n_events=2)
    root = tmp_path / "published"
    root.mkdir()
    events = tmp_path / "elsewhen.csv"  # an event no waveform covers: every trace is a reject
    events.write_text("event_id,time,latitude,longitude,depth_km\nE1,2001-01-01T00:00:00Z,40,-111.5,5\n")
    out = tmp_path / "s.zarr"
    args = ["curate", "seismic", "--no-prefect", "--waveforms", str(net.waveform_glob), "--inventory"]
    args += [
        str(net.inventory),
        "--events",
        str(events),
        "--out",
        str(out),
        "--keep-all-errors",
        "--publish",
        "z",
    ]
    result = CliRunner().invoke(app, args, env={"EMIN_DATA_ROOT": str(root)})
    assert result.exit_code == 2, result.output[-3000:]
    assert "0 samples" in result.output and str(out) in result.output and "Traceback" not in result.output
    assert list(root.iterdir()) == []  # nothing published
    assert validate_store(out) == []  # the working copy records the rejects, with string dtypes
    rejects = open_store(out, group="rejects")
    assert rejects.sizes["reject"] > 0 and open_store(out).sizes["trace"] == 0


def test_library_routes_never_write_into_a_published_version(published: tuple[Env, Path]) -> None:
    """The lock and the writers refuse a published version even when the CLI's checks are bypassed."""
    from flows.curate_hsi import curate_hsi_job
    from flows.jobs import resolve_job
    from pipeline.errors import InputError
    from pipeline.publishing.zarr_io import target_lock
    from schemas.hsi import HSICurationParams, HSIInputs, RasterSpec

    e, store = published
    before = snapshot(e.root)
    inside = store.parent / "x.zarr"
    with pytest.raises(InputError, match="published"), target_lock(inside):
        pass
    inputs = HSIInputs(
        polygons=e.polygons,
        class_column="class_name",
        transmission=e.transmission,
        rasters=[RasterSpec(name="VNIR1", path=e.vnir, sensor="VNIR")],
    )
    job = resolve_job(
        "hsi", None, "none.yaml", inputs, HSICurationParams(max_points_per_class=50), str(inside)
    )
    with pytest.raises(InputError, match="published"):
        curate_hsi_job(job, prefect=False)
    assert snapshot(e.root) == before
