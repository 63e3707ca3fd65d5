"""Consumer API for published datasets: find them by name, open them lazily, verify them.

No Prefect needed::

    from pipeline.publishing.registry import open_dataset
    ds = open_dataset("demo_hsi", root="data/published")   # lazy xarray.Dataset, checked
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from pipeline.errors import DatasetNotFoundError, IntegrityError
from pipeline.publishing.manifest import dtype_name, variable_digest
from pipeline.publishing.versions import (
    LATEST,
    MANIFEST,
    STORE_DIR,
    default_root,
    filesystem,
    fs_url,
    list_versions,
    read_latest,
    read_manifest,
    store_files,
)
from pipeline.publishing.zarr_io import open_store


@dataclass
class DatasetInfo:
    """What :func:`list_datasets` reports per dataset."""

    name: str
    versions: list[str]
    latest: str | None
    kind: str | None = None
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)


def list_datasets(root: str | Path | None = None) -> list[DatasetInfo]:
    """Every dataset under ``root`` with its complete versions, oldest first."""
    fs, base = filesystem(root or default_root())
    if not fs.isdir(base):
        return []
    out: list[DatasetInfo] = []
    for entry in sorted(fs.ls(base, detail=False)):
        name = str(entry).rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(".") or not fs.isdir(entry):
            continue
        versions = list_versions(name, root=fs_url(fs, base))
        if not versions:
            continue
        manifests = {v: read_manifest(name, v, root=fs_url(fs, base)) for v in versions}
        latest = read_latest(name, root=fs_url(fs, base))
        kind = manifests[latest or versions[-1]].get("emin_kind") if manifests else None
        out.append(DatasetInfo(name, versions, latest, kind, manifests))
    return out


def resolve(name: str, version: str = "latest", *, root: str | Path | None = None) -> tuple[str, str]:
    """(version id, version folder) for ``name``/``version``; clear error listing what exists."""
    fs, base = filesystem(root or default_root())
    versions = list_versions(name, root=fs_url(fs, base))
    if not versions:
        names = [d.name for d in list_datasets(fs_url(fs, base))]
        raise DatasetNotFoundError(
            f"no dataset named {name!r} under {base}; datasets there: {names or 'none'}\n"
            "  fix: check the name (emin datasets list) or the root (--root / EMIN_DATA_ROOT)"
        )
    vid = version
    if version == LATEST:
        pointed = read_latest(name, root=fs_url(fs, base))
        vid = pointed if pointed is not None else versions[-1]
    if vid not in versions:
        raise DatasetNotFoundError(
            f"dataset {name!r} has no version {version!r} under {base}; versions: {versions}"
            f" (latest: {read_latest(name, root=fs_url(fs, base))})\n  fix: pick one of the listed versions"
        )
    return vid, f"{base}/{name}/{vid}"


def _check_cheap(ds_by_group: dict[str, xr.Dataset], manifest: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    for group, entries in manifest["arrays"].items():
        ds = ds_by_group.get(group)
        if ds is None:
            problems.append(f"group {group!r} is missing")
            continue
        for var, entry in entries.items():
            if var not in ds.variables:
                problems.append(f"{group}{var}: array missing")
                continue
            v = ds.variables[var]
            if list(v.shape) != entry["shape"]:
                problems.append(f"{group}{var}: shape {list(v.shape)} != manifest {entry['shape']}")
            if dtype_name(v.dtype) != entry["dtype"]:
                problems.append(f"{group}{var}: dtype {dtype_name(v.dtype)} != manifest {entry['dtype']}")
    return problems


def _check_files(fs: Any, store: str, manifest: dict[str, Any]) -> list[str]:
    actual = store_files(fs, store)
    expected: dict[str, int] = manifest.get("files", {})
    problems = [f"file {k} is missing" for k in sorted(set(expected) - set(actual))]
    problems += [f"file {k} is not in the manifest" for k in sorted(set(actual) - set(expected))]
    problems += [
        f"file {k} has {actual[k]} bytes, manifest says {n}"
        for k, n in sorted(expected.items())
        if k in actual and actual[k] != n
    ]
    return problems


def _check_digests(ds_by_group: dict[str, xr.Dataset], manifest: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for group, entries in manifest["arrays"].items():
        ds = ds_by_group[group]
        for var, entry in entries.items():
            got = variable_digest(ds.variables[var])
            if got != entry["digest"]:
                problems.append(
                    f"{group}{var}: content checksum {got[:19]}… != manifest {entry['digest'][:19]}…"
                )
    return problems


def open_dataset(
    name: str,
    version: str = "latest",
    *,
    root: str | Path | None = None,
    group: str | None = None,
    verify: bool = False,
) -> xr.Dataset:
    """Open a published dataset lazily after checking it against its manifest.

    Always checked: the store's file list and sizes, and every array's shape and dtype.
    ``verify=True`` also recomputes every array's content checksum (reads everything).
    ``group`` opens a child group (e.g. ``"rejects"``).
    """
    fs, _base = filesystem(root or default_root())
    vid, folder = resolve(name, version, root=root)
    manifest = read_manifest(name, vid, root=root)
    store = f"{folder}/{STORE_DIR}"
    where = f"{name}/{vid} ({fs_url(fs, folder)})"
    problems = _check_files(fs, store, manifest)
    if problems:
        raise IntegrityError(where, problems)
    groups: dict[str, xr.Dataset] = {}
    for g in manifest["arrays"]:
        groups[g] = open_store(fs_url(fs, store), group=None if g == "/" else g)
    problems = _check_cheap(groups, manifest, where)
    if not problems and verify:
        problems = _check_digests(groups, manifest)
    if problems:
        raise IntegrityError(where, problems)
    ds = groups["/" if group is None else group] if (group or "/") in groups else None
    if ds is None:
        raise DatasetNotFoundError(f"{where} has no group {group!r}; groups: {sorted(groups)}")
    ds.attrs["emin_dataset"] = {"name": name, "version": vid, "path": fs_url(fs, folder)}
    return ds


def verify_dataset(name: str, version: str = "latest", *, root: str | Path | None = None) -> None:
    """Raise :class:`IntegrityError` unless every array matches its manifest checksum."""
    open_dataset(name, version, root=root, verify=True)


def describe(name: str, version: str = "latest", *, root: str | Path | None = None) -> dict[str, Any]:
    """Versions, sizes, counts (Table 1) and provenance of one dataset, as plain data."""
    fs, base = filesystem(root or default_root())
    vid, folder = resolve(name, version, root=root)
    versions = list_versions(name, root=fs_url(fs, base))
    manifest = read_manifest(name, vid, root=root)
    return {
        "name": name,
        "version": vid,
        "latest": read_latest(name, root=fs_url(fs, base)),
        "versions": {v: read_manifest(name, v, root=root)["created"] for v in versions},
        "path": fs_url(fs, folder),
        "manifest": {k: v for k, v in manifest.items() if k not in ("arrays", "files")},
        "n_arrays": int(sum(len(a) for a in manifest["arrays"].values())),
        "n_files": len(manifest["files"]),
    }


def table1(manifest: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The report's Table 1 (class → modality → samples) from an HSI manifest, else {}."""
    counts = manifest.get("counts", {})
    t = counts.get("table1_counts", {})
    return {str(c): {str(m): int(n) for m, n in row.items()} for c, row in t.items()}


__all__ = [
    "MANIFEST",
    "DatasetInfo",
    "DatasetNotFoundError",
    "IntegrityError",
    "describe",
    "list_datasets",
    "open_dataset",
    "resolve",
    "table1",
    "verify_dataset",
]
