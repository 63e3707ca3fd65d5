"""STAC Collection/Items of published datasets, validated offline against the core STAC schemas."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pystac
import pytest
from pyproj import Transformer
from test_publish_support import curate_tiny, seismic_dataset

from pipeline.publishing.stac import collection_for, item_for, write_stac
from pipeline.publishing.versions import publish_dataset

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during a STAC test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_hsi_collection_and_items_validate(tmp_path: Path) -> None:
    ds, _ = curate_tiny(tmp_path / "work")
    v1 = publish_dataset(ds, name="tiny", root=tmp_path / "root")
    ds2, _ = curate_tiny(tmp_path / "work", seed=5)
    v2 = publish_dataset(ds2, name="tiny", root=tmp_path / "root")
    item = item_for("tiny", v1.version, root=tmp_path / "root")
    assert item.validate()  # core item schema shipped with pystac; socket.connect is blocked
    tr = Transformer.from_crs(ds.attrs["crs"], "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(ds["x"].values, ds["y"].values)
    w, s, e, n = item.bbox
    assert w <= lon.min() and e >= lon.max() and s <= lat.min() and n >= lat.max()
    assert e - w < 0.01 and 36 < s < 38 and -117 < w < -115  # the tiny scene is ~120 m near 37.2 N 116 W
    mods = {m["name"]: m for m in item.properties["emin:modalities"]}
    assert mods["VNIR1"]["sensor"] == "VNIR" and mods["SWIR1"]["sensor"] == "SWIR"
    wl = ds["wavelength_SWIR1"].values
    assert (
        mods["SWIR1"]["wavelength_min_nm"] == pytest.approx(wl.min()) and mods["SWIR1"]["n_bands"] == wl.size
    )
    assert item.properties["emin:class_names"] == list(ds.attrs["class_names"])
    assert "label" in item.properties["emin:label_fields"] and item.properties["license"]
    assert item.assets["data"].href.endswith(f"tiny/{v1.version}/data.zarr")
    assert item.assets["data"].media_type == "application/vnd+zarr"
    coll = collection_for("tiny", root=tmp_path / "root")
    assert coll.validate()
    assert sorted(i.id for i in coll.get_items()) == sorted([f"tiny-{v1.version}", f"tiny-{v2.version}"])
    path = write_stac("tiny", root=tmp_path / "root")
    back = pystac.Collection.from_file(path)
    assert back.validate_all() == 2  # the collection and both items validate from disk
    # the validator is real: a broken item is refused
    bad = item.to_dict()
    bad["geometry"] = {"type": "Polygon", "coordinates": "nope"}
    with pytest.raises(pystac.errors.STACValidationError):
        pystac.validation.validate_dict(bad)


def test_seismic_item_extent_from_stations_and_events(tmp_path: Path) -> None:
    seis = seismic_dataset()
    v = publish_dataset(seis, name="seis", root=tmp_path)
    item = item_for("seis", v.version, root=tmp_path)
    assert item.validate()
    lats = np.concatenate([seis["station_latitude"].values, seis["event_latitude"].values])
    assert item.bbox[1] == pytest.approx(lats.min()) and item.bbox[3] == pytest.approx(lats.max())
    t = seis["event_time"].values
    assert item.common_metadata.start_datetime.replace(tzinfo=None) == t.min().astype("datetime64[s]").item()
    assert item.common_metadata.end_datetime.replace(tzinfo=None) == t.max().astype("datetime64[s]").item()
    assert "distance_km" in item.properties["emin:label_fields"]
    assert [m["name"] for m in item.properties["emin:modalities"]] == ["Z", "N", "E"]
    json.dumps(item.to_dict())
