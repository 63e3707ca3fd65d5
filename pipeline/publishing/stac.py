"""STAC discovery metadata: one Collection per dataset, one Item per published version.

Only core STAC fields are used (no extension schemas, so validation needs no network: pystac
validates core objects against the JSON schemas it ships). Product fields use the ``emin:``
prefix: kind, modalities (sensor, wavelength range, bands), class names, label fields,
counts, content hash. Written to ``<root>/<name>/stac/`` (version folders stay untouched).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import xarray as xr
from pyproj import Transformer

from pipeline.publishing.codes import strings
from pipeline.publishing.manifest import jsonable
from pipeline.publishing.registry import open_dataset
from pipeline.publishing.versions import (
    STORE_DIR,
    default_root,
    filesystem,
    fs_url,
    list_versions,
    read_manifest,
    write_small_file,
)

ZARR_MEDIA_TYPE = "application/vnd+zarr"
HSI_LABEL_FIELDS = ["label", "label_name", "fold"]  # label_name: format 1.0 only
SEISMIC_LABEL_FIELDS = ["distance_km", "back_azimuth_deg", "sin_baz", "cos_baz", "split"]


def _bbox(ds: xr.Dataset) -> list[float]:
    """[west, south, east, north] in WGS84 degrees."""
    if ds.attrs.get("emin_kind") == "hsi_samples":
        x, y = np.asarray(ds["x"].values), np.asarray(ds["y"].values)
        tr = Transformer.from_crs(ds.attrs.get("crs_wkt") or ds.attrs["crs"], "EPSG:4326", always_xy=True)
        xs = np.array([x.min(), x.max(), x.min(), x.max()])
        ys = np.array([y.min(), y.min(), y.max(), y.max()])
        lon, lat = tr.transform(xs, ys)
    else:
        lon = np.concatenate(
            [ds[k].values for k in ("station_longitude", "event_longitude") if k in ds.variables]
        )
        lat = np.concatenate(
            [ds[k].values for k in ("station_latitude", "event_latitude") if k in ds.variables]
        )
    return [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))]


def _interval(ds: xr.Dataset, created: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Time span of the observations (seismic event times), else the publication time."""
    if "event_time" in ds.variables and ds.sizes.get("trace", 0):
        t = np.asarray(ds["event_time"].values).astype("datetime64[s]")
        lo, hi = (dt.datetime.fromisoformat(str(v)).replace(tzinfo=dt.UTC) for v in (t.min(), t.max()))
        return lo, hi
    return created, created


def _modalities(ds: xr.Dataset) -> list[dict[str, Any]]:
    if ds.attrs.get("emin_kind") == "hsi_samples":
        sensors = ds.attrs.get("sensor_types", {})
        out = []
        for m in ds.attrs["modalities"]:
            wl = np.asarray(ds[f"wavelength_{m}"].values)
            out.append({"name": m, "sensor": sensors.get(m), "n_bands": int(wl.size),
                        "wavelength_min_nm": float(wl.min()) if wl.size else None,
                        "wavelength_max_nm": float(wl.max()) if wl.size else None})  # fmt: skip
        return out
    return [{"name": c, "sensor": "seismometer channel"} for c in strings(ds, "channel").tolist()]


def _geometry(bbox: list[float]) -> dict[str, Any]:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def item_for(name: str, version: str, *, root: str | Path | None = None) -> pystac.Item:
    """The STAC Item of one published version (asset: its Zarr store)."""
    fs, base = filesystem(root or default_root())
    ds = open_dataset(name, version, root=root)
    manifest = read_manifest(name, version, root=root)
    return item_from(ds, manifest, name=name, version=version, folder=fs_url(fs, f"{base}/{name}/{version}"))


def preview_item(ds: xr.Dataset, *, name: str) -> pystac.Item:
    """Render (in memory) the Item a version of ``ds`` would get: a publish runs it before writing.

    A dataset whose STAC metadata cannot be rendered is never published.
    """
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest = {"created": created, "content_hash": "sha256:preview", "sizes": {}, "counts": {}}
    item = item_from(ds, manifest, name=name, version="v0-preview", folder="preview")
    item.to_dict()
    return item


