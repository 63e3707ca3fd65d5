"""Versioned publishing and the consumer API, on stores written by the real HSI curation."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import typer
import xarray as xr
from test_publish_support import curate_tiny, seismic_dataset
from typer.testing import CliRunner

from flows.cli.datasets import register
from pipeline.errors import DatasetNotFoundError, IntegrityError
from pipeline.publishing import versions as publish_mod
from pipeline.publishing.registry import describe, list_datasets, open_dataset
from pipeline.publishing.versions import gc, list_versions, publish_dataset, read_latest, read_manifest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, xr.Dataset, Path]:
    work = tmp_path_factory.mktemp("curated")
    ds, rej = curate_tiny(work)
    return ds, rej, work


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_publish_layout_manifest_and_round_trip(
    curated: tuple[xr.Dataset, xr.Dataset, Path], tmp_path: Path
) -> None:
    ds, rej, _ = curated
    pv = publish_dataset(ds, name="tiny", root=tmp_path, groups={"rejects": rej}, chunks={"sample": 500})
    assert pv.created and pv.version.startswith("v1-")
    folder = tmp_path / "tiny" / pv.version
    assert (folder / "data.zarr" / "zarr.json").is_file()
    assert json.loads((tmp_path / "tiny" / "latest").read_text()) == {"version": pv.version}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema_version"] == "1.1" and manifest["emin_kind"] == "hsi_samples"
    assert manifest["input_checksums"] == ds.attrs["input_checksums"]
    assert manifest["parameters"]["max_points_per_class"] == 900
    assert manifest["counts"]["table1_counts"] == ds.attrs["table1_counts"]
    assert manifest["sizes"]["/"]["sample"] == ds.sizes["sample"]
    assert manifest["sizes"]["rejects"]["reject"] == rej.sizes["reject"]
    on_disk = sum(p.stat().st_size for p in (folder / "data.zarr").rglob("*") if p.is_file())
    assert manifest["total_bytes"] == on_disk
    # independent digest of one float array: sha256 over dtype, shape and bytes
    vnir = np.ascontiguousarray(ds["VNIR1"].values)
    h = hashlib.sha256(str(vnir.dtype).encode() + str(vnir.shape).encode() + vnir.tobytes()).hexdigest()
    assert manifest["arrays"]["/"]["VNIR1"]["digest"] == "sha256:" + h
    assert set(manifest["arrays"]["/"]) == {str(k) for k in ds.variables}
    # consumer side: lazy, same values, rejects group reachable
    got = open_dataset("tiny", root=tmp_path, verify=True)
    assert got["VNIR1"].chunks is not None  # lazy (dask-backed)
    for name in ds.variables:
        np.testing.assert_array_equal(np.asarray(got[name].values).astype(ds[name].dtype if ds[name].dtype.kind != "T" else object),
                                      np.asarray(ds[name].values).astype(ds[name].dtype if ds[name].dtype.kind != "T" else object))  # fmt: skip
    assert got.attrs["table1_counts"] == ds.attrs["table1_counts"]
    rg = open_dataset("tiny", root=tmp_path, group="rejects")
    assert rg.sizes["reject"] == rej.sizes["reject"]


def test_identical_content_reuses_version_changed_parameters_make_new(
    curated: tuple[xr.Dataset, xr.Dataset, Path], tmp_path: Path
) -> None:
    ds, rej, work = curated
    first = publish_dataset(ds, name="tiny", root=tmp_path, groups={"rejects": rej})
    before = tree_digest(Path(first.path))
    again = publish_dataset(
        ds.assign_attrs(code_version="9.9.9+other"), name="tiny", root=tmp_path, groups={"rejects": rej}
    )
    assert not again.created and again.version == first.version
    assert list_versions("tiny", root=tmp_path) == [first.version]
    ds2, rej2 = curate_tiny(work, seed=7)  # changed parameter
    second = publish_dataset(ds2, name="tiny", root=tmp_path, groups={"rejects": rej2})
    assert second.created and second.version.startswith("v2-") and second.version != first.version
    assert read_latest("tiny", root=tmp_path) == second.version
    assert read_manifest("tiny", second.version, root=tmp_path)["parameters"]["seed"] == 7
    assert tree_digest(Path(first.path)) == before  # v1 never modified
    old = open_dataset("tiny", first.version, root=tmp_path, verify=True)
    np.testing.assert_array_equal(old["sample_id"].values, ds["sample_id"].values)
    # changed input: same arrays, different input checksum -> new version
    third = publish_dataset(
        ds, name="tiny", root=tmp_path, input_checksums={"polygons": "sha256:" + "1" * 64}
    )
    assert third.created and third.version.startswith("v3-")


def test_missing_name_or_version_lists_what_exists(
    curated: tuple[xr.Dataset, xr.Dataset, Path], tmp_path: Path
) -> None:
    ds, _, _ = curated
    pv = publish_dataset(ds, name="tiny", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"no dataset named 'tiyn'.*\['tiny'\]"):
        open_dataset("tiyn", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=rf"no version 'v9-abc'.*{pv.version}"):
        open_dataset("tiny", "v9-abc", root=tmp_path)
    [info] = list_datasets(tmp_path)
    assert (info.name, info.versions, info.latest, info.kind) == (
        "tiny",
        [pv.version],
        pv.version,
        "hsi_samples",
    )
    d = describe("tiny", root=tmp_path)
    assert d["manifest"]["counts"]["n_samples"] == ds.sizes["sample"]


def _chunk_files(store: Path, var: str) -> list[Path]:
    return sorted(p for p in (store / var).rglob("*") if p.is_file() and p.name != "zarr.json")


def test_truncated_or_deleted_chunks_are_refused_on_open(
    curated: tuple[xr.Dataset, xr.Dataset, Path], tmp_path: Path
) -> None:
    ds, _, _ = curated
    pv = publish_dataset(ds, name="tiny", root=tmp_path, chunks={"sample": 500})
    victim = _chunk_files(Path(pv.store), "VNIR1")[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match=r"VNIR1.*bytes, manifest says(.|\n)*fix:"):
        open_dataset("tiny", root=tmp_path)
    victim.unlink()
    with pytest.raises(IntegrityError, match="is missing"):
        open_dataset("tiny", root=tmp_path)


def test_changed_content_is_caught_by_checksums(tmp_path: Path) -> None:
    ds = seismic_dataset()
    pv = publish_dataset(ds, name="seis", root=tmp_path, chunks={"trace": 10})
    import zarr

    arr = zarr.open_array(Path(pv.store) / "distance_km", mode="r+")
    values = arr[:]
    values[3] += 1.0
    arr[:] = values
    # make the file listing agree, so only the content checksum can notice
    manifest_path = Path(pv.path) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for rel in list(manifest["files"]):
        manifest["files"][rel] = (Path(pv.store) / rel).stat().st_size
    manifest_path.write_text(json.dumps(manifest))
    open_dataset("seis", root=tmp_path)  # cheap checks pass: files, shapes, dtypes
    with pytest.raises(IntegrityError, match=r"distance_km: content checksum"):
        open_dataset("seis", root=tmp_path, verify=True)


def _publish_worker(root: str, seed: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        pv = publish_dataset(seismic_dataset(seed=seed), name="seis", root=root, chunks={"trace": 8})
        queue.put(("ok", pv.version))
    except Exception as exc:  # reported to the parent
        queue.put(("error", repr(exc)))


def test_concurrent_publishes_leave_complete_versions(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_publish_worker, args=(str(tmp_path), s, queue)) for s in (0, 0, 1)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(r[0] == "ok" for r in results), results
    versions = list_versions("seis", root=tmp_path)
    assert len(versions) == 2  # identical content (seed 0 twice) shares one version
    assert {r[1] for r in results} == set(versions)
    for v in versions:
        got = open_dataset("seis", v, root=tmp_path, verify=True)
        assert got.sizes["trace"] == 30
    assert read_latest("seis", root=tmp_path) in versions
    assert not [p for p in (tmp_path / "seis").iterdir() if p.name.startswith(".")]


def test_crash_before_latest_moves_keeps_previous(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = publish_dataset(seismic_dataset(seed=0), name="seis", root=tmp_path)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed between version and latest")

    monkeypatch.setattr(publish_mod, "_point_latest", crash)
    with pytest.raises(KeyboardInterrupt):
        publish_dataset(seismic_dataset(seed=1), name="seis", root=tmp_path)
    monkeypatch.undo()
    assert read_latest("seis", root=tmp_path) == first.version
    got = open_dataset("seis", root=tmp_path, verify=True)
    assert got.attrs["emin_dataset"]["version"] == first.version
    np.testing.assert_array_equal(got["distance_km"].values, seismic_dataset(seed=0)["distance_km"].values)


def test_crash_mid_write_leaves_nothing_and_gc_removes_killed_writes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = publish_dataset(seismic_dataset(seed=0), name="seis", root=tmp_path)
    real_write = publish_mod.write_zarr

    def write_then_die(ds: xr.Dataset, path: Path, **kw: object) -> None:
        real_write(ds, path, **kw)  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(publish_mod, "write_zarr", write_then_die)
    with pytest.raises(OSError, match="disk full"):
        publish_dataset(seismic_dataset(seed=1), name="seis", root=tmp_path)
    monkeypatch.undo()
    assert list_versions("seis", root=tmp_path) == [first.version]
    assert not [p for p in (tmp_path / "seis").iterdir() if p.name.startswith(".")]
    # a killed process cannot clean up: simulate its leftovers
    leftover = tmp_path / "seis" / ".tmp-deadbeef0000"
    (leftover / "data.zarr").mkdir(parents=True)
    (leftover / "data.zarr" / "zarr.json").write_text("{}")
    stale_ptr = tmp_path / "seis" / "latest.tmp-0123456789ab"
    stale_ptr.write_text("{")
    assert gc(root=tmp_path) == []  # too fresh: may be a publish in progress
    removed = gc(root=tmp_path, min_age_s=0)
    assert sorted(Path(p).name for p in removed) == [".tmp-deadbeef0000", "latest.tmp-0123456789ab"]
    assert not leftover.exists() and not stale_ptr.exists()
    assert list_versions("seis", root=tmp_path) == [first.version]
    open_dataset("seis", root=tmp_path, verify=True)


def test_cli_list_show_gc(curated: tuple[xr.Dataset, xr.Dataset, Path], tmp_path: Path) -> None:
    ds, rej, _ = curated
    pv = publish_dataset(ds, name="tiny", root=tmp_path, groups={"rejects": rej})
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["datasets", "list", "--root", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["latest"] == pv.version
    res = runner.invoke(app, ["datasets", "show", "tiny", "--root", str(tmp_path), "--verify"])
    assert res.exit_code == 0, res.output
    assert "Table 1" in res.output and "verified" in res.output and pv.version in res.output
    for cls, row in ds.attrs["table1_counts"].items():
        assert cls in res.output and str(row["SWIR1"]) in res.output
    res = runner.invoke(app, ["datasets", "show", "nope", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "tiny" in res.output
    (tmp_path / "tiny" / ".tmp-aaaaaaaaaaaa").mkdir()
    os.utime(tmp_path / "tiny" / ".tmp-aaaaaaaaaaaa", (0, 0))
    res = runner.invoke(app, ["publish", "gc", "--root", str(tmp_path)])
    assert res.exit_code == 0 and "removed 1 partial" in res.output
