"""Check a published store against its on-disk contract (docs/format.md): HSI and seismic validators.

``validate_store`` returns the list of problems found (empty when the store is
valid); ``emin validate`` prints them and exits non-zero.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pipeline.errors import ContractViolation, InputError, MissingInputError, PublishError
from pipeline.publishing.codes import FORMAT_VERSIONS, check_coded, coded_format, strings
from pipeline.publishing.zarr_io import leading_blocks, open_store
from schemas.seismic import EMIN_KIND as SEISMIC_KIND

HSI_REQUIRED_ATTRS = (
    "schema_version",
    "crs",
    "class_names",
    "modalities",
    "sensor_types",
    "parameters",
    "code_version",
    "input_checksums",
    "table1_counts",
    "modality_count_histogram",
    "n_samples",
    "n_rejected",
)
HSI_COORDS = {
    "sample_id": "i",
    "x": "f",
    "y": "f",
    "label": "i",
    "fold": "i",
    "polygon_id": "i",
}
SENSOR_RANGES_NM = {"VNIR": (350.0, 1100.0), "SWIR": (850.0, 2600.0)}
#: Categories of an HSI reject's ``reason`` (codes 0, 1).
HSI_REJECT_REASONS = ("outside_all_footprints", "no_valid_pixel")


def _version_problems(attrs: Mapping[Hashable, Any]) -> list[str]:
    version = attrs.get("schema_version")
    if version not in FORMAT_VERSIONS:
        return [f"attrs.schema_version is {version!r}, expected one of {list(FORMAT_VERSIONS)}"]
    return []


def validate_hsi(ds: xr.Dataset, rejects: xr.Dataset | None) -> list[str]:
    """Every violation of the HSI sample-dataset contract in ``ds`` (loaded in memory)."""
    problems: list[str] = []
    missing = [a for a in HSI_REQUIRED_ATTRS if a not in ds.attrs]
    if missing:
        return [f"missing attrs {missing}"]
    if "sample" not in ds.dims:
        return ["no `sample` dimension"]
    problems += _version_problems(ds.attrs)
    n = ds.sizes["sample"]
    for name, kind in HSI_COORDS.items():
        if name not in ds.coords:
            problems.append(f"missing coord {name!r}")
        elif ds[name].dims != ("sample",) or ds[name].dtype.kind != kind:
            problems.append(
                f"coord {name!r} must be ({kind}) along sample, got {ds[name].dtype} {ds[name].dims}"
            )
    if problems:
        return problems
    classes = [str(c) for c in ds.attrs["class_names"]]
    problems += _hsi_codes(ds, rejects, classes) if coded_format(ds.attrs["schema_version"]) else _hsi_1_0(ds)
    if problems:
        return problems
    modalities = list(ds.attrs["modalities"])
    params = ds.attrs["parameters"]
    lo, hi = params["clip_range"]
    n_folds = int(params["n_folds"])
    label = ds["label"].values
    if len(np.unique(ds["sample_id"].values)) != n:
        problems.append("sample_id is not unique")
    if not (np.isfinite(ds["x"].values).all() and np.isfinite(ds["y"].values).all()):
        problems.append("x/y hold non-finite values")
    if label.size and (label.min() < 0 or label.max() >= len(classes)):
        problems.append(f"label outside [0, {len(classes)})")
        return problems
    fold = ds["fold"].values
    if fold.size and (fold.min() < 1 or fold.max() > n_folds):
        problems.append(f"fold outside 1..{n_folds}")
    background = params.get("background_class", "background")
    is_bg = strings(ds, "label") == background
    if not np.array_equal(is_bg, ds["polygon_id"].values == -1):
        problems.append("polygon_id must be -1 exactly for background samples")
    for value in np.unique(label):
        per_fold = np.bincount(fold[label == value], minlength=n_folds + 1)[1:]
        if per_fold.max() - per_fold.min() > 1:
            problems.append(f"folds not stratified for class {classes[value]!r}: {per_fold.tolist()}")
    problems += _check_modalities(ds, modalities, lo, hi)
    if rejects is None:
        problems.append("no `rejects` group")
    else:
        if rejects.sizes.get("reject", 0) != int(ds.attrs["n_rejected"]):
            problems.append("rejects table size differs from attrs n_rejected")
        if np.intersect1d(rejects["sample_id"].values, ds["sample_id"].values).size:
            problems.append("a sample_id is both in the dataset and in rejects")
    if int(ds.attrs["n_samples"]) != n:
        problems.append(f"attrs n_samples={ds.attrs['n_samples']} but the store holds {n}")
    return problems


def _hsi_1_0(ds: xr.Dataset) -> list[str]:
    """Format 1.0: class names in the string coord ``label_name`` (= ``class_names[label]``)."""
    if "label_name" not in ds.coords:
        return ["missing coord 'label_name'"]
    names = np.asarray(ds.attrs["class_names"], dtype=object)
    label = ds["label"].values
    in_range = not label.size or (label.min() >= 0 and label.max() < names.size)
    if in_range and not np.array_equal(names[label], ds["label_name"].values.astype(object)):
        return ["label_name does not match class_names[label]"]
    return []


def _hsi_codes(ds: xr.Dataset, rejects: xr.Dataset | None, classes: list[str]) -> list[str]:
    """Format 1.1: ``label`` and ``modality`` (and the rejects' label, reason, status) are coded."""
    problems = check_coded(ds["label"], "label", classes)
    if "modality" in ds.coords:
        problems += check_coded(ds["modality"], "modality", [str(m) for m in ds.attrs["modalities"]])
    if rejects is not None:
        for name, cats in (("label", classes), ("reason", HSI_REJECT_REASONS), ("status", None)):
            if name not in rejects.variables:
                problems.append(f"rejects/{name} missing")
            else:
                problems += [f"rejects/{p}" for p in check_coded(rejects[name], name, cats)]
    return problems


def _check_modalities(ds: xr.Dataset, modalities: list[str], lo: float, hi: float) -> list[str]:
    """Per-modality variables, wavelengths, presence mask and Table 1 consistency."""
    problems: list[str] = []
    if "present" not in ds or ds["present"].dims != ("sample", "modality") or ds["present"].dtype != bool:
        return ["`present` must be bool (sample, modality)"]
    if "modality" not in ds.coords or strings(ds, "modality").tolist() != modalities:
        problems.append("modality coord differs from attrs['modalities']")
        return problems
    present = ds["present"].values
    if present.size and not present.any(axis=1).all():
        problems.append("some samples are present in no modality (they belong in rejects)")
    table1 = ds.attrs["table1_counts"]
    classes = list(ds.attrs["class_names"])
    label = ds["label"].values
    for j, m in enumerate(modalities):
        band = f"band_{m}"
        if m not in ds:
            problems.append(f"missing data var {m!r}")
            continue
        var = ds[m]
        if var.dims != ("sample", band) or var.dtype != np.float32:
            problems.append(f"{m!r} must be float32 (sample, {band}), got {var.dtype} {var.dims}")
            continue
        values = var.values
        nan_rows = np.isnan(values).all(axis=1)
        any_nan = np.isnan(values).any(axis=1)
        if not np.array_equal(nan_rows, ~present[:, j]) or not np.array_equal(any_nan, nan_rows):
            problems.append(f"{m!r}: NaN rows must be exactly the samples where present is False")
        finite = values[present[:, j]]
        if finite.size and (finite.min() < lo or finite.max() > hi):
            problems.append(f"{m!r}: values outside the clip range [{lo}, {hi}]")
        wl_name = f"wavelength_{m}"
        sensor = ds.attrs["sensor_types"].get(m)
        if wl_name not in ds.coords or ds[wl_name].dims != (band,):
            problems.append(f"missing coord {wl_name!r} on {band}")
        elif sensor in SENSOR_RANGES_NM:
            w_lo, w_hi = SENSOR_RANGES_NM[sensor]
            wl = ds[wl_name].values
            if wl.min() < w_lo or wl.max() > w_hi:
                problems.append(
                    f"{wl_name} spans {wl.min():.0f}–{wl.max():.0f} nm, outside {sensor} {w_lo}–{w_hi}"
                )
        else:
            problems.append(f"sensor type of {m!r} must be VNIR or SWIR, got {sensor!r}")
        for i, c in enumerate(classes):
            stored = int(np.sum(present[label == i, j]))
            if table1.get(c, {}).get(m) != stored:
                problems.append(f"table1_counts[{c!r}][{m!r}] != {stored} samples in the store")
    return problems


#: Categorical per-trace columns of a seismic store: the names its categories start with (in code
#: order, the same in every store) and the code dtype, fixed so that appends never have to widen it.
SEISMIC_CODED: dict[str, tuple[tuple[str, ...], str]] = {
    "network": ((), "int16"),
    "station": ((), "int16"),
    "location": ((), "int16"),
    "channel_codes": ((), "int16"),
    "sensor_type": (("3C", "1C"), "int8"),
    "split": (("train", "val", "test"), "int8"),
    "p_source": (("pick", "taup"), "int8"),
}
#: The ``channel`` coordinate and the rejects' ``reason`` (codes in 1.1), as :data:`SEISMIC_CODED`.
SEISMIC_CHANNELS: tuple[tuple[str, ...], str] = (("Z", "N", "E"), "int8")
SEISMIC_REJECT_REASON: tuple[tuple[str, ...], str] = ((), "int16")

SEISMIC_TRACE_COORDS = {
    "trace_id": "U",
    "event_id": "U",
    "network": "U",
    "station": "U",
    "location": "U",
    "channel_codes": "U",
    "sensor_type": "U",
    "split": "U",
    "source_file": "U",
    "p_source": "U",
    "station_latitude": "f",
    "station_longitude": "f",
    "event_latitude": "f",
    "event_longitude": "f",
    "event_depth_km": "f",
    "event_magnitude": "f",
    "event_horizontal_error_km": "f",
    "distance_km": "f",
    "back_azimuth_deg": "f",
    "sin_baz": "f",
    "cos_baz": "f",
    "p_arrival_time": "M",
    "event_time": "M",
    "window_start_time": "M",
    "n_gap_samples": "i",
}


def validate_seismic_store(path: str | Path, *, values: bool = True) -> list[str]:
    """Every way the store at ``path`` breaks the seismic contract (empty list = valid).

    A little over 80 lines: one check per contract clause of docs/format.md, in its order.
    The per-trace arrays are read block by block (:func:`seismic_value_problems` per block);
    ``values=False`` leaves that scan to a writer that ran it on every block it wrote.

    One flat list of independent checks (attrs, dims, dtypes, coords, labels, splits, rejects),
    in the order docs/seismic.md lists them; splitting it would only scatter that list.
    """
    problems: list[str] = []
    try:
        ds = open_store(path, dask=False)
    except Exception as exc:  # any failure to open is a contract problem
        return [f"cannot open as a Zarr store: {exc}"]
    if ds.attrs.get("emin_kind") != SEISMIC_KIND:
        problems.append(f"attrs.emin_kind is {ds.attrs.get('emin_kind')!r}, expected {SEISMIC_KIND!r}")
    problems += _version_problems(ds.attrs)
    coded = coded_format(ds.attrs.get("schema_version"))
    for key in ("parameters", "input_checksums", "code_version", "counts"):
        if key not in ds.attrs:
            problems.append(f"attrs.{key} missing")
    if "spectrogram" not in ds:
        return [*problems, "data variable 'spectrogram' missing"]
    spec = ds["spectrogram"]
    if spec.dims != ("trace", "channel", "freq", "time"):
        problems.append(f"spectrogram dims {spec.dims}, expected ('trace', 'channel', 'freq', 'time')")
    if spec.dtype != np.float32:
        problems.append(f"spectrogram dtype {spec.dtype}, expected float32")
    if "channel" in ds.coords:
        if coded:
            problems += check_coded(ds["channel"], "channel", SEISMIC_CHANNELS[0])
        elif strings(ds, "channel").tolist() != list(SEISMIC_CHANNELS[0]):
            problems.append(f"channel coordinate {list(ds['channel'].values)}, expected ['Z', 'N', 'E']")
    for name, kind in SEISMIC_TRACE_COORDS.items():
        if name not in ds.coords:
            problems.append(f"coordinate {name!r} missing")
            continue
        if ds[name].dims != ("trace",):
            problems.append(f"coordinate {name!r} has dims {ds[name].dims}, expected ('trace',)")
        k = ds[name].dtype.kind
        if coded and name in SEISMIC_CODED:
            problems += _coded_prefix(ds[name], name, SEISMIC_CODED[name])
        elif kind == "U" and k not in "UTO":
            problems.append(f"coordinate {name!r} dtype {ds[name].dtype}, expected strings")
        elif kind != "U" and k != kind:
            problems.append(f"coordinate {name!r} dtype {ds[name].dtype}, expected kind {kind!r}")
    if problems:
        return problems
    n = ds.sizes["trace"]
    one_c = strings(ds, "sensor_type") == "1C"
    found: set[str] = set()
    for traces, v in leading_blocks(spec) if values else ():
        found.update(seismic_value_problems("spectrogram", v, one_c[traces]))
    problems += [m for m in SEISMIC_VALUE_PROBLEMS["spectrogram"][:1] if m in found]
    tid = strings(ds, "trace_id")
    if len(set(tid.tolist())) != n:
        problems.append("trace_id values are not unique")
    dist = ds["distance_km"].values
    baz = ds["back_azimuth_deg"].values
    if np.any(~np.isfinite(dist)) or np.any(dist < 0):
        problems.append("distance_km must be finite and >= 0")
    if np.any(~np.isfinite(baz)) or np.any(baz < 0) or np.any(baz >= 360):
        problems.append("back_azimuth_deg must lie in [0, 360)")
    s, c = ds["sin_baz"].values, ds["cos_baz"].values
    if np.any(np.abs(s**2 + c**2 - 1) > 1e-6):
        problems.append("sin_baz**2 + cos_baz**2 != 1")
    if np.any(np.abs(np.sin(np.radians(baz)) - s) > 1e-6) or np.any(
        np.abs(np.cos(np.radians(baz)) - c) > 1e-6
    ):
        problems.append("sin_baz/cos_baz disagree with back_azimuth_deg")
    st = strings(ds, "sensor_type")
    if not set(st.tolist()) <= {"3C", "1C"}:
        problems.append(f"sensor_type values {sorted(set(st.tolist()))}, expected 3C/1C")
    problems += [m for m in SEISMIC_VALUE_PROBLEMS["spectrogram"][1:] if m in found]
    problems += _cross_spectrum_problems(ds, one_c, values=values)
    split = strings(ds, "split")
    if not set(split.tolist()) <= {"train", "val", "test"}:
        problems.append(f"split values {sorted(set(split.tolist()))}, expected train/val/test")
    ev = strings(ds, "event_id")
    events, event_of = np.unique(ev, return_inverse=True)
    splits, split_of = np.unique(split, return_inverse=True)
    pairs = np.unique(event_of.ravel() * max(1, len(splits)) + split_of.ravel())  # (event, split) pairs
    multi = events[np.bincount(pairs // max(1, len(splits)), minlength=len(events)) > 1].tolist()
    if multi:
        problems.append(f"events in more than one split: {multi[:5]}")
    counts = ds.attrs.get("counts", {})
    stored = {
        "traces": n,
        "events": len(events),
        "per_split": dict(sorted(Counter(split.tolist()).items())),
    }
    problems += [
        f"attrs.counts.{key} is {counts[key]!r}, the store holds {value!r}"
        for key, value in stored.items()
        if key in counts and counts[key] != value
    ]
    try:
        rej = open_store(path, group="rejects", dask=False)
        for col in ("trace_id", "reason", "detail", "source_file"):
            if col not in rej.variables or rej[col].dims != ("reject",):
                problems.append(f"rejects/{col} missing or not along dim 'reject'")
            elif coded and col == "reason":
                problems += [f"rejects/{p}" for p in _coded_prefix(rej[col], col, SEISMIC_REJECT_REASON)]
            elif rej[col].dtype.kind not in "UTO":
                problems.append(f"rejects/{col} dtype {rej[col].dtype}, expected strings")
    except Exception as exc:
        problems.append(f"rejects subgroup unreadable: {exc}")
    return problems


def _cross_spectrum_problems(ds: xr.Dataset, one_c: np.ndarray, *, values: bool) -> list[str]:
    """The optional ``cross_spectrum``: present iff curated with ``cross_spectra``, and in range."""
    wanted = bool(ds.attrs.get("parameters", {}).get("cross_spectra", False))
    if "cross_spectrum" not in ds:
        return (
            ["parameters.cross_spectra is true but data variable 'cross_spectrum' is missing"]
            if wanted
            else []
        )
    cross = ds["cross_spectrum"]
    if cross.dims != ("trace", "pair", "freq", "time") or cross.dtype != np.float32:
        return [
            f"cross_spectrum is {cross.dtype} {cross.dims}, expected float32 ('trace', 'pair', 'freq', 'time')"
        ]
    problems = (
        [] if wanted else ["data variable 'cross_spectrum' present but parameters.cross_spectra is false"]
    )
    if strings(ds, "pair").tolist() != ["ZN", "ZE"]:
        problems.append(f"pair coordinate {strings(ds, 'pair').tolist()}, expected ['ZN', 'ZE']")
    found: set[str] = set()
    for traces, v in leading_blocks(cross) if values else ():
        found.update(seismic_value_problems("cross_spectrum", v, one_c[traces]))
    return problems + [m for m in SEISMIC_VALUE_PROBLEMS["cross_spectrum"] if m in found]


#: The value checks of the per-trace arrays, by array: the messages, in the order they are listed.
SEISMIC_VALUE_PROBLEMS = {
    "spectrogram": (
        "spectrogram holds non-finite values",
        "N/E channels of vertical-only (1C) traces are not exactly zero",
    ),
    "cross_spectrum": (
        "cross_spectrum values must be finite and within [-0.5, 0.5]",
        "cross_spectrum of vertical-only (1C) traces is not exactly zero",
    ),
}


def seismic_value_problems(name: str, block: np.ndarray, one_c: np.ndarray) -> list[str]:
    """The value problems of a block of per-trace array ``name`` (``one_c``: its 1C traces).

    The one implementation of these checks: the validator runs it on every block it reads, the
    seismic writer on every unit's arrays before they are written.
    """
    finite_msg, zero_msg = SEISMIC_VALUE_PROBLEMS.get(name, ("", ""))
    if not finite_msg:
        return []
    found = []
    bad = ~np.isfinite(block)
    if name == "cross_spectrum":
        bad |= np.abs(block) > 0.5 + 1e-6
    if bad.any():
        found.append(finite_msg)
    quiet = block[one_c][:, 1:] if name == "spectrogram" else block[one_c]
    if np.any(quiet != 0):
        found.append(zero_msg)
    return found


def _coded_prefix(var: xr.DataArray, name: str, spec: tuple[tuple[str, ...], str]) -> list[str]:
    """A 1.1 seismic coded column: valid codes of the fixed dtype whose categories start as specified."""
    prefix, dtype = spec
    problems = check_coded(var, name)
    if problems:
        return problems
    if var.dtype != np.dtype(dtype):
        problems.append(f"{name!r} codes are {var.dtype}, expected {dtype}")
    if tuple(var.attrs["categories"][: len(prefix)]) != prefix:
        problems.append(f"{name!r} categories must start with {list(prefix)}")
    return problems


VALIDATORS: dict[str, Callable[[Path], list[str]]] = {}


def _validate_hsi_path(path: Path) -> list[str]:
    ds = open_store(path, consolidated=False).load()
    try:
        rejects: xr.Dataset | None = open_store(path, group="rejects", consolidated=False).load()
    except (FileNotFoundError, KeyError, OSError):
        rejects = None
    return validate_hsi(ds, rejects)


#: Contract problems of the HSI store at a path (what ``write_atomically(validate=...)`` takes).
validate_hsi_store = _validate_hsi_path
VALIDATORS["hsi_samples"] = _validate_hsi_path
VALIDATORS[SEISMIC_KIND] = validate_seismic_store


def validate_store(path: str | Path) -> list[str]:
    """Problems with the store at ``path``, dispatched on its ``emin_kind`` attribute."""
    path = Path(path)
    require_store(path)
    attrs = open_store(path).attrs
    kind = attrs.get("emin_kind")
    if kind not in VALIDATORS:
        return [f"unknown emin_kind {kind!r}; known kinds: {sorted(VALIDATORS)}"]
    return VALIDATORS[str(kind)](path)


def check_publishable(path: str | Path) -> None:
    """Raise unless the store at ``path`` may be published: it satisfies its contract and is not empty."""
    problems = validate_store(path)
    if problems:
        raise ContractViolation(path, problems)
    ds = open_store(path)
    n = int(ds.sizes.get("sample", ds.sizes.get("trace", 0)))
    if n == 0:
        raise PublishError(
            f"{path} holds 0 samples; refusing to publish an empty dataset\n"
            "  fix: check the inputs (every point/trace was rejected: see the store's 'rejects' group)"
        )


KNOWN_KINDS = ("hsi_samples", SEISMIC_KIND)
#: The store kind (``attrs.emin_kind``) each trainer reads.
STORE_KIND = {"hsi": "hsi_samples", "seismic": SEISMIC_KIND}


def _unusable(path: Path, what: str, fix: str) -> InputError:
    return InputError(what, path=path, fix=fix)


def require_store(path: str | Path, kind: str | None = None, *, deep: bool = True) -> None:
    """Raise a clear :class:`InputError` unless ``path`` is a readable emin store (of ``kind``).

    Checks, naming the file at fault: the path is a Zarr v3 store (``zarr.json``), every group's
    and array's metadata parses and describes a usable array, the store's ``emin_kind`` is
    ``kind`` (or any known kind), and, with ``deep``, every chunk of every array decompresses
    (the error names the array and chunk). The one store check the CLI and the trainers' loaders call.
    """
    import zarr

    path = Path(path)
    fix_path = (
        "give the store path printed by `emin curate ...` (a folder ending in .zarr), or a dataset name"
    )
    if not path.exists():
        raise MissingInputError("no store at this path", path=path, fix=fix_path)
    if not path.is_dir() or not (path / "zarr.json").is_file():
        raise _unusable(path, "is not a Zarr store (no zarr.json)", fix_path)
    repub = "re-run the curation (or open another published version); the store's metadata is damaged"
    for meta in sorted(path.rglob("zarr.json")):
        try:
            doc = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise _unusable(meta, f"metadata is not valid JSON ({exc})", repub) from exc
        if not isinstance(doc, dict) or doc.get("node_type") not in ("group", "array"):
            raise _unusable(meta, "metadata is not a Zarr v3 group or array document", repub)
    attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    found = attrs.get("emin_kind") if isinstance(attrs, dict) else None
    wanted = (kind,) if kind else KNOWN_KINDS
    if found not in wanted:
        raise _unusable(
            path,
            f"is a store of kind {found!r}, not {' or '.join(repr(k) for k in wanted)}",
            f"give a {' or '.join(wanted)} store (emin datasets list shows each dataset's kind)",
        )
    try:
        root = zarr.open_group(str(path), mode="r", zarr_format=3, use_consolidated=False)
        arrays = sorted(root.arrays(), key=lambda kv: kv[0])
        for g_name, group in root.groups():
            arrays += [(f"{g_name}/{a}", arr) for a, arr in sorted(group.arrays(), key=lambda kv: kv[0])]
    except Exception as exc:
        raise _unusable(
            path, f"store metadata cannot be opened ({type(exc).__name__}: {exc})", repub
        ) from exc
    sizes: dict[tuple[str, str], int] = {}
    for name, arr in arrays:
        dims = getattr(arr.metadata, "dimension_names", None) or ()
        prefix = name.rsplit("/", 1)[0] if "/" in name else ""
        for d, n in zip(dims, arr.shape, strict=False):
            if d is not None and sizes.setdefault((prefix, d), n) != n:
                raise _unusable(
                    path / name / "zarr.json",
                    f"dimension {d!r} has length {n} here but {sizes[(prefix, d)]} in another array",
                    repub,
                )
        if not deep:
            continue
        for idx in np.ndindex(*arr.cdata_shape):
            try:
                arr.get_block_selection(idx)
            except Exception as exc:
                raise _unusable(
                    path / name,
                    f"chunk {'.'.join(map(str, idx))} of array {name!r} cannot be read "
                    f"({type(exc).__name__}: {str(exc)[:160]})",
                    "the store is corrupt: re-run the curation, or open another published version",
                ) from exc
