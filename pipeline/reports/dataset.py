"""The dataset report of one published version: one self-contained HTML page.

HSI (``hsi_samples``): the headline (version, counts, checksums, STAC), Table 1, the
modalities-per-sample histogram (Figure 5), a map of raster footprints, polygons and
sampled points (by class, rejects marked), mean ± σ spectra per class and modality with
masked bands shaded, and the fold/class balance. Seismic (``seismic_spectrograms``): the
headline, counts, a station/event map, distance and back-azimuth histograms per sensor
type, split counts and example spectrograms per sensor type.

``render_dataset_report(name)`` returns the page; ``write_dataset_report(name)`` writes it
as ``<root>/<name>/<version>/report.html`` (beside ``data.zarr`` and ``manifest.json``; it
is not part of the store, whose files the manifest lists). :func:`dataset_sections` and
:func:`dataset_figures` work on any opened store, published or not; :func:`draw_store_figure`
draws one figure from a store's path (what the flows fan out over a Dask cluster).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import xarray as xr

from pipeline.publishing.registry import open_dataset, resolve
from pipeline.publishing.versions import (
    MANIFEST,
    default_root,
    filesystem,
    fs_url,
    read_manifest,
    write_small_file,
)
from pipeline.publishing.zarr_io import open_store
from pipeline.reports import figures
from pipeline.reports.html import Section, facts_html, figure_html, page, table_html

__all__ = [
    "REPORT_FILE",
    "dataset_figures",
    "dataset_sections",
    "draw_store_figure",
    "figure_keys",
    "published_facts",
    "render_dataset_report",
    "report_path",
    "table1_rows",
    "write_dataset_report",
]

REPORT_FILE = "report.html"


def report_path(name: str, version: str = "latest", *, root: str | Path | None = None) -> str:
    """Where the report of ``name``/``version`` lives: ``<root>/<name>/<version>/report.html``."""
    fs, _ = filesystem(root or default_root())
    _, folder = resolve(name, version, root=root)
    return fs_url(fs, f"{folder}/{REPORT_FILE}")


def published_facts(name: str, version: str = "latest", *, root: str | Path | None = None) -> dict[str, Any]:
    """The headline of a published version: ids, paths, counts, checksums, STAC (plain data)."""
    fs, base = filesystem(root or default_root())
    vid, folder = resolve(name, version, root=root)
    raw = fs.cat_file(f"{folder}/{MANIFEST}")
    manifest = read_manifest(name, vid, root=root)
    counts = manifest.get("counts", {})
    sizes = manifest.get("sizes", {})
    kind = manifest.get("emin_kind")
    if kind == "seismic_spectrograms":
        inner = counts.get("counts", {})
        n = sizes.get("/", {}).get("trace", inner.get("traces"))
        rejected = sizes.get("rejects", {}).get("reject", inner.get("rejects", 0))
        unit = "traces"
    else:
        n = counts.get("n_samples", sizes.get("/", {}).get("sample"))
        rejected = counts.get("n_rejected", sizes.get("rejects", {}).get("reject", 0))
        unit = "samples"
    return {
        "dataset": name,
        "version": vid,
        "kind": kind,
        "path": fs_url(fs, folder),
        "store": fs_url(fs, f"{folder}/data.zarr"),
        unit: n,
        "rejected": rejected,
        "content_hash": manifest.get("content_hash"),
        "manifest_sha256": "sha256:" + hashlib.sha256(raw).hexdigest(),
        "stac_collection": fs_url(fs, f"{base}/{name}/stac/collection.json"),
        "stac_item": fs_url(fs, f"{base}/{name}/stac/{vid}.json"),
        "report": fs_url(fs, f"{folder}/{REPORT_FILE}"),
        "created": manifest.get("created"),
        "code_version": manifest.get("code_version"),
        "total_bytes": manifest.get("total_bytes"),
    }


def table1_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    """Table 1 (class × modality sample counts, with totals) as dict rows."""
    t = dict(ds.attrs.get("table1_counts", {}))
    mods = [str(m) for m in ds.attrs.get("modalities", [])] or sorted({m for r in t.values() for m in r})
    counts = {str(c): {m: int(row.get(m, 0)) for m in mods} for c, row in t.items()}
    rows: list[dict[str, Any]] = [{"class": c, **row} for c, row in counts.items()]
    if rows:
        rows.append({"class": "total", **{m: sum(row[m] for row in counts.values()) for m in mods}})
    return rows


def _figure_spec(ds: xr.Dataset) -> dict[str, tuple[str, Any]]:
    seismic = ds.attrs.get("emin_kind") == "seismic_spectrograms"
    return figures.SEISMIC_FIGURES if seismic else figures.HSI_FIGURES


def _draw(ds: xr.Dataset, rejects: xr.Dataset | None, key: str) -> tuple[str, bytes]:
    title, draw = _figure_spec(ds)[key]
    return title, draw(ds, rejects) if key == "sample_map" else draw(ds)


def dataset_figures(ds: xr.Dataset, rejects: xr.Dataset | None = None) -> dict[str, tuple[str, bytes]]:
    """Every figure of the store's kind: key → (title, PNG bytes)."""
    return {key: _draw(ds, rejects, key) for key in _figure_spec(ds)}