def item_from(
    ds: xr.Dataset, manifest: dict[str, Any], *, name: str, version: str, folder: str
) -> pystac.Item:
    """The STAC Item of ``ds`` described by ``manifest`` (its version folder at ``folder``)."""
    created = dt.datetime.fromisoformat(manifest["created"])
    start, end = _interval(ds, created)
    bbox = _bbox(ds)
    if not all(np.isfinite(bbox)):
        raise ValueError(f"no finite bounding box for {name} {version} ({bbox})")
    kind = ds.attrs.get("emin_kind")
    props: dict[str, Any] = {
        "start_datetime": start.isoformat(),
        "end_datetime": end.isoformat(),
        "created": manifest["created"],
        "license": ds.attrs.get("license", "other"),
        "emin:kind": kind,
        "emin:schema_version": manifest.get("schema_version"),
        "emin:version": version,
        "emin:content_hash": manifest["content_hash"],
        "emin:code_version": manifest.get("code_version"),
        "emin:modalities": _modalities(ds),
        "emin:label_fields": [
            f
            for f in (HSI_LABEL_FIELDS if kind == "hsi_samples" else SEISMIC_LABEL_FIELDS)
            if f in ds.variables
        ],
        "emin:counts": jsonable(manifest.get("counts", {})),
        "emin:sizes": manifest["sizes"],
    }
    if "class_names" in ds.attrs:
        props["emin:class_names"] = [str(c) for c in ds.attrs["class_names"]]
    if "crs" in ds.attrs:
        props["emin:working_crs"] = ds.attrs["crs"]
    item = pystac.Item(id=f"{name}-{version}", geometry=_geometry(bbox), bbox=bbox, datetime=None,
                       properties=props, start_datetime=start, end_datetime=end)  # fmt: skip
    item.add_asset("data", pystac.Asset(href=f"{folder}/{STORE_DIR}", media_type=ZARR_MEDIA_TYPE,
                                        roles=["data"], title=f"{name} {version} (Zarr v3)"))  # fmt: skip
    item.add_asset("manifest", pystac.Asset(href=f"{folder}/manifest.json", media_type=pystac.MediaType.JSON,
                                            roles=["metadata"], title="checksums and provenance"))  # fmt: skip
    return item


def collection_for(
    name: str, *, root: str | Path | None = None, description: str | None = None
) -> pystac.Collection:
    """The STAC Collection of a dataset: extent over all versions, one Item per version."""
    items = [item_for(name, v, root=root) for v in list_versions(name, root=root)]
    if not items:
        open_dataset(name, root=root)  # raises DatasetNotFoundError listing what exists
    bboxes = np.array([i.bbox for i in items])
    bbox = [
        float(bboxes[:, 0].min()),
        float(bboxes[:, 1].min()),
        float(bboxes[:, 2].max()),
        float(bboxes[:, 3].max()),
    ]
    starts = [i.common_metadata.start_datetime for i in items]
    ends = [i.common_metadata.end_datetime for i in items]
    latest = items[-1].properties
    summaries: dict[str, Any] = {"emin:kind": [latest["emin:kind"]]}
    if "emin:class_names" in latest:
        summaries["emin:class_names"] = latest["emin:class_names"]
    summaries["emin:modalities"] = [m["name"] for m in latest["emin:modalities"]]
    coll = pystac.Collection(
        id=name,
        description=description
        or f"emin-fusion {latest['emin:kind']} dataset {name!r} (versioned, immutable Zarr stores)",
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]),
            pystac.TemporalExtent([[min(s for s in starts if s), max(e for e in ends if e)]]),
        ),
        license=str(latest["license"]),
        summaries=pystac.Summaries(summaries),
        extra_fields={
            "emin:label_fields": latest["emin:label_fields"],
            "emin:modalities": latest["emin:modalities"],
        },
    )
    coll.add_items(items)
    fs, base = filesystem(root or default_root())
    folder = f"{base}/{name}/stac"
    for item in items:
        item.set_self_href(fs_url(fs, f"{folder}/{item.id}.json"))
    coll.set_self_href(fs_url(fs, f"{folder}/collection.json"))
    return coll


def write_stac(name: str, *, root: str | Path | None = None) -> str:
    """Write ``<root>/<name>/stac/collection.json`` and one ``<version>.json`` per Item; returns the collection path."""
    fs, base = filesystem(root or default_root())
    coll = collection_for(name, root=root)
    folder = f"{base}/{name}/stac"
    fs.makedirs(folder, exist_ok=True)
    for item in coll.get_items():
        write_small_file(fs, f"{folder}/{item.id}.json", json.dumps(item.to_dict(), indent=1).encode())
    write_small_file(fs, f"{folder}/collection.json", json.dumps(coll.to_dict(), indent=1).encode())
    return fs_url(fs, f"{folder}/collection.json")
