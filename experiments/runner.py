"""Run an experiment: every arm × grid cell × seed is a run folder; resumable; results as a table.

A run is keyed by (resolved config, dataset version, code version): a re-run of the same
experiment finds finished runs by key and trains only the missing or failed ones. A run
trains into ``runs/<name>.tmp-*`` and is renamed into place when its metrics are written,
so a killed experiment leaves no half run that looks finished.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.report import write_report
from experiments.result import Dataset, ExperimentResult, is_member
from experiments.spec import ZERO, BudgetName, ExperimentSpec, RunPlan
from experiments.stats import PairedComparison, holm, paired_comparison
from experiments.tuning import TrialMap, expand_members, serial_trials
from pipeline.errors import InputError
from pipeline.publishing.contract import STORE_KIND
from pipeline.version import code_version
from schemas.vae import VAETrainConfig

__all__ = [
    "RunOutcome",
    "compare",
    "evaluate_findings",
    "execute_run",
    "flatten_metrics",
    "fuse_members",
    "layout",
    "prepare",
    "resolve_dataset",
    "run_experiment",
    "run_key",
]

DONE = "metrics.json"


def resolve_dataset(dataset: str, kind: str, *, root: str | None = None) -> Dataset:
    """A published name (latest version) or a store path, checked to be a store of ``kind``."""
    from pipeline.publishing.registry import resolve
    from pipeline.publishing.versions import default_root
    from pipeline.publishing.zarr_io import open_store

    if Path(dataset).exists():
        store = str(Path(dataset).resolve())
        manifest = Path(store).parent / "manifest.json"
        version = json.loads(manifest.read_text())["version"] if manifest.exists() else _store_digest(store)
    else:
        version, folder = resolve(dataset, root=root or default_root())
        store = f"{folder}/data.zarr"
    try:
        attrs = dict(open_store(store).attrs)
    except Exception as exc:  # any zarr/xarray failure: not a store we can read
        raise InputError(
            f"cannot open as a Zarr store: {exc}", path=store, fix="give a curated store"
        ) from exc
    found = attrs.get("emin_kind")
    if found != STORE_KIND[kind]:
        raise InputError(
            f"a {kind} experiment needs a {STORE_KIND[kind]!r} store, this one is {found!r}",
            path=store,
            fix=f"give a {kind} dataset (emin datasets list)",
        )
    return Dataset(store=store, version=version, attrs=attrs)


def _store_digest(store: str) -> str:
    """Version of an unpublished store: digest of its metadata documents (content ids live there)."""
    h = hashlib.sha256()
    for p in sorted(Path(store).rglob("zarr.json")):
        h.update(p.read_bytes())
    return "path-" + h.hexdigest()[:12]


def run_key(plan: RunPlan, dataset_version: str) -> str:
    """Key of one run: its resolved config (not where it is written), the data and the code."""
    cfg = plan.config.model_dump(mode="json", exclude={"out_dir", "store"})
    payload = json.dumps({"config": cfg, "data": dataset_version, "code": code_version()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _cell_label(cell: dict[str, Any]) -> str:
    return "-".join(f"{k}{v}" for k, v in cell.items()) or "all"


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of metrics.json as ``a.b.c`` columns (lists and text are left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten_metrics(value, f"{name}.")
        elif isinstance(value, int | float):  # bool is an int
            out[name] = float(value)
    return out


@dataclass(frozen=True)
class RunOutcome:
    """One finished (or failed) run, as a row of results.csv."""

    arm: str
    cell: dict[str, Any]
    seed: int
    key: str
    run_dir: str
    status: str
    metrics: dict[str, float]
    error: str = ""
    member: str = ""  # the modality of a per-modality arm's member run ("" for an arm's own row)

    def row(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "member": self.member,
            **{f"factor.{k}": v for k, v in self.cell.items()},
            "seed": self.seed,
            "key": self.key,
            "status": self.status,
            "run_dir": self.run_dir,
            "error": self.error,
            **self.metrics,
        }


def execute_run(plan: RunPlan, run_dir: str, key: str, device: str) -> RunOutcome:
    """Train one run into a temporary sibling, rename it into place; errors become a failed row."""
    final = Path(run_dir)
    if (final / DONE).exists():
        return _outcome(plan, final, key, "cached")
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{time.time_ns()}")
    config = plan.config.model_copy(update={"out_dir": str(tmp), "device": device})
    try:
        if isinstance(plan.config, VAETrainConfig):
            from models.vae import train_vae

            train_vae(config)  # type: ignore[arg-type]
            _vae_headline(tmp / DONE)
        elif plan.config.__class__.__name__ == "HSITrainConfig":
            from models.training.hsi import train_hsi

            train_hsi(config)  # type: ignore[arg-type]
        else:
            from models.training.seismic import train_seismic

            train_seismic(config)  # type: ignore[arg-type]
        if final.exists():  # a stale failed attempt of ours: replaced only by a finished run
            shutil.rmtree(final)
        os.rename(tmp, final)
    except Exception as exc:  # one failed run must not stop the experiment; it is reported
        shutil.rmtree(tmp, ignore_errors=True)
        return RunOutcome(
            plan.arm, plan.cell, plan.seed, key, str(final), "failed", {}, repr(exc)[:500], plan.member
        )
    return _outcome(plan, final, key, "trained")


def _vae_headline(metrics_file: Path) -> None:
    """Give a VAE run the classifiers' headline names, so arms compare on one metric.

    ``test.fused.macro_error`` of a VAE run is its few-label linear probe on the fused latent
    (``linear_probe.macro_accuracy``), the unsupervised counterpart of an EMIN-SSL arm at the
    same label budget; the clustering accuracy stays under its own name.
    """
    m = json.loads(metrics_file.read_text())
    probe = m.get("linear_probe", {})
    acc = float(probe.get("macro_accuracy", math.nan))
    m.setdefault("test", {})["fused"] = {"macro_accuracy": acc, "macro_error": 1.0 - acc}
    metrics_file.write_text(json.dumps(m, indent=2) + "\n")


def _outcome(plan: RunPlan, folder: Path, key: str, status: str) -> RunOutcome:
    metrics = json.loads((folder / DONE).read_text())
    return RunOutcome(
        plan.arm, plan.cell, plan.seed, key, str(folder), status, flatten_metrics(metrics), member=plan.member
    )


def fuse_members(outcomes: Sequence[RunOutcome], runs: Path) -> list[RunOutcome]:
    """The outcomes plus, per arm, cell and seed of the per-modality arms, the row of its
    members fused post hoc by mean softmax (:func:`models.fusion.fuse_runs`, written to a
    ``…-fused-<key>`` folder): ``test.fused.*`` and every member's ``test.<modality>.*``."""
    from models.fusion import fuse_runs

    groups: dict[tuple[str, str, int], list[RunOutcome]] = {}
    for o in outcomes:
        if o.member:
            groups.setdefault((o.arm, _cell_label(o.cell), o.seed), []).append(o)
    fused: list[RunOutcome] = []
    for (arm, cell, seed), members in groups.items():
        key = hashlib.sha256(" ".join(sorted(m.key for m in members)).encode()).hexdigest()[:16]
        folder = runs / f"{arm}-{cell}-s{seed}-fused-{key}"
        head = members[0]
        failed = [m for m in members if m.status == "failed"]
        if failed:
            error = f"member {failed[0].member} failed: {failed[0].error}"
            fused.append(RunOutcome(arm, head.cell, seed, key, str(folder), "failed", {}, error[:500]))
            continue
        fm = fuse_runs([m.run_dir for m in members], folder)
        metrics = {f"test.fused.{k}": float(v) for k, v in fm["fused"].items()}
        for m in members:
            metrics |= {k: v for k, v in m.metrics.items() if k.startswith(f"test.{m.member}.")}
        metrics |= {
            "n_test": float(fm["n_test"]),
            "wall_time_s": sum(m.metrics.get("wall_time_s", 0.0) for m in members),
        }
        status = "trained" if any(m.status == "trained" for m in members) else "cached"
        fused.append(RunOutcome(arm, head.cell, seed, key, str(folder), status, metrics))
    return [*outcomes, *fused]


