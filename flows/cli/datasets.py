"""``emin publish gc``, ``emin datasets list|show|report``, ``emin export seisbench``: wired by flows/cli.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.common import command_group

RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root", help="dataset root (folder or fsspec URL); default $EMIN_DATA_ROOT or data/published"
    ),
]
_out = Console(soft_wrap=True)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def register(app: typer.Typer) -> None:
    """Add the ``publish``, ``datasets`` and ``export`` command groups to ``app``.

    Long on purpose: it only holds the typer command functions (each short), defined in one
    closure so the sub-app stays local to this module.
    """
    publish_app = command_group("Maintain the dataset root (versioned, immutable datasets).")
    datasets_app = command_group("Find and inspect published datasets.")
    export_app = command_group("Export published datasets to other tools' formats.")
    app.add_typer(publish_app, name="publish")
    app.add_typer(datasets_app, name="datasets")
    app.add_typer(export_app, name="export")

    @publish_app.command("gc")
    def publish_gc(
        root: RootOpt = None,
        min_age: Annotated[
            float, typer.Option(help="only remove partial writes older than this (s)")
        ] = 3600.0,
        dry_run: Annotated[bool, typer.Option(help="list what would be removed")] = False,
    ) -> None:
        """Remove partial writes left by crashed runs (complete versions are never touched) and stop
        the helper processes (Prefect's temporary server, Dask workers) a killed run left running."""
        from pipeline.orphans import find_orphans, stop_orphans
        from pipeline.publishing.versions import gc

        removed = gc(root=root, min_age_s=min_age, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        for p in removed:
            _out.print(f"{verb} {p}")
        _out.print(f"{verb} {len(removed)} partial write(s)")
        orphans = find_orphans()
        stopped = orphans if dry_run else stop_orphans(orphans)
        verb = "would stop" if dry_run else "stopped"
        for o in stopped:
            _out.print(f"{verb} process {o.pid} left by emin process {o.owner_pid}: {o.command[:120]}")
        _out.print(f"{verb} {len(stopped)} orphaned helper process(es)")

    @datasets_app.command("list")
    def datasets_list(root: RootOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Every published dataset: kind, versions, latest, size."""
        from pipeline.publishing.registry import list_datasets

        infos = list_datasets(root)
        if as_json:
            _out.print_json(json.dumps([
                {"name": i.name, "kind": i.kind, "versions": i.versions, "latest": i.latest} for i in infos
            ]))  # fmt: skip
            return
        table = Table("name", "kind", "versions", "latest", "size (latest)")
        for i in infos:
            m = i.manifests[i.latest or i.versions[-1]]
            table.add_row(
                i.name, str(i.kind), str(len(i.versions)), str(i.latest), _size(int(m["total_bytes"]))
            )
        _out.print(table if infos else "no datasets under this root")

    @datasets_app.command("show")
    def datasets_show(
        name: str,
        version: Annotated[str, typer.Option(help="version id or 'latest'")] = "latest",
        root: RootOpt = None,
        verify: Annotated[bool, typer.Option(help="recompute every array checksum")] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Versions, sizes, counts (Table 1) and provenance of one dataset."""
        from pipeline.publishing.registry import describe, table1, verify_dataset

        info = describe(name, version, root=root)
        if verify:
            verify_dataset(name, info["version"], root=root)
        if as_json:
            _out.print_json(json.dumps(info, default=str))
            return
        m: dict[str, Any] = info["manifest"]
        _out.print(
            f"[bold]{name}[/] {info['version']} ({m.get('emin_kind')}, schema {m.get('schema_version')})"
        )
        _out.print(f"path: {info['path']}")
        _out.print(
            f"created: {m['created']}  code: {m.get('code_version')}  size: {_size(int(m['total_bytes']))}"
        )
        _out.print(
            "versions: "
            + ", ".join(f"{v}{' (latest)' if v == info['latest'] else ''}" for v in info["versions"])
        )
        for group, sizes in m["sizes"].items():
            _out.print(f"sizes {group}: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
        t1 = table1(m)
        if t1:
            mods = sorted({k for row in t1.values() for k in row})
            table = Table("class", *mods, title="Table 1: samples per class and modality")
            for c, row in t1.items():
                table.add_row(c, *(str(row.get(k, 0)) for k in mods))
            _out.print(table)
        other = {k: v for k, v in m.get("counts", {}).items() if k != "table1_counts"}
        if other:
            _out.print("counts: " + json.dumps(other, default=str))
        _out.print("inputs:")
        for k, v in m.get("input_checksums", {}).items():
            _out.print(f"  {k}: {v}")
        _out.print("parameters: " + json.dumps(m.get("parameters", {}), default=str))
        if verify:
            _out.print("[green]verified: every array matches its manifest checksum[/]")

    @datasets_app.command("report")
    def datasets_report(
        name: str,
        version: Annotated[str, typer.Option(help="version id or 'latest'")] = "latest",
        root: RootOpt = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="write here instead of <root>/<name>/<version>/report.html"),
        ] = None,
        open_browser: Annotated[
            bool, typer.Option("--open", help="open the report in a web browser")
        ] = False,
    ) -> None:
        """Write the self-contained HTML report of one version (Table 1, figures, map) and print its path."""
        from pipeline.reports import write_dataset_report

        written = write_dataset_report(name, version, root=root, out=out)
        _out.print(written)
        if open_browser:
            import webbrowser

            target = written if "://" in written else Path(written).resolve().as_uri()
            if not webbrowser.open(target):
                _out.print(f"[yellow]no browser available[/]: open {target}")

    @export_app.command("seisbench")
    def export_seisbench_cmd(
        name: str,
        out: Annotated[Path, typer.Option("--out", help="folder for metadata.csv + waveforms.hdf5")],
        version: Annotated[str, typer.Option(help="version id or 'latest'")] = "latest",
        root: RootOpt = None,
    ) -> None:
        """Write a seismic dataset's windowed waveforms in SeisBench's format."""
        from pipeline.publishing.export_seisbench import export_seisbench
        from pipeline.publishing.registry import open_dataset

        ds = open_dataset(name, version, root=root)
        result = export_seisbench(ds, out=out)
        _out.print(f"wrote {result.n_traces} traces to {result.metadata} and {result.waveforms}")
