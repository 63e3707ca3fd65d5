"""Seismic work units: size-based planning, chunk-aligned writes, 1 vs 3 threads and 1 vs 2 Dask workers byte
for byte."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from store_digests import store_digest

from pipeline.checksums import array_digest
from pipeline.errors import InputError
from pipeline.publishing import manifest, zarr_io
from pipeline.publishing.codes import categories_of, strings
from pipeline.publishing.contract import validate_seismic_store
from pipeline.publishing.zarr_io import open_store
from pipeline.seismic.curate import curate_seismic, curate_units
from pipeline.seismic.store import SeismicStoreWriter
from pipeline.seismic.units import plan_units
from pipeline.seismic.windows import metadata_for
from pipeline.synthetic.seismic_network import SeismicNetwork, generate_seismic_network
from schemas.seismic import SeismicCurationParams, SeismicInputs

pytestmark = pytest.mark.integration

#: Small chunks, so a handful of files spans many chunks and many unit boundaries.
PARAMS = SeismicCurationParams(max_horizontal_error_km=None, traces_per_chunk=16, keep_waveforms=True)
UNIT_MB = 0.3  # two or three files per unit


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> SeismicNetwork:
    return generate_seismic_network(tmp_path_factory.mktemp("net"), seed=4, n_stations=40, n_events=20)


def inputs(net: SeismicNetwork, files: list[Path] | None = None) -> SeismicInputs:
    return SeismicInputs(
        waveforms=list(net.waveform_files) if files is None else files,
        inventory=net.inventory,
        events=net.events,
        picks=net.picks,
    )


def test_units_are_consecutive_sorted_files_of_about_the_size(net: SeismicNetwork, tmp_path: Path) -> None:
    files = list(reversed(net.waveform_files))
    units = plan_units(files, UNIT_MB)
    assert [f for u in units for f in u.files] == sorted(files)
    assert [u.index for u in units] == list(range(len(units)))
    for u in units:
        assert u.n_bytes == sum(f.stat().st_size for f in u.files)
        assert len(u.files) == 1 or u.n_bytes <= UNIT_MB * 1e6
    for a, b in pairwise(units):  # a unit stops only when the next file would overflow it
        assert a.n_bytes + b.files[0].stat().st_size > UNIT_MB * 1e6
    assert plan_units(files, UNIT_MB) == units
    assert [len(u.files) for u in plan_units(files, 1e-9)] == [1] * len(files)
    assert len(plan_units(files, 1e6)) == 1
    assert plan_units([*files, tmp_path / "missing.mseed"], 1e6)[0].n_bytes == units[0].n_bytes + sum(
        u.n_bytes for u in units[1:]
    )
    with pytest.raises(InputError):
        plan_units(files, 0)


def _curate_on_cluster(target: str, inp: SeismicInputs) -> bool:
    """The flow's curate-units task without Prefect: the driver in a Dask task, units as futures."""
    from flows.runners import unit_runner

    writer = SeismicStoreWriter(target, PARAMS)
    published, _ = curate_units(writer, inp, metadata_for(inp, PARAMS), unit_mb=UNIT_MB, runner=unit_runner())
    return published


def _on_cluster(n_workers: int, target: Path, inp: SeismicInputs) -> None:
    from distributed import Client, LocalCluster

    from flows.runners import local_cluster_kwargs

    with (
        LocalCluster(**local_cluster_kwargs(n_workers)) as cluster,
        Client(cluster) as client,
    ):
        assert client.submit(_curate_on_cluster, str(target), inp, pure=False).result()


def test_threads_and_dask_workers_write_the_same_bytes_whatever_their_number(
    net: SeismicNetwork, tmp_path: Path
) -> None:
    here = tmp_path / "here.zarr"
    curate_seismic(inputs(net), here, PARAMS, unit_mb=UNIT_MB, threads=3)  # 3 unit and 3 writer threads
    assert len(plan_units(net.waveform_files, UNIT_MB)) >= 4
    one_thread = tmp_path / "one-thread.zarr"
    curate_seismic(inputs(net), one_thread, PARAMS, unit_mb=UNIT_MB, threads=1)
    assert store_digest(one_thread) == store_digest(here)
    for n_workers in (1, 2):
        out = tmp_path / f"dask{n_workers}.zarr"
        _on_cluster(n_workers, out, inputs(net))
        assert store_digest(out) == store_digest(here), n_workers
    # and the same traces as one unit of everything (an independent placement: no boundary at all)
    whole = tmp_path / "whole.zarr"
    curate_seismic(inputs(net), whole, PARAMS, unit_mb=1e6)
    a, b = open_store(here), open_store(whole)
    assert a.sizes["trace"] > 3 * PARAMS.traces_per_chunk
    np.testing.assert_array_equal(a["spectrogram"].values, b["spectrogram"].values)
    np.testing.assert_array_equal(a["waveform"].values, b["waveform"].values)
    for name in ("trace_id", "split", "station", "network", "p_source"):
        np.testing.assert_array_equal(strings(a, name), strings(b, name))
    assert validate_seismic_store(here) == []