def prepare(
    spec: ExperimentSpec, budget: BudgetName, *, store: str | None, seeds: int | None, out_root: str | Path
) -> tuple[Dataset, Path, list[RunPlan]]:
    """Check the spec against its store and lay out the experiment folder; returns the runs' plans."""
    data = resolve_dataset(store or spec.dataset, spec.kind)
    plans = spec.plan(budget, store=data.store, seeds=seeds)
    stored = set(data.attrs.get("modalities", []))
    for arm in spec.per_modality_arms():
        unknown = sorted(set(spec.arms[arm].get("modalities") or []) - stored)
        if unknown:
            raise InputError(
                f"experiment {spec.name}, arm {arm!r}: modalities {unknown} not in the store ({sorted(stored)})",
                path=data.store,
                fix="name modalities of the store, or leave modalities out (every modality)",
            )
    ident = hashlib.sha256(
        json.dumps(
            {"spec": spec.model_dump(mode="json"), "budget": budget, "seeds": sorted({p.seed for p in plans}),
             "data": data.version}, sort_keys=True,
        ).encode()
    ).hexdigest()[:12]  # fmt: skip
    folder = Path(out_root) / spec.name / f"{budget}-{ident}"
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    for stale in (folder / "runs").glob("*.tmp-*"):  # killed runs of this experiment (ours by name)
        shutil.rmtree(stale, ignore_errors=True)
    (folder / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    return data, folder, plans


def layout(plans: Sequence[RunPlan], folder: Path, dataset_version: str) -> list[tuple[RunPlan, str, str]]:
    """Every run's (plan, run folder, key)."""
    jobs = []
    for plan in plans:
        key = run_key(plan, dataset_version)
        member = f"{plan.member}-" if plan.member else ""
        name = f"{plan.arm}-{member}{_cell_label(plan.cell)}-s{plan.seed}-{key}"
        jobs.append((plan, str(folder / "runs" / name), key))
    return jobs


MapFn = Callable[[Callable[..., RunOutcome], Sequence[tuple[RunPlan, str, str]]], list[RunOutcome]]


def serial_map(fn: Callable[..., RunOutcome], jobs: Sequence[tuple[RunPlan, str, str]]) -> list[RunOutcome]:
    """Run the jobs one after another in this process."""
    return [fn(*job) for job in jobs]


def _pairs(
    results: pd.DataFrame, a: str, b: str
) -> Iterable[tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]]:
    """(cell, rows of a, rows of b) for every cell of ``b`` whose shared factors ``a`` has too."""
    factors = [c for c in results.columns if c.startswith("factor.")]
    ra, rb = results[results.arm == a], results[results.arm == b]
    fa = [f for f in factors if ra[f].notna().any()] if len(ra) else []
    fb = [f for f in factors if rb[f].notna().any()] if len(rb) else []
    group_by = sorted(set(fa) | set(fb))
    cells = results[group_by].drop_duplicates().to_dict("records") if group_by else [{}]
    for cell in cells:
        sel_a = ra
        sel_b = rb
        for f, v in cell.items():
            if f in fa:
                sel_a = sel_a[sel_a[f] == v]
            if f in fb:
                sel_b = sel_b[sel_b[f] == v]
        if len(sel_a) and len(sel_b):
            yield {str(k).removeprefix("factor."): v for k, v in cell.items()}, sel_a, sel_b


