"""Versioned, immutable publishing of curated datasets under a dataset root.

Layout of a root (a local folder, or any fsspec URL)::

    <root>/<name>/<version>/data.zarr       the Zarr store (groups included), never modified
    <root>/<name>/<version>/manifest.json   checksums of every array, provenance, sizes, counts
    <root>/<name>/latest                    JSON ``{"version": ...}``, replaced atomically, last

A version id is ``v<N>-<hash>``: ``hash`` is derived from the content (every array's
:func:`pipeline.checksums.array_digest` and the attributes, which hold the parameters and
input checksums; ``code_version`` is provenance, not content). Publishing content that
already has a version re-uses it (and points ``latest`` at it). A version is written under
``<name>/.tmp-<id>/`` and renamed into place only when complete, then ``latest`` moves;
a crash leaves at most a temporary folder (removed by :func:`gc`) and ``latest`` on the
previous complete version. Two concurrent publishes leave one or two complete versions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fsspec
import xarray as xr
from fsspec.implementations.local import LocalFileSystem

from pipeline import interrupt
from pipeline.errors import PublishError
from pipeline.publishing import paths
from pipeline.publishing.manifest import (
    array_entries,
    content_hash,
    default_chunks,
    jsonable,
    prepared_for_publish,
)
from pipeline.publishing.zarr_io import register_temporary, remove_temporary, write_zarr
from pipeline.version import code_version

MANIFEST_VERSION = 1
STORE_DIR = "data.zarr"
MANIFEST = "manifest.json"
LATEST = "latest"
TMP_PREFIX = ".tmp-"
VERSION_RE = re.compile(r"^v(\d+)-([0-9a-f]{8,64})$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def default_root() -> str:
    """The dataset root: ``$EMIN_DATA_ROOT``, else ``data/published``."""
    return paths.default_root()


@dataclass(frozen=True)
class PublishedVersion:
    """One published version: where it is and whether this call created it."""

    name: str
    version: str
    path: str  # the version folder (holds data.zarr and manifest.json)
    created: bool  # False when identical content was already published

    @property
    def store(self) -> str:
        """Path/URL of the Zarr store of this version."""
        return f"{self.path}/{STORE_DIR}"


# --------------------------------------------------------------------------------------------
# filesystem helpers (one code path for local folders and fsspec URLs)
# --------------------------------------------------------------------------------------------


def filesystem(root: str | Path) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the normalised root path (local paths made absolute)."""
    fs, path = fsspec.core.url_to_fs(str(root))
    if isinstance(fs, LocalFileSystem):
        path = str(Path(path).absolute())
    return fs, str(path).rstrip("/")


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def fs_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """What xarray/zarr should be given for ``path``: a plain path when local, else a URL."""
    return path if _is_local(fs) else str(fs.unstrip_protocol(path))


def write_small_file(fs: fsspec.AbstractFileSystem, path: str, data: bytes, *, register: bool = True) -> None:
    """Write a small file atomically: temp name + ``os.replace`` locally, one PUT elsewhere.

    The local temporary (``.<name>.tmp-<hex>`` beside it) is registered first, so a kill between
    its creation and the replace leaves a leftover ``emin publish gc`` removes.
    """
    if _is_local(fs):
        folder, _, leaf = path.rpartition("/")
        tmp = (
            f"{folder}/.{leaf}.tmp-{uuid.uuid4().hex[:12]}"
            if folder
            else f".{leaf}.tmp-{uuid.uuid4().hex[:12]}"
        )
        if register:
            register_temporary(Path(tmp))
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:  # Ctrl-C or a full disk: nothing left behind
            Path(tmp).unlink(missing_ok=True)
            raise
    else:  # object stores replace an object in one request
        fs.pipe_file(path, data)


def _rename_dir(fs: fsspec.AbstractFileSystem, src: str, dst: str) -> bool:
    """Move a finished folder into place; False when ``dst`` already exists (never merges)."""
    if _is_local(fs):
        try:
            os.rename(src, dst)  # atomic; fails on an existing non-empty folder
        except OSError:
            if os.path.isdir(dst):
                return False
            raise
        return True
    if fs.exists(dst):
        return False
    fs.mv(src, dst, recursive=True)
    return True


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise PublishError(
            f"dataset name {name!r} is not usable as a folder name; use letters, digits, '_', '-', '.'"
        )


