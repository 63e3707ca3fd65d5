"""Prefect flows ``train-hsi`` and ``train-seismic``: thin wrappers of :mod:`models.training.hsi` and :mod:`models.training.seismic`.

Both flows take a flat, typed parameter set (what the UI's run form shows): a published
dataset name (+ version, resolved and recorded in the summary) or a store path, and the
common training settings. A complete ``config`` (``HSITrainConfig`` / ``SeismicTrainConfig``)
overrides every other field (what the CLI and tests pass). One task trains, logging one line
per epoch and updating the ``train-<kind>-progress`` artifact; after it the flow publishes
``train-<kind>-summary`` (metrics + plots inline) and ``train-<kind>-history``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import EpochProgress, publish_training_artifacts
from flows.form import ui
from flows.progress import logs_warnings, warnings_to_logger
from schemas.training import AlphaKind, DeviceName, HSITrainConfig, Mode, SeismicTrainConfig, TrainConfig

# ---------------------------------------------------------------------------------------------
# dataset resolution and run names
# ---------------------------------------------------------------------------------------------


def resolve_dataset(dataset: str, version: str, root: str | None, store: str) -> dict[str, Any]:
    """``{"dataset", "version", "store"}``: a store path as given, else the published version's store."""
    from pipeline.publishing.registry import resolve
    from pipeline.publishing.versions import STORE_DIR, VERSION_RE

    if store:
        p = Path(store)
        name, vid = (p.parent.parent.name, p.parent.name) if VERSION_RE.match(p.parent.name) else (None, None)
        return {"dataset": name, "version": vid, "store": store}
    vid, folder = resolve(dataset, version or "latest", root=root or None)
    return {"dataset": dataset, "version": vid, "store": f"{folder}/{STORE_DIR}"}


def _run_name(kind: str) -> str:
    """``train-<kind>-<mode>-<dataset or store>`` from the run's parameters."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    cfg = p.get("config")
    if cfg:
        mode = cfg.get("mode", "baseline") if isinstance(cfg, dict) else getattr(cfg, "mode", "baseline")
        store = cfg.get("store", "") if isinstance(cfg, dict) else getattr(cfg, "store", "")
        name = Path(str(store).rstrip("/")).name
        if name == "data.zarr":
            name = Path(str(store).rstrip("/")).parent.parent.name
        return f"train-{kind}-{mode}-{name}"
    where = Path(p["store"]).name if p.get("store") else p.get("dataset", "")
    return f"train-{kind}-{p.get('mode', 'baseline')}-{where}"


def _config(cls: type[TrainConfig], kind: str, fields: dict[str, Any]) -> Any:
    """A validated config from the flow's flat fields (patience 0 = off, out_dir '' = runs/<run name>)."""
    fields = dict(fields)
    if fields.get("patience") == 0:
        fields["patience"] = None
    if fields.get("max_traces") == 0:
        fields["max_traces"] = None
    out_dir = fields.pop("out_dir", "")
    probe = cls.model_validate({**fields, "out_dir": None})
    return cls.model_validate({**fields, "out_dir": out_dir or str(Path("runs") / probe.run_name(kind))})


def _dataset_of(config: TrainConfig) -> dict[str, Any]:
    return resolve_dataset("", "", None, config.store)


# ---------------------------------------------------------------------------------------------
# tasks
# ---------------------------------------------------------------------------------------------


def _train(kind: str, trainer: Callable[..., Any], config: Any, **kw: Any) -> tuple[dict[str, Any], Any]:
    """Run ``trainer(config, on_epoch=...)``; the JSON-ready metrics, run folder, summary, history."""
    from models.runs import summary_markdown, to_jsonable

    logger = get_run_logger()
    progress = EpochProgress(kind, logger=logger)
    with warnings_to_logger(logger):
        result = trainer(config, on_epoch=progress, **kw)
    progress.finish()
    return {
        "metrics": to_jsonable(result.metrics),
        "run_dir": None if result.run_dir is None else str(result.run_dir),
        "summary": summary_markdown(result),
        "history": to_jsonable(result.history),
    }, result


@task(name="train-hsi-model", cache_policy=NO_CACHE)
def train_hsi_task(config: HSITrainConfig) -> dict[str, Any]:
    """Run :func:`models.training.hsi.train_hsi` with per-epoch progress."""
    from models.training.hsi import train_hsi

    return _train("hsi", train_hsi, config)[0]


@task(name="train-seismic-model", cache_policy=NO_CACHE)
def train_seismic_task(config: SeismicTrainConfig) -> dict[str, Any]:
    """Run :func:`models.training.seismic.train_seismic` with per-epoch progress; adds the error-by-distance plot."""
    import numpy as np

    from models.data import load_seismic
    from models.training.seismic import train_seismic

    data = load_seismic(
        config.store, max_traces=config.max_traces, polarity=config.inputs == "power+polarity"
    )
    split = data.split.cpu().numpy()
    eval_idx = np.flatnonzero(split == 2) if (split == 2).any() else np.flatnonzero(split == 1)
    distances = data.distance_km.cpu().numpy()[eval_idx]
    out, result = _train("seismic", train_seismic, config, data=data)
    if out["run_dir"] is not None:
        from pipeline.reports.figures import error_by_distance

        err = np.asarray(result.extras["location_error_km"], dtype=float)
        if err.shape == distances.shape:
            png = error_by_distance(err, distances, result.extras.get("sensor_type"))
            (Path(out["run_dir"]) / "error_by_distance.png").write_bytes(png)
    return out


