"""Prefect flow ``experiment``: one of the report's experiments (or any spec) on a published dataset.

Every run (arm × grid cell × seed) is a ``train-run`` task on the run's task runner: threads,
a local Dask cluster (``workers >= 2``) or an existing cluster (``cluster``); with ``gpu`` the
tasks ask Dask for a ``GPU`` worker resource. The per-modality tuning of a per-modality arm
(hsi-1) runs its trials as the sweep flow's ``train-trials`` tasks, ``workers`` groups at
once. Finished runs are found by key and not retrained, so re-running a killed experiment
trains only what is missing. Artifacts: the verdict table as markdown, the comparisons as a
table, and the report's path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from experiments.result import ExperimentResult
from experiments.runner import MapFn, RunOutcome, execute_run, run_experiment
from experiments.spec import RunPlan, load_spec
from experiments.tuning import TrialMap
from flows.runners import gpu_resources, gpu_task_options, make_task_runner
from flows.sweep import train_trials_task
from models.sweep import TrialScore
from schemas.training import HSITrainConfig


@task(name="train-run", cache_policy=NO_CACHE, task_run_name="{plan.label}")
def train_run_task(plan: RunPlan, run_dir: str, key: str, device: str) -> RunOutcome:
    """Train one run of the experiment (or find it finished)."""
    return execute_run(plan, run_dir, key, device)


def _task_map(gpu: bool, parallel: bool) -> MapFn:
    """Fan the runs out as Prefect tasks: submitted to the Dask runner when ``parallel``, else
    one task after another in this process (a thread pool would train every run at once,
    fighting over the cores and sharing matplotlib, which is not thread-safe)."""

    def run(_: Callable[..., RunOutcome], jobs: Sequence[tuple[RunPlan, str, str]]) -> list[RunOutcome]:
        runner = train_run_task.with_options(**gpu_task_options()) if gpu else train_run_task
        device = "cuda" if gpu else "auto"
        if not parallel:
            return [runner(plan, run_dir, key, device) for plan, run_dir, key in jobs]
        with gpu_resources() if gpu else contextlib.nullcontext():
            futures = [runner.submit(plan, run_dir, key, device) for plan, run_dir, key in jobs]
        return [f.result() for f in futures]

    return run


def _trial_map(gpu: bool) -> TrialMap:
    """Tuning trials as the sweep flow's ``train-trials`` tasks (:func:`flows.sweep.train_trials_task`),
    each group submitted to the run's task runner; a group that raised fails its trials."""

    def run(groups: Sequence[list[HSITrainConfig]], cv_folds: int) -> list[list[TrialScore] | BaseException]:
        runner = train_trials_task.with_options(**gpu_task_options()) if gpu else train_trials_task
        with gpu_resources() if gpu else contextlib.nullcontext():
            futures = [runner.submit(configs, cv_folds, False) for configs in groups]
        out: list[list[TrialScore] | BaseException] = []
        for f in futures:
            try:
                out.append(f.result())
            except Exception as exc:  # as in the sweep flow: the trials FAIL, the study goes on
                out.append(exc)
        return out

    return run


@flow(name="experiment", log_prints=True, flow_run_name="experiment-{name}-{budget}")
def experiment_flow(
    name: str = Field("hsi-2", description="preset name (emin experiment list) or a spec YAML path"),
    budget: Literal["smoke", "demo", "report"] = Field(
        "demo", description="smoke (CI) / demo (minutes) / report"
    ),
    store: str | None = Field(None, description="published dataset name or store path (default: the spec's)"),
    seeds: int | None = Field(None, ge=1, description="number of seeds (default: the budget's)"),
    out_root: str = Field("experiments_out", description="folder of experiment results"),
    workers: int = Field(1, ge=1, description="Dask workers (>=2: a local cluster)"),
    cluster: str | None = Field(None, description="existing Dask scheduler address"),
    gpu: bool = Field(False, description="runs ask for a GPU worker resource"),
) -> dict[str, Any]:
    """Run (or resume) an experiment and publish its verdict table and report as artifacts.

    Args:
        name: preset name (``emin experiment list``) or a spec YAML path.
        budget: ``smoke`` (CI), ``demo`` (minutes on a laptop CPU) or ``report`` (the report's epochs).
        store: published dataset name or store path; default: the spec's dataset.
        seeds: number of seeds; default: the budget's.
        out_root: folder of experiment results.
        workers: Dask workers for the runs (>= 2: a local cluster).
        cluster: address of an existing Dask scheduler.
        gpu: runs ask Dask for a ``GPU`` worker resource.
    """
    spec = load_spec(name)
    runner = make_task_runner(cluster, workers)
    parallel = cluster is not None or workers >= 2

    def runs() -> ExperimentResult:
        return run_experiment(
            spec,
            budget=budget,
            store=store,
            seeds=seeds,
            out_root=out_root,
            map_fn=_task_map(gpu, parallel=parallel),
            trial_map=_trial_map(gpu),
            trial_parallel=workers if parallel else 1,
        )

    result = flow(name="experiment-runs", task_runner=runner)(runs)()
    from experiments.report import verdict_table

    table = verdict_table(result)
    findings = "\n".join(f"- **{f['verdict']}**: {f['claim']}" for f in result.findings)
    md = (
        f"# {spec.name} ({budget})\n\n{spec.title}\n\nReport: `{result.folder / 'report.html'}`\n\n"
        f"## Findings\n\n{findings}\n\n## Sentences\n\n"
        + "\n".join(f"- {c.sentence()}" for c in result.comparisons)
    )
    create_markdown_artifact(
        key=f"experiment-{spec.name}", markdown=md, description=f"experiment {spec.name} verdicts"
    )
    create_table_artifact(
        key=f"experiment-{spec.name}-comparisons",
        table=[{str(k): v for k, v in r.items()} for r in table.astype(str).to_dict("records")],
        description=f"experiment {spec.name}: paired comparisons",
    )
    get_run_logger().info("experiment %s: report %s", spec.name, result.folder / "report.html")
    return {
        "folder": str(result.folder),
        "report": str(result.folder / "report.html"),
        "findings": result.findings,
    }