# --------------------------------------------------------------------------------------------
# content identity
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# reading what is there
# --------------------------------------------------------------------------------------------


def list_versions(name: str, *, root: str | Path | None = None) -> list[str]:
    """Complete versions of ``name`` (those with a manifest), oldest first."""
    fs, base = filesystem(root or default_root())
    folder = f"{base}/{name}"
    if not fs.isdir(folder):
        return []
    found: list[tuple[int, str, str]] = []
    for entry in fs.ls(folder, detail=False):
        vid = str(entry).rstrip("/").rsplit("/", 1)[-1]
        m = VERSION_RE.match(vid)
        if m and fs.exists(f"{folder}/{vid}/{MANIFEST}"):
            found.append((int(m.group(1)), vid, vid))
    return [v for _, _, v in sorted(found)]


def read_latest(name: str, *, root: str | Path | None = None) -> str | None:
    """The version ``latest`` points at, or None when there is no pointer."""
    fs, base = filesystem(root or default_root())
    path = f"{base}/{name}/{LATEST}"
    if not fs.exists(path):
        return None
    return str(json.loads(fs.cat_file(path))["version"])


def read_manifest(name: str, version: str, *, root: str | Path | None = None) -> dict[str, Any]:
    """The manifest of one version."""
    fs, base = filesystem(root or default_root())
    return cast(dict[str, Any], json.loads(fs.cat_file(f"{base}/{name}/{version}/{MANIFEST}")))


def store_files(fs: fsspec.AbstractFileSystem, store: str) -> dict[str, int]:
    """Every file of a store (path relative to it → size in bytes)."""
    listing = fs.find(store, detail=True)
    return {
        str(p)[len(store) + 1 :]: int(info["size"])
        for p, info in sorted(listing.items())
        if info.get("type") == "file"
    }


# --------------------------------------------------------------------------------------------
# publishing
# --------------------------------------------------------------------------------------------


def _counts(ds: xr.Dataset) -> dict[str, Any]:
    attrs = ds.attrs
    keys = ("counts", "table1_counts", "modality_totals", "n_samples", "n_rejected")
    return {k: jsonable(attrs[k]) for k in keys if k in attrs}


def _manifest(
    *,
    name: str,
    version: str,
    digest: str,
    ds: xr.Dataset,
    groups: Mapping[str, xr.Dataset],
    arrays: Mapping[str, Mapping[str, dict[str, Any]]],
    files: dict[str, int],
    input_checksums: Mapping[str, str] | None,
    parameters: Mapping[str, Any] | None,
) -> dict[str, Any]:
    attrs = ds.attrs
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "version": version,
        "content_hash": "sha256:" + digest,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "emin_kind": attrs.get("emin_kind"),
        "schema_version": attrs.get("schema_version"),
        "code_version": attrs.get("code_version", code_version()),
        "input_checksums": jsonable(input_checksums or attrs.get("input_checksums", {})),
        "parameters": jsonable(parameters or attrs.get("parameters", {})),
        "store": STORE_DIR,
        "groups": ["", *groups],
        "sizes": {
            g or "/": {str(k): int(v) for k, v in d.sizes.items()} for g, d in [("", ds), *groups.items()]
        },
        "counts": _counts(ds),
        "arrays": {g or "/": dict(a) for g, a in arrays.items()},
        "files": files,
        "total_bytes": int(sum(files.values())),
    }