def _expand(patterns: Sequence[str], columns: Iterable[str], pa: str, pb: str, where: str) -> list[str]:
    """Metric names matching ``patterns`` (globs) that both prefixes find; none is an error."""
    cols = set(columns)
    found: list[str] = []
    for pat in patterns:
        names = sorted(
            c.removeprefix(pa) for c in cols
            if c.startswith(pa) and fnmatch.fnmatchcase(c.removeprefix(pa), pat) and pb + c.removeprefix(pa) in cols
        )  # fmt: skip
        if not names:
            known = sorted(k for k in cols if "." in k)[:40]
            raise InputError(
                f"comparison {where}: no metric {pa}{pat!r} / {pb}{pat!r} in the results",
                fix=f"use one of: {', '.join(known)} ...",
            )
        found += [n for n in names if n not in found]
    return found


def compare(
    spec: ExperimentSpec, results: pd.DataFrame
) -> tuple[list[PairedComparison], list[dict[str, Any]], list[tuple[list[float], list[float]]]]:
    """Every comparison × metric × cell, paired by seed, Holm-corrected across the experiment.

    Returns the comparisons, their grid cells and the paired values (a, b) each was made from.
    """
    ok = results[(results.status != "failed") & ~is_member(results)]
    comps: list[PairedComparison] = []
    cells: list[dict[str, Any]] = []
    values: list[tuple[list[float], list[float]]] = []
    for c in spec.comparisons:
        if c.a == ZERO:
            zero = ok[ok.arm == c.b].copy()
            zero.loc[:, [col for col in zero.columns if "." in col and not col.startswith("factor.")]] = 0.0
            ok = pd.concat([ok, zero.assign(arm=ZERO)], ignore_index=True)
        for cell, ra, rb in _pairs(ok, c.a, c.b):
            seeds = sorted(set(ra.seed) & set(rb.seed))
            for metric in _expand(c.metrics, ok.columns, c.a_prefix, c.b_prefix, f"{c.a} vs {c.b}"):
                va = ra.set_index("seed").loc[seeds, c.a_prefix + metric].tolist()
                vb = rb.set_index("seed").loc[seeds, c.b_prefix + metric].tolist()
                label_a = f"{c.a}@{c.a_prefix.rstrip('.')}" if c.a_prefix else c.a
                label_b = f"{c.b}@{c.b_prefix.rstrip('.')}" if c.b_prefix else c.b
                comps.append(paired_comparison(metric, label_a, va, label_b, vb))
                cells.append(cell)
                values.append((va, vb))
    by_t = holm([x.p_ttest for x in comps])
    by_w = holm([x.p_wilcoxon for x in comps])
    comps = [
        PairedComparison(**{**x.__dict__, "p_holm": pt, "p_holm_wilcoxon": pw})
        for x, pt, pw in zip(comps, by_t, by_w, strict=True)
    ]
    return comps, cells, values