def _prepare(
    cls: type[TrainConfig], kind: str, config: Any, where: tuple[str, str, str, str], fields: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The run's config and dataset: ``config`` as given, else one built from the flow's flat
    ``fields`` on ``where`` = (dataset, version, root, store); logs the resolved version."""
    if config is None:
        ds = resolve_dataset(*where)
        config = _config(cls, kind, {"store": ds["store"], **fields})
    else:
        ds = _dataset_of(config)
    if ds.get("version"):
        get_run_logger().info("training on %s %s (%s)", ds["dataset"], ds["version"], ds["store"])
    return config, ds


def _finish(kind: str, out: dict[str, Any], dataset: dict[str, Any]) -> dict[str, Any]:
    out["dataset"] = dataset
    publish_training_artifacts(kind, out, history=out.pop("history", None))
    return out


# ---------------------------------------------------------------------------------------------
# flows
# ---------------------------------------------------------------------------------------------


@flow(name="train-hsi", log_prints=True, flow_run_name=lambda: _run_name("hsi"))
@logs_warnings
def train_hsi_flow(
    config: Annotated[HSITrainConfig | None, ui("Full configuration (advanced)")] = None,
    dataset: Annotated[str, ui("Dataset")] = "demo_hsi",
    version: Annotated[str, ui("Version")] = "latest",
    root: Annotated[str, ui("Dataset root")] = "",
    store: Annotated[str, ui("Store path (instead of a dataset)")] = "",
    mode: Annotated[Mode, ui("Training mode")] = "baseline",
    alpha: Annotated[AlphaKind, ui("α choice")] = "fixed",
    alpha_value: Annotated[float, ui("α (supervised weight)", ge=0.0, le=1.0)] = 0.05,
    net: Annotated[Literal["hydra", "mlp"], ui("Network")] = "hydra",
    epochs: Annotated[int, ui("Epochs", ge=1)] = 30,
    batch_size: Annotated[int, ui("Batch size", ge=2)] = 500,
    lr: Annotated[float, ui("Learning rate", gt=0.0)] = 1e-3,
    weight_decay: Annotated[float, ui("Weight decay", ge=0.0)] = 0.0,
    patience: Annotated[int, ui("Early-stopping patience (epochs)", ge=0)] = 10,
    label_fraction: Annotated[float, ui("Labelled fraction", gt=0.0, le=1.0)] = 1.0,
    teachers: Annotated[list[str], ui("Teacher modalities")] = ["SWIR"],  # noqa: B006 - shown in the form
    switch_epoch: Annotated[int, ui("Fine-tune switch epoch", ge=0)] = 10,
    seed: Annotated[int, ui("Seed")] = 0,
    device: Annotated[DeviceName, ui("Device")] = "auto",
    out_dir: Annotated[str, ui("Run folder")] = "",
) -> dict[str, Any]:
    """Train a Hydra / per-modality-MLP classifier on a published HSI dataset.

    Publishes ``train-hsi-summary`` (metrics, learning curves, confusion matrix, per-modality
    errors), ``train-hsi-history`` and ``train-hsi-progress``. Returns ``{"metrics", "run_dir",
    "summary", "dataset"}``.

    Args:
        config: Advanced: a complete HSITrainConfig; when given, every other field is ignored.
        dataset: Published dataset name (`emin datasets list`), trained on at `version`.
        version: Version id of the dataset, or `latest`; the resolved id is recorded in the summary.
        root: Dataset root (folder or fsspec URL); empty = $EMIN_DATA_ROOT or data/published.
        store: Path of a Zarr store to train on instead of a published dataset; empty = use `dataset`.
        mode: baseline (supervised only), emin, student-teacher, finetune or ssl.
        alpha: How α is chosen in the EMIN modes: fixed (`alpha_value`), sampled, or mgda.
        alpha_value: Weight α of the supervised loss for alpha=fixed (0–1).
        net: hydra (shared fusion network) or mlp (one MLP per modality).
        epochs: Maximum number of epochs.
        batch_size: Samples per optimiser step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2).
        patience: Early-stopping patience in epochs on validation macro accuracy; 0 = off.
        label_fraction: Fraction of the training labels kept (0–1], stratified and seeded.
        teachers: student-teacher mode: teacher modality names or prefixes (SWIR = every SWIR*).
        switch_epoch: finetune mode: first epoch of EMIN fine-tuning.
        seed: Seed of initialisation, batch order and label subsets.
        device: auto (CUDA when available), cpu or cuda.
        out_dir: Run folder; empty = runs/<run name> (e.g. runs/hsi-baseline-s0).
    """
    config, ds = _prepare(
        HSITrainConfig,
        "hsi",
        config,
        (dataset, version, root, store),
        {
            "mode": mode,
            "alpha": alpha,
            "alpha_value": alpha_value,
            "net": net,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "patience": patience,
            "label_fraction": label_fraction,
            "teachers": teachers,
            "switch_epoch": switch_epoch,
            "seed": seed,
            "device": device,
            "out_dir": out_dir,
        },
    )
    logger = get_run_logger()
    out = train_hsi_task(config)
    m = out["metrics"]
    logger.info(
        "test fused macro accuracy %.4f, cross-modality variance %.5f (run folder %s)",
        m["test"]["fused"]["macro_accuracy"],
        m["test_variance_mean"] or float("nan"),
        out["run_dir"],
    )
    return _finish("hsi", out, ds)


@flow(name="train-seismic", log_prints=True, flow_run_name=lambda: _run_name("seismic"))
@logs_warnings
def train_seismic_flow(
    config: Annotated[SeismicTrainConfig | None, ui("Full configuration (advanced)")] = None,
    dataset: Annotated[str, ui("Dataset")] = "demo_seismic",
    version: Annotated[str, ui("Version")] = "latest",
    root: Annotated[str, ui("Dataset root")] = "",
    store: Annotated[str, ui("Store path (instead of a dataset)")] = "",
    mode: Annotated[Mode, ui("Training mode")] = "baseline",
    alpha: Annotated[AlphaKind, ui("α choice")] = "fixed",
    alpha_value: Annotated[float, ui("α (supervised weight)", ge=0.0, le=1.0)] = 0.5,
    arch: Annotated[Literal["small", "vgg11", "vgg13", "vgg16", "vgg19"], ui("Architecture")] = "small",
    inputs: Annotated[Literal["power", "power+polarity"], ui("Input channels")] = "power",
    epochs: Annotated[int, ui("Epochs", ge=1)] = 20,
    batch_size: Annotated[int, ui("Batch size", ge=2)] = 64,
    lr: Annotated[float, ui("Learning rate", gt=0.0)] = 1e-3,
    weight_decay: Annotated[float, ui("Weight decay", ge=0.0)] = 0.0,
    patience: Annotated[int, ui("Early-stopping patience (epochs)", ge=0)] = 10,
    label_fraction: Annotated[float, ui("Labelled fraction of events", gt=0.0, le=1.0)] = 1.0,
    max_traces: Annotated[int, ui("Max traces", ge=0)] = 0,
    seed: Annotated[int, ui("Seed")] = 0,
    device: Annotated[DeviceName, ui("Device")] = "auto",
    out_dir: Annotated[str, ui("Run folder")] = "",
) -> dict[str, Any]:
    """Train the single-station location CNN on a published seismic dataset.

    Publishes ``train-seismic-summary`` (metrics, learning curves, location-error CDF, error by
    distance bin), ``train-seismic-history`` and ``train-seismic-progress``. Returns
    ``{"metrics", "run_dir", "summary", "dataset"}``.

    Args:
        config: Advanced: a complete SeismicTrainConfig; when given, every other field is ignored.
        dataset: Published dataset name (`emin datasets list`), trained on at `version`.
        version: Version id of the dataset, or `latest`; the resolved id is recorded in the summary.
        root: Dataset root (folder or fsspec URL); empty = $EMIN_DATA_ROOT or data/published.
        store: Path of a Zarr store to train on instead of a published dataset; empty = use `dataset`.
        mode: baseline (supervised only), emin, student-teacher, finetune or ssl.
        alpha: How α is chosen in the EMIN modes: fixed (`alpha_value`), sampled, or mgda.
        alpha_value: Weight α of the supervised loss for alpha=fixed (0–1).
        arch: small (quick) or a VGG variant.
        inputs: power (3 log-power channels) or power+polarity (+ the Z-N/Z-E cross-spectra; needs a store curated with cross_spectra).
        epochs: Maximum number of epochs.
        batch_size: Traces per optimiser step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2).
        patience: Early-stopping patience in epochs on the validation median location error; 0 = off.
        label_fraction: Fraction of the training events kept labelled (0–1].
        max_traces: Use only the first N traces (quick runs); 0 = all.
        seed: Seed of initialisation, batch order and label subsets.
        device: auto (CUDA when available), cpu or cuda.
        out_dir: Run folder; empty = runs/<run name> (e.g. runs/seismic-baseline-s0).
    """
    config, ds = _prepare(
        SeismicTrainConfig,
        "seismic",
        config,
        (dataset, version, root, store),
        {
            "mode": mode,
            "alpha": alpha,
            "alpha_value": alpha_value,
            "arch": arch,
            "inputs": inputs,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "patience": patience,
            "label_fraction": label_fraction,
            "max_traces": max_traces,
            "seed": seed,
            "device": device,
            "out_dir": out_dir,
        },
    )
    logger = get_run_logger()
    out = train_seismic_task(config)
    m = out["metrics"]
    logger.info(
        "test median location error %.2f km (predict-the-mean centroid %.2f km; run folder %s)",
        m["test"]["overall"]["location_error_km_median"],
        m["predict_the_mean"]["centroid"]["location_error_km_median"],
        out["run_dir"],
    )
    return _finish("seismic", out, ds)