def publish_dataset(
    ds: xr.Dataset,
    *,
    name: str,
    root: str | Path | None = None,
    groups: Mapping[str, xr.Dataset] | None = None,
    chunks: Mapping[str, int] | None = None,
    input_checksums: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> PublishedVersion:
    """Publish ``ds`` (plus named child ``groups``) as a new immutable version of ``name``.

    Identical content (arrays and attributes, ``code_version`` aside) re-uses its version.
    ``input_checksums``/``parameters`` default to the dataset's attributes of those names.
    """
    _check_name(name)
    groups = dict(groups or {})
    for g in groups:
        if not NAME_RE.match(g):
            raise PublishError(f"group name {g!r} of dataset {name!r} must be a plain name (no '/')")
    fs, base = filesystem(root or default_root())
    folder = f"{base}/{name}"
    fs.makedirs(folder, exist_ok=True)

    main = prepared_for_publish(ds)
    children = {g: prepared_for_publish(d) for g, d in groups.items()}
    arrays = {"": array_entries(main), **{g: array_entries(d) for g, d in children.items()}}
    attrs = {"": main.attrs, **{g: d.attrs for g, d in children.items()}}
    digest = content_hash(arrays, attrs)
    short = digest[:12]

    for vid in list_versions(name, root=fs_url(fs, base)):
        if vid.endswith(f"-{short}"):
            _check_own_content(fs, folder, vid, digest)
            _point_latest(fs, folder, vid)
            return PublishedVersion(name, vid, f"{folder}/{vid}", created=False)

    tmp = f"{folder}/{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        if _is_local(fs):
            register_temporary(Path(tmp))  # first: a kill right after the mkdir leaves it registered
        fs.makedirs(tmp, exist_ok=False)
        store = f"{tmp}/{STORE_DIR}"
        chunking = dict(chunks) if chunks is not None else default_chunks(main)
        target = Path(store) if _is_local(fs) else fs_url(fs, store)
        write_zarr(main, target, chunks=chunking)
        for g, d in children.items():
            write_zarr(d, target, chunks={**chunking, **default_chunks(d)}, group=g)
        files = store_files(fs, store)
        version = _install(fs, folder, tmp, short, name, main, children, arrays, digest, files,
                           input_checksums, parameters)  # fmt: skip
    finally:
        if _is_local(fs):
            remove_temporary(Path(tmp))
        elif fs.exists(tmp):
            fs.rm(tmp, recursive=True)
    created = version is not None
    if version is None:  # a concurrent publish of identical content won
        version = next(v for v in list_versions(name, root=fs_url(fs, base)) if v.endswith(f"-{short}"))
    _check_own_content(fs, folder, version, digest)
    _point_latest(fs, folder, version)
    return PublishedVersion(name, version, f"{folder}/{version}", created=created)


def _check_own_content(fs: fsspec.AbstractFileSystem, folder: str, version: str, digest: str) -> None:
    """A publish reports only a version whose manifest names the content this call published."""
    manifest = json.loads(fs.cat_file(f"{folder}/{version}/{MANIFEST}"))
    if manifest.get("content_hash") != "sha256:" + digest:
        raise PublishError(
            f"{folder}/{version} holds content {manifest.get('content_hash')}, not this run's "
            f"sha256:{digest}; nothing was reported as published\n"
            "  fix: re-run the publish (another run may have written the same dataset at the same time)"
        )


def _install(
    fs: fsspec.AbstractFileSystem,
    folder: str,
    tmp: str,
    short: str,
    name: str,
    main: xr.Dataset,
    children: Mapping[str, xr.Dataset],
    arrays: Mapping[str, Mapping[str, dict[str, Any]]],
    digest: str,
    files: dict[str, int],
    input_checksums: Mapping[str, str] | None,
    parameters: Mapping[str, Any] | None,
) -> str | None:
    """Write the manifest and rename the folder to the next free ``v<N>-<hash>``; None if taken."""
    for _attempt in range(100):
        numbers = [int(m.group(1)) for e in fs.ls(folder, detail=False)
                   if (m := VERSION_RE.match(str(e).rstrip("/").rsplit("/", 1)[-1]))]  # fmt: skip
        vid = f"v{max(numbers, default=0) + 1}-{short}"
        if any(str(e).rstrip("/").endswith(f"-{short}") for e in fs.ls(folder, detail=False)):
            return None
        manifest = _manifest(name=name, version=vid, digest=digest, ds=main, groups=children, arrays=arrays,
                             files=files, input_checksums=input_checksums, parameters=parameters)  # fmt: skip
        write_small_file(fs, f"{tmp}/{MANIFEST}", json.dumps(manifest, indent=1, sort_keys=True).encode())
        interrupt.check()
        if _rename_dir(fs, tmp, f"{folder}/{vid}"):
            return vid
        time.sleep(0.01)
    raise PublishError(f"could not claim a version id under {folder} (100 attempts); is the root writable?")


def _point_latest(fs: fsspec.AbstractFileSystem, folder: str, version: str) -> None:
    """Move the ``latest`` pointer of a dataset folder to ``version`` (atomic, done last)."""
    interrupt.check()
    write_small_file(fs, f"{folder}/{LATEST}", json.dumps({"version": version}).encode())


#: Names of the temporaries the product makes: ``.tmp-<hex>`` in a dataset folder, and
#: ``.<name>.tmp-<hex>`` beside a working copy (``--out``).
TEMPORARY_RE = re.compile(r"^(\.tmp-[0-9a-f]{12}|\..+\.tmp-[0-9a-f]{12})$")


def _owner_alive(entry: Mapping[str, Any]) -> bool:
    """Whether the process that made a registered temporary may still be writing it."""
    if entry.get("host") != os.uname().nodename:
        return True  # another machine's run: only the age rule applies
    try:
        os.kill(int(entry["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def gc(*, root: str | Path | None = None, min_age_s: float = 3600.0, dry_run: bool = False) -> list[str]:
    """Remove partial writes the product left behind; complete versions are never touched.

    Removed: ``.tmp-*`` folders and pointer temp files in dataset folders older than
    ``min_age_s``, and every temporary listed in the user's registry
    (``paths.temporaries_registry()``, written by every run that makes one, wherever it makes
    it: beside an ``--out`` too) whose owning process is gone or that is older than ``min_age_s``.
    Only paths named like the product's temporaries are removed. Returns the removed (or, with
    ``dry_run``, removable) paths.
    """
    removed = _gc_registered(root, min_age_s=min_age_s, dry_run=dry_run)
    fs, base = filesystem(root or default_root())
    if not fs.isdir(base):
        return sorted(removed)
    now = time.time()
    for ds_folder in fs.ls(base, detail=False):
        if not fs.isdir(ds_folder):
            continue
        for entry in fs.ls(ds_folder, detail=True):
            leaf = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            if not (
                leaf.startswith(TMP_PREFIX) or leaf.startswith(f"{LATEST}.tmp-") or TEMPORARY_RE.match(leaf)
            ):
                continue
            mtime = entry.get("mtime", entry.get("LastModified"))
            mtime = now if mtime is None else mtime
            if isinstance(mtime, dt.datetime):
                mtime = mtime.timestamp()
            if now - float(mtime) < min_age_s or str(entry["name"]) in removed:
                continue
            if not dry_run:
                fs.rm(entry["name"], recursive=True)
            removed.append(str(entry["name"]))
    return sorted(set(removed))


def _gc_registered(root: str | Path | None, *, min_age_s: float, dry_run: bool) -> list[str]:
    """The registry part of :func:`gc`; rewrites the registry without the entries that are gone."""
    if not paths.temporaries_registry().is_file():
        return []
    with paths.registry_locked() as reg:  # runs that register meanwhile wait: no line is lost
        return _gc_registry_file(reg, min_age_s=min_age_s, dry_run=dry_run)


def _gc_registry_file(reg: Path, *, min_age_s: float, dry_run: bool) -> list[str]:
    import shutil

    now = time.time()
    removed: list[str] = []
    keep: list[str] = []
    for line in reg.read_text().splitlines():
        try:
            entry = json.loads(line)
            p = Path(entry["path"])
        except (ValueError, KeyError, TypeError):
            continue
        if not (p.exists() or p.is_symlink()):
            if _owner_alive(entry):
                keep.append(line)  # registered before it is made: its run may be about to make it
            continue
        if not TEMPORARY_RE.match(p.name) or not (p.is_dir() or p.is_file()):
            continue  # never remove anything not named like the product's temporaries
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if _owner_alive(entry) and age < min_age_s:
            keep.append(line)
            continue
        if dry_run:
            keep.append(line)
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(str(p))
    if not dry_run:
        write_small_file(
            LocalFileSystem(), str(reg), "".join(f"{k}\n" for k in keep).encode(), register=False
        )
    return removed