def _chunk_writes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every chunk key written to any LocalStore in this process."""
    writes: Counter[str] = Counter()
    original = zarr.storage.LocalStore.set

    async def counting_set(self: Any, key: str, value: Any) -> None:
        if "/c/" in key:
            writes[key] += 1
        await original(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", counting_set)
    return writes


def test_no_chunk_is_written_twice_in_a_fresh_store_or_an_append(
    net: SeismicNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(net.waveform_files)
    out = tmp_path / "s.zarr"
    writes = _chunk_writes(monkeypatch)
    curate_seismic(inputs(net, files[:5]), out, PARAMS, unit_mb=UNIT_MB)
    n_old = open_store(out).sizes["trace"]
    assert n_old % PARAMS.traces_per_chunk  # the append below shares the old store's last chunk
    per_trace = [k for k in writes if k.startswith(("spectrogram/", "waveform/"))]
    assert per_trace and max(writes[k] for k in per_trace) == 1
    writes.clear()
    curate_seismic(inputs(net), out, PARAMS, unit_mb=UNIT_MB)
    per_trace = [k for k in writes if k.startswith(("spectrogram/", "waveform/"))]
    assert per_trace and max(writes[k] for k in per_trace) == 1
    first_new = n_old // PARAMS.traces_per_chunk  # chunks before the shared one are never rewritten
    assert all(int(k.split("/c/")[1].split("/")[0]) >= first_new for k in per_trace)
    # the append equals a one-shot ingest of the same files, trace for trace
    one = tmp_path / "one.zarr"
    curate_seismic(inputs(net), one, PARAMS, unit_mb=1e6)
    a, b = open_store(out), open_store(one)
    order = {t: i for i, t in enumerate(strings(b, "trace_id").tolist())}
    idx = [order[t] for t in strings(a, "trace_id").tolist()]
    np.testing.assert_array_equal(a["spectrogram"].values, b["spectrogram"].values[idx])
    assert validate_seismic_store(out) == []


def test_streamed_manifest_digest_equals_the_loaded_arrays_digest(
    net: SeismicNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "d.zarr"
    curate_seismic(inputs(net), out, PARAMS, unit_mb=UNIT_MB)
    ds = open_store(out)
    monkeypatch.setattr(zarr_io, "BLOCK_BYTES", 50_000)  # every array streams, in many blocks
    monkeypatch.setattr(manifest, "BLOCK_BYTES", 50_000)
    for name, var in ds.variables.items():
        loaded = np.asarray(var.values)
        arrays = [loaded.astype(object) if loaded.dtype.kind in "OUT" else loaded]
        cats = categories_of(var.attrs)
        if cats is not None:
            arrays.append(np.asarray(cats, dtype=object))
        assert manifest.variable_digest(var) == "sha256:" + array_digest(*arrays), name


def test_lazy_publish_equals_the_loaded_publish(
    net: SeismicNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrays above BLOCK_BYTES stay lazy through publishing: same version, same bytes, verifies."""
    from flows.publishing import publish_version
    from pipeline.publishing.registry import verify_dataset

    out = tmp_path / "p.zarr"
    curate_seismic(inputs(net), out, PARAMS, unit_mb=UNIT_MB)
    versions = {}
    for label, block in (("loaded", 2**40), ("lazy", 50_000)):
        monkeypatch.setattr(zarr_io, "BLOCK_BYTES", block)
        monkeypatch.setattr(manifest, "BLOCK_BYTES", block)
        versions[label] = publish_version(str(out), name="units", root=str(tmp_path / label))
        verify_dataset("units", root=str(tmp_path / label))
    assert versions["lazy"].version == versions["loaded"].version
    a, b = Path(versions["lazy"].store), Path(versions["loaded"].store)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_units_check_the_values_they_write(
    net: SeismicNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit leaves the array scan to the units: a non-finite spectrogram is still refused,
    with the validator's own message, and nothing is swapped in."""
    from pipeline.errors import ContractViolation
    from pipeline.seismic import batch

    real = batch.batched_log_spectrogram

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        freq, t, spec = real(*args, **kwargs)
        spec[-1, 0, 0] = np.nan
        return freq, t, spec

    monkeypatch.setattr(batch, "batched_log_spectrogram", poisoned)
    out = tmp_path / "bad.zarr"
    with pytest.raises(ContractViolation, match="spectrogram holds non-finite values"):
        curate_seismic(inputs(net), out, PARAMS, unit_mb=UNIT_MB)
    assert not out.exists() and not list(tmp_path.glob(".bad.zarr.*"))