def figure_keys(store: str | Path) -> list[str]:
    """The keys of :func:`dataset_figures` for the store at ``store``, in report order."""
    return list(_figure_spec(open_store(store)))


def draw_store_figure(store: str | Path, key: str) -> tuple[str, bytes]:
    """One figure of the store at ``store``, read here: a Dask worker draws it where it runs.

    Opened without Dask: on a worker, Dask-backed arrays would be computed as tasks of the
    cluster, each figure seceding and sending its reads through the scheduler.
    """
    ds = open_store(store, dask=False)
    rejects = open_store(store, group="rejects", dask=False).load() if key == "sample_map" else None
    return _draw(ds, rejects, key)


def _hsi_sections(ds: xr.Dataset, figs: dict[str, tuple[str, bytes]]) -> list[Section]:
    missing = dict(ds.attrs.get("modality_percent_missing", {}))
    per_mod = [
        {"modality": m, "sensor": dict(ds.attrs.get("sensor_types", {})).get(m, ""),
         "samples present": int(dict(ds.attrs.get("modality_totals", {})).get(m, 0)),
         "% missing": float(missing.get(m, 0.0))}
        for m in ds.attrs.get("modalities", [])
    ]  # fmt: skip
    return [
        Section(
            "Table 1: samples per class and modality",
            table_html(table1_rows(ds), table_id="table1"),
            anchor="table-1",
        ),
        Section("Modalities", table_html(per_mod), anchor="modalities"),
        *[Section(title, figure_html(png, title), anchor=key) for key, (title, png) in figs.items()],
    ]


def _seismic_sections(ds: xr.Dataset, figs: dict[str, tuple[str, bytes]]) -> list[Section]:
    counts = dict(ds.attrs.get("counts", {}))
    rows = [
        {"sensor type / split": k, "traces": v}
        for k, v in dict(counts.get("per_sensor_type_split", {})).items()
    ]
    rej = [{"reason": k, "count": v} for k, v in dict(counts.get("rejects_per_reason", {})).items()]
    summary = {
        "traces": counts.get("traces"),
        "events": counts.get("events"),
        "rejects": counts.get("rejects"),
    }
    return [
        Section(
            "Counts",
            facts_html(summary)
            + table_html(rows, table_id="counts")
            + (table_html(rej, caption="rejects per reason") if rej else ""),
            anchor="counts",
        ),
        *[Section(title, figure_html(png, title), anchor=key) for key, (title, png) in figs.items()],
    ]


def dataset_sections(
    ds: xr.Dataset,
    rejects: xr.Dataset | None = None,
    *,
    facts: dict[str, Any] | None = None,
    figs: dict[str, tuple[str, bytes]] | None = None,
) -> list[Section]:
    """The report's sections for an opened store (``facts``: the headline of a published version;
    ``figs``: :func:`dataset_figures` already drawn)."""
    figs = dataset_figures(ds, rejects) if figs is None else figs
    head = [Section("Dataset", facts_html(facts), anchor="headline")] if facts else []
    body = (
        _seismic_sections(ds, figs)
        if ds.attrs.get("emin_kind") == "seismic_spectrograms"
        else _hsi_sections(ds, figs)
    )
    params = dict(ds.attrs.get("parameters", {}))
    tail = [Section("Curation parameters", facts_html(params), anchor="parameters")] if params else []
    return [*head, *body, *tail]


def render_dataset_report(
    name: str,
    version: str = "latest",
    *,
    root: str | Path | None = None,
    figs: dict[str, tuple[str, bytes]] | None = None,
) -> str:
    """The self-contained HTML report of one published version (``figs``: figures already drawn)."""
    facts = published_facts(name, version, root=root)
    ds = open_dataset(name, facts["version"], root=root)
    try:
        rejects: xr.Dataset | None = open_dataset(name, facts["version"], root=root, group="rejects")
    except Exception:
        rejects = None
    # lazy: the sections read attrs, each figure only the arrays it draws
    sections = dataset_sections(ds, None if rejects is None else rejects.load(), facts=facts, figs=figs)
    return page(
        f"{name} {facts['version']}",
        sections,
        subtitle=f"{facts['kind']} dataset report, published {facts['created']}, code {facts['code_version']}",
    )


def write_dataset_report(
    name: str,
    version: str = "latest",
    *,
    root: str | Path | None = None,
    out: str | Path | None = None,
    figs: dict[str, tuple[str, bytes]] | None = None,
) -> str:
    """Render the report and write it to ``out`` (default :func:`report_path`); returns where."""
    html = render_dataset_report(name, version, root=root, figs=figs)
    target = str(out) if out is not None else report_path(name, version, root=root)
    fs, path = filesystem(target)
    write_small_file(fs, path, html.encode("utf-8"))
    return fs_url(fs, path)
