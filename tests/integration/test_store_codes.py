"""Store format 1.1: categorical columns as integer codes, read by a second Zarr v3 implementation.

Stores come from the real curation code (HSI: the tiny scene with class names that need the CF
escaping; seismic: a small generated network plus an unreadable file, curated in two appends).
Checks go through independent routes: tensorstore (not zarr-python) for every array, the
``zarr.json`` attributes read as plain JSON, and the input polygons read with geopandas/pyogrio.
Format 1.0 stores are written by ``tests/format_1_0.py`` and must still read everywhere.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import torch
import zarr
from conftest import tiny_inputs
from format_1_0 import write_format_1_0
from scenes import make_tiny_scene
from store_digests import store_digest

from models.data import load_hsi, load_seismic
from pipeline.errors import InputError, IntegrityError
from pipeline.hsi.curate import curate_hsi
from pipeline.publishing.codes import categories_of, strings
from pipeline.publishing.contract import SEISMIC_CODED, validate_store
from pipeline.publishing.export_seisbench import export_seisbench
from pipeline.publishing.registry import resolve, verify_dataset
from pipeline.publishing.torch_data import HSISampleDataset, SpectrogramDataset
from pipeline.publishing.versions import STORE_DIR, publish_dataset
from pipeline.publishing.zarr_io import open_store
from pipeline.reports.dataset import dataset_figures
from pipeline.seismic.curate import curate_seismic
from pipeline.seismic.store import SeismicStoreWriter
from pipeline.synthetic.seismic_network import SeismicNetwork, generate_seismic_network
from schemas.hsi import HSICurationParams
from schemas.seismic import SeismicCurationParams, SeismicInputs

ts = pytest.importorskip("tensorstore")
pytestmark = pytest.mark.integration

#: The arrays that keep zarr v3 ``string`` in format 1.1 (unique ids and free text; docs/format.md).
TEXT_ARRAYS = {
    "hsi_samples": set(),
    "seismic_spectrograms": {
        "trace_id",
        "event_id",
        "source_file",
        "rejects/trace_id",
        "rejects/detail",
        "rejects/source_file",
    },
}
#: Class names of the tiny scene, renamed to names CF words cannot hold as they are.
RENAMED = {"asphalt": "asphalt road", "concrete": "concrete/slab #2", "metal": "métal"}
HSI_PARAMS = HSICurationParams(max_points_per_class=400, interior_buffer_m=1.5)
SEIS_PARAMS = SeismicCurationParams(max_horizontal_error_km=None, keep_waveforms=True, cross_spectra=True)


@dataclass(frozen=True)
class Stores:
    hsi: Path
    polygons: Path
    seismic: Path
    seismic_first: Path  # the seismic store after its first ingest (a copy)
    seismic_one_shot: Path  # the same files curated in one ingest
    net: SeismicNetwork
    root: Path  # both published


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    base = tmp_path_factory.mktemp("codes")
    scene = make_tiny_scene(base / "scene")
    polys = gpd.read_file(scene.polygons, engine="pyogrio")
    polys["class_name"] = polys["class_name"].map(RENAMED)
    renamed = base / "renamed.gpkg"
    polys.to_file(renamed, layer="labels", engine="pyogrio")
    hsi = curate_hsi(
        tiny_inputs(scene).model_copy(update={"polygons": renamed}), HSI_PARAMS, out=base / "h.zarr"
    )

    net = generate_seismic_network(base / "net", seed=3, n_stations=8, n_events=4)
    junk = base / "net" / "junk.mseed"
    junk.write_bytes(b"not miniSEED at all " * 50)
    files = [*net.waveform_files, junk]

    def inputs(waveforms: list[Path]) -> SeismicInputs:
        return SeismicInputs(waveforms=waveforms, inventory=net.inventory, events=net.events, picks=net.picks)

    seis = base / "s.zarr"
    curate_seismic(inputs(files[:2]), seis, SEIS_PARAMS)
    first = base / "s_first.zarr"
    shutil.copytree(seis, first)
    curate_seismic(inputs(files), seis, SEIS_PARAMS)
    one_shot = base / "s_one.zarr"
    curate_seismic(inputs(files[::-1]), one_shot, SEIS_PARAMS)

    root = base / "root"
    for name, path in (("hsi", hsi), ("seis", seis)):
        publish_dataset(open_store(path).load(), name=name, root=root,
                        groups={"rejects": open_store(path, group="rejects").load()})  # fmt: skip
    return Stores(Path(hsi), renamed, seis, first, one_shot, net, root)


def _arrays(store: Path) -> Iterator[tuple[str, dict[str, object]]]:
    """(path inside the store, its zarr.json) of every array, read as plain JSON."""
    for meta in sorted(store.rglob("zarr.json")):
        doc = json.loads(meta.read_text())
        if doc["node_type"] == "array":
            yield str(meta.parent.relative_to(store)), doc


def _tensorstore(store: Path, name: str) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(store / name)}}
    return np.asarray(ts.open(spec, read=True).result().read().result())


def _published(stores: Stores, name: str) -> Path:
    return _published_at(stores.root, name)


def _published_at(root: Path, name: str) -> Path:
    return Path(resolve(name, root=root)[1]) / STORE_DIR


@pytest.mark.parametrize("which", ["hsi", "seismic", "hsi-published", "seismic-published"])
def test_every_array_reads_in_tensorstore_as_in_zarr_python(stores: Stores, which: str) -> None:
    """(a) tensorstore opens every array but the documented text ones, with zarr-python's values;
    coded arrays decode through their zarr.json attributes alone."""
    store = {
        "hsi": stores.hsi,
        "seismic": stores.seismic,
        "hsi-published": _published(stores, "hsi"),
        "seismic-published": _published(stores, "seis"),
    }[which]
    kind = json.loads((store / "zarr.json").read_text())["attributes"]["emin_kind"]
    assert json.loads((store / "zarr.json").read_text())["attributes"]["schema_version"] == "1.1"
    text, coded = set(), 0
    for name, doc in _arrays(store):
        theirs = zarr.open_array(str(store / name), mode="r")[...]
        if doc["data_type"] == "string":
            text.add(name)
            with pytest.raises(ValueError, match="string data type is not one of the supported"):
                _tensorstore(store, name)
            continue
        mine = _tensorstore(store, name)
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, name
        assert np.array_equal(mine, theirs, equal_nan=mine.dtype.kind == "f"), name
        cats = doc["attributes"].get("categories")
        if cats is not None:
            coded += 1
            assert mine.dtype.kind == "i"
            assert doc["attributes"]["flag_values"] == list(range(len(cats)))
            assert len(doc["attributes"]["flag_meanings"].split()) == len(cats)
            group, col = name.rsplit("/", 1) if "/" in name else (None, name)
            decoded = np.asarray(cats, dtype=object)[mine] if mine.size else np.zeros(0, object)
            assert decoded.astype(str).tolist() == strings(open_store(store, group=group), col).tolist()
    assert text == TEXT_ARRAYS[kind]
    assert coded >= (6 if kind == "hsi_samples" else 9)


def test_appends_keep_every_code_meaning(stores: Stores) -> None:
    """(c) An append never changes what an old code means; decoded values match a one-shot store."""
    before, after, one = (
        open_store(p) for p in (stores.seismic_first, stores.seismic, stores.seismic_one_shot)
    )
    old_ids = strings(before, "trace_id").tolist()
    new_ids = strings(after, "trace_id").tolist()
    assert new_ids[: len(old_ids)] == old_ids and len(new_ids) > len(old_ids)
    grew = []
    for col in [*SEISMIC_CODED, "channel"]:
        old_cats, new_cats = categories_of(before[col].attrs), categories_of(after[col].attrs)
        assert old_cats is not None and new_cats is not None
        assert new_cats[: len(old_cats)] == old_cats, col
        if len(new_cats) > len(old_cats):
            grew.append(col)
        n = before.sizes["trace"] if col != "channel" else 3
        assert np.array_equal(after[col].values[:n], before[col].values), col  # codes untouched
    assert "station" in grew  # the second ingest brought stations the first had not seen
    order = [strings(one, "trace_id").tolist().index(t) for t in new_ids]
    for col in [*SEISMIC_CODED, "event_id", "source_file"]:
        assert strings(after, col).tolist() == strings(one, col)[order].tolist(), col
    rej_after, rej_one = (open_store(p, group="rejects") for p in (stores.seismic, stores.seismic_one_shot))
    assert "unreadable_file" in strings(rej_after, "reason").tolist()
    assert sorted(strings(rej_after, "reason").tolist()) == sorted(strings(rej_one, "reason").tolist())
    assert validate_store(stores.seismic) == []


def test_label_names_match_the_input_polygons(stores: Stores) -> None:
    """(d) Decoded class names equal the polygons' names (read independently with geopandas/pyogrio)."""
    ds = open_store(stores.hsi).load()
    rejects = open_store(stores.hsi, group="rejects").load()
    polys = gpd.read_file(stores.polygons, engine="pyogrio").to_crs(ds.attrs["crs"])
    by_id = dict(zip(polys["polygon_id"].tolist(), polys["class_name"].tolist(), strict=True))
    for table in (ds, rejects):
        pid = table["polygon_id"].values
        expected = np.array([by_id.get(int(p), "background") for p in pid])
        names = strings(table, "label")
        assert names.tolist() == expected.tolist()
        inside = pid != -1
        points = gpd.GeoDataFrame(
            geometry=gpd.points_from_xy(table["x"].values, table["y"].values), crs=polys.crs
        )
        hit = gpd.sjoin(points[inside], polys, predicate="within")  # each labelled point lies in its class
        assert (hit["class_name"].to_numpy() == names[hit.index.to_numpy()]).all()
        assert len(set(hit.index)) == int(inside.sum())
    assert set(RENAMED.values()) <= set(strings(ds, "label").tolist())
    # an xarray user without this package: names from the attributes, CF words without spaces
    label = ds["label"]
    assert np.asarray(label.attrs["categories"])[label.values].tolist() == strings(ds, "label").tolist()
    assert label.attrs["flag_meanings"].split()[0] == "asphalt_road"
    assert ds.attrs["class_names"] == label.attrs["categories"]