def evaluate_findings(
    spec: ExperimentSpec, comps: list[PairedComparison], cells: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each of the report's findings: holds / does not hold / inconclusive, with the numbers."""
    out = []
    for f in spec.findings:
        hits = [
            (c, cell) for c, cell in zip(comps, cells, strict=True)
            if c.arm_a == f.a and c.arm_b == f.b and c.metric == f.metric
            and all(str(cell.get(k)) == str(v) for k, v in f.cell.items())
        ]  # fmt: skip
        verdicts = [_verdict(f.expect, c) for c, _ in hits]
        if not hits:
            verdict = "inconclusive"
        elif all(v == verdicts[0] for v in verdicts):
            verdict = verdicts[0]
        else:
            verdict = "mixed: " + ", ".join(
                f"{_cell_label(cell)} {v}" for (_, cell), v in zip(hits, verdicts, strict=True)
            )
        out.append({
            "claim": f.claim, "report_says": f.report_says, "metric": f.metric, "a": f.a, "b": f.b,
            "verdict": verdict, "evidence": [c.sentence() + (f" ({_cell_label(cell)})" if cell else "") for c, cell in hits],
        })  # fmt: skip
    return out


def _verdict(expect: str, c: PairedComparison) -> str:
    if c.n_seeds < 2 or math.isnan(c.mean_diff):
        return "inconclusive"
    if expect == "equal":  # no evidence of a difference, and the interval does not exclude one
        if c.significant:
            return "does not hold"
        return "inconclusive" if c.ci_excludes_zero else "holds"
    lower = c.mean_diff < 0
    if not c.significant:
        return "inconclusive"
    return "holds" if lower == (expect == "b_lower") else "does not hold"


def run_experiment(
    spec: ExperimentSpec,
    *,
    budget: BudgetName = "demo",
    store: str | None = None,
    seeds: int | None = None,
    out_root: str | Path = "experiments_out",
    device: str = "auto",
    map_fn: MapFn = serial_map,
    trial_map: TrialMap = serial_trials,
    trial_parallel: int = 1,
) -> ExperimentResult:
    """Run (or resume) ``spec`` at ``budget``; write results.csv, comparisons.csv and the report.

    Per-modality arms are tuned first when the budget says so (``trial_map`` trains groups of
    ``trial_parallel`` trials; :mod:`experiments.tuning`), their members fused after the runs.
    """
    start = time.perf_counter()
    data, folder, plans = prepare(spec, budget, store=store, seeds=seeds, out_root=out_root)
    plans, tuned = expand_members(
        plans, spec.per_modality_arms(), spec.budget(budget).tuning, data, folder / "tuning",
        device=device, trial_map=trial_map, parallel=trial_parallel,
    )  # fmt: skip
    if tuned:
        pd.DataFrame([t.row() for t in tuned]).to_csv(folder / "tuning.csv", index=False)
    jobs = layout(plans, folder, data.version)
    outcomes = map_fn(lambda plan, run_dir, key: execute_run(plan, run_dir, key, device), jobs)
    outcomes = fuse_members(outcomes, folder / "runs")
    results = pd.DataFrame([o.row() for o in outcomes])
    results.to_csv(folder / "results.csv", index=False)
    failed = results[results.status == "failed"]
    if len(failed) == len(results):
        raise InputError(
            f"every run of {spec.name} failed; the first: {failed.error.iloc[0]}",
            path=folder / "results.csv",
            fix="read the error column of results.csv, fix the spec or the store and re-run",
        )
    comps, cells, values = compare(spec, results)
    rows = [
        {**c.as_row(), **{f"cell.{k}": v for k, v in cell.items()}}
        for c, cell in zip(comps, cells, strict=True)
    ]
    columns = [*PairedComparison.__dataclass_fields__, "significant", "ci_excludes_zero"]
    pd.DataFrame(rows, columns=None if rows else columns).to_csv(folder / "comparisons.csv", index=False)
    findings = evaluate_findings(spec, comps, cells)
    pd.DataFrame(
        [{**f, "evidence": " | ".join(f["evidence"])} for f in findings],
        columns=["claim", "report_says", "metric", "a", "b", "verdict", "evidence"],
    ).to_csv(folder / "findings.csv", index=False)
    import torch

    used = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    result = ExperimentResult(
        spec, budget, folder, data, results, comps, cells, values, findings,
        wall_time_s=time.perf_counter() - start, device=f"{used} ({platform.processor() or platform.machine()})",
        tuning=[t.row() for t in tuned],
    )  # fmt: skip
    write_report(result)
    return result