def test_format_1_0_stores_still_read_everywhere(stores: Stores, tmp_path: Path) -> None:
    """(b) A 1.0 store (string columns) validates, loads, decodes, exports and publishes as its 1.1 twin."""
    old_hsi = write_format_1_0(stores.hsi, tmp_path / "h10.zarr")
    old_seis = write_format_1_0(stores.seismic, tmp_path / "s10.zarr")
    assert json.loads((old_seis / "split" / "zarr.json").read_text())["data_type"] == "string"
    assert json.loads((old_hsi / "label_name" / "zarr.json").read_text())["data_type"] == "string"
    assert validate_store(old_hsi) == [] and validate_store(old_seis) == []
    a, b = load_hsi(stores.hsi), load_hsi(old_hsi)
    assert a.class_names == b.class_names and a.modalities == b.modalities
    assert torch.equal(a.labels, b.labels) and torch.equal(a.x, b.x)
    s, t = load_seismic(stores.seismic), load_seismic(old_seis)
    assert s.event_ids == t.event_ids and s.sensor_type == t.sensor_type
    assert torch.equal(s.split, t.split) and torch.equal(s.event_index, t.event_index)
    new, old = open_store(stores.seismic), open_store(old_seis)
    for col in [*SEISMIC_CODED, "channel", "trace_id", "event_id"]:
        assert strings(new, col).tolist() == strings(old, col).tolist(), col
    assert (
        strings(open_store(stores.hsi, group="rejects"), "label").tolist()
        == strings(open_store(old_hsi, group="rejects"), "label").tolist()
    )
    assert HSISampleDataset(old_hsi).modalities == HSISampleDataset(stores.hsi).modalities
    assert len(SpectrogramDataset(old_seis, splits=["train"])) == len(
        SpectrogramDataset(stores.seismic, splits=["train"])
    )
    for one, two in ((stores.hsi, old_hsi), (stores.seismic, old_seis)):  # the reports draw the same figures
        a_figs = dataset_figures(open_store(one).load(), open_store(one, group="rejects").load())
        b_figs = dataset_figures(open_store(two).load(), open_store(two, group="rejects").load())
        assert a_figs.keys() == b_figs.keys() and all(png for _t, png in b_figs.values())
    export_seisbench(new, out=tmp_path / "sb_new")
    export_seisbench(old, out=tmp_path / "sb_old")
    assert (tmp_path / "sb_new" / "metadata.csv").read_text() == (
        tmp_path / "sb_old" / "metadata.csv"
    ).read_text()
    root = tmp_path / "root"
    for name, path in (("h10", old_hsi), ("s10", old_seis)):
        publish_dataset(open_store(path).load(), name=name, root=root,
                        groups={"rejects": open_store(path, group="rejects").load()})  # fmt: skip
        verify_dataset(name, root=root)
        assert validate_store(_published_at(root, name)) == []


def test_appending_to_a_format_1_0_store_is_refused_and_leaves_it_unchanged(
    stores: Stores, tmp_path: Path
) -> None:
    """(3) The writer does not mix formats: a 1.0 working copy is never appended to, nor rewritten."""
    old = write_format_1_0(stores.seismic_first, tmp_path / "s10.zarr")
    before = store_digest(old)
    with pytest.raises(InputError, match=r"format '1\.0'.*\n  fix: curate the files into a new --out"):
        SeismicStoreWriter(old, SEIS_PARAMS)
    assert store_digest(old) == before


def test_relabelling_a_published_code_fails_verification(stores: Stores, tmp_path: Path) -> None:
    """(6) The manifest digest of a coded column covers its categories: a swap of names is caught."""
    root = tmp_path / "root"
    shutil.copytree(stores.root, root)
    verify_dataset("seis", root=root)
    store = _published_at(root, "seis")
    for meta in (store / "zarr.json", store / "sensor_type" / "zarr.json"):  # same sizes, swapped meaning
        text = meta.read_text().replace('"3C"', '"@@"').replace('"1C"', '"3C"').replace('"@@"', '"1C"')
        meta.write_text(text.replace('"3C 1C"', '"1C 3C"'))
    assert (
        strings(open_store(store), "sensor_type").tolist()
        != strings(open_store(stores.seismic), "sensor_type").tolist()
    )
    with pytest.raises(IntegrityError, match="sensor_type: content checksum"):
        verify_dataset("seis", root=root)
