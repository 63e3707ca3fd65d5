"""Progress and warnings where a person sees them: the terminal (rich) and the Prefect run logger.

* :func:`listening` registers a per-epoch listener for the ``with`` block; the flows'
  :class:`flows.artifacts.EpochProgress` calls :func:`notify_epoch`, so a CLI that runs a
  flow in-process (``emin train ...``) draws its progress bar from the same epochs the run
  logs. ``--no-prefect`` runs pass :class:`TerminalProgress` to the trainer directly.
* :class:`TerminalProgress`: a rich progress bar on stderr, silent under ``quiet`` or when
  stderr is not a TTY; :class:`StageProgress` the same for curation stages, fed by
  :func:`notify_stage` through :func:`listening_stages` (raster windows, waveform batches).
* :func:`metrics_table`: a training run's headline metrics as a rich table.
* :func:`warnings_to_logger`: ``EminWarning`` (and other warnings) raised inside a flow go
  to the run logger, so they show in the UI's log view.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "StageProgress",
    "TerminalProgress",
    "interactive",
    "listening",
    "listening_stages",
    "logs_warnings",
    "metrics_table",
    "notify_epoch",
    "notify_stage",
    "warnings_to_logger",
]

EpochListener = Callable[[int, int, Mapping[str, float]], None]
StageListener = Callable[[str, int, int], None]


class _Listeners:
    """Callbacks registered for a ``with`` block, told of events from any thread of this process."""

    def __init__(self) -> None:
        self._fns: list[Callable[..., None]] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def registered(self, fn: Callable[..., None] | None) -> Iterator[None]:
        if fn is None:
            yield
            return
        with self._lock:
            self._fns.append(fn)
        try:
            yield
        finally:
            with self._lock:
                self._fns.remove(fn)

    def notify(self, *args: Any) -> None:
        with self._lock:
            current = list(self._fns)
        for fn in current:  # a drawing problem never stops the work
            with contextlib.suppress(Exception):
                fn(*args)


_epochs = _Listeners()
_stages = _Listeners()


def listening(listener: EpochListener | None) -> contextlib.AbstractContextManager[None]:
    """Call ``listener(epoch, epochs, row)`` for every epoch a flow in this process finishes."""
    return _epochs.registered(listener)


def notify_epoch(epoch: int, epochs: int, row: Mapping[str, float]) -> None:
    """Tell every epoch listener (called by the flows' epoch callback; exceptions are swallowed)."""
    _epochs.notify(epoch, epochs, row)


def listening_stages(listener: StageListener | None) -> contextlib.AbstractContextManager[None]:
    """Call ``listener(stage, done, total)`` as curation stages (raster windows, batches) advance."""
    return _stages.registered(listener)


def notify_stage(stage: str, done: int, total: int) -> None:
    """Tell every stage listener that ``stage`` has ``done`` of ``total`` units."""
    _stages.notify(stage, done, total)


def interactive(quiet: bool = False) -> bool:
    """True when progress should be drawn: not ``quiet`` and both stdout and stderr are TTYs."""
    return not quiet and sys.stderr.isatty() and sys.stdout.isatty()


class TerminalProgress:
    """A rich progress bar over epochs (``with TerminalProgress(...) as bar: train(..., on_epoch=bar)``)."""

    def __init__(self, label: str, *, quiet: bool = False, force: bool | None = None) -> None:
        self.label = label
        self.enabled = interactive(quiet) if force is None else force
        self.calls = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> TerminalProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[metric]}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False,
            )  # fmt: skip
            self._progress.start()
        return self

    def __call__(self, epoch: int, epochs: int, row: Mapping[str, float]) -> None:
        self.calls += 1
        if self._progress is None:
            return
        metric = next(
            (f"{k} {row[k]:.4g}" for k in ("val_macro_accuracy", "val_location_error_km_median") if k in row),
            "",
        )
        if self._task is None:
            self._task = self._progress.add_task(self.label, total=epochs, metric=metric)
        self._progress.update(self._task, completed=epoch + 1, metric=metric)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            if self._task is not None:  # early stopping: show the bar complete
                task = self._progress.tasks[0]
                self._progress.update(self._task, total=task.completed)
            self._progress.stop()


class StageProgress:
    """Rich progress bars, one per curation stage (``extract VNIR1`` windows, waveform batches).

    ``with StageProgress() as bar, listening_stages(bar): curate(...)``; silent under ``quiet``
    or without a TTY, like :class:`TerminalProgress`.
    """

    def __init__(self, *, quiet: bool = False, force: bool | None = None) -> None:
        self.enabled = interactive(quiet) if force is None else force
        self.calls = 0
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> StageProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True),
            )  # fmt: skip
            self._progress.start()
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self.calls += 1
            if self._progress is None:
                return
            if stage not in self._tasks:
                self._tasks[stage] = self._progress.add_task(stage, total=max(total, 1))
            self._progress.update(self._tasks[stage], completed=done, total=max(total, 1))

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def metrics_table(metrics: Mapping[str, Any], *, title: str | None = None) -> Any:
    """A training run's headline metrics (val/test, per modality or per predictor) as a rich Table."""
    from rich.table import Table

    kind = metrics.get("kind")
    table = Table(title=title or f"{str(kind).upper()} run: mode {metrics.get('mode')}", title_justify="left")
    if kind == "hsi":
        table.add_column("set / modality")
        table.add_column("macro accuracy", justify="right")
        table.add_column("n", justify="right")
        for split in ("val", "test"):
            fused = metrics[split]["fused"]
            table.add_row(f"{split} (fused)", f"{fused['macro_accuracy']:.4f}", str(int(fused.get("n", 0))))
        for name, st in metrics["test"].items():
            if name != "fused":
                table.add_row(f"test {name}", f"{st['macro_accuracy']:.4f}", str(int(st.get("n", 0))))
    else:
        table.add_column("predictor")
        table.add_column("median location error (km)", justify="right")
        table.add_column("mean (km)", justify="right")
        o = metrics["test"]["overall"]
        table.add_row("model", f"{o['location_error_km_median']:.2f}", f"{o['location_error_km_mean']:.2f}")
        for name, st in metrics.get("predict_the_mean", {}).items():
            table.add_row(
                f"predict-the-mean ({name})",
                f"{st['location_error_km_median']:.2f}",
                f"{st['location_error_km_mean']:.2f}",
            )
    table.caption = (
        f"epochs run {metrics.get('epochs_run')} (best {metrics.get('best_epoch')}), "
        f"device {metrics.get('device')}, {metrics.get('wall_time_s', 0.0):.1f} s"
    )
    return table


@contextlib.contextmanager
def warnings_to_logger(logger: Any) -> Iterator[None]:
    """Inside the block, warnings are logged to ``logger`` (EminWarning as WARNING, with its category).

    ``warnings.showwarning`` is replaced only for this block (not thread-safe across
    concurrent blocks, like :func:`warnings.catch_warnings` itself); the filters are left as
    they are, so ``-W error`` still turns warnings into errors.
    """
    from pipeline.errors import EminWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", EminWarning)
        previous = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:  # fmt: skip
            if issubclass(category, EminWarning):
                logger.warning("%s: %s", category.__name__, message)
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = previous


def logs_warnings(fn: F) -> F:
    """Decorator for flow functions (under ``@flow``): warnings raised in the run reach its logger."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from prefect import get_run_logger

        with warnings_to_logger(get_run_logger()):
            return fn(*args, **kwargs)

    # Prefect validates parameters against the signature in the wrapper's namespace: give it
    # the flow function's annotations already evaluated (they are strings under
    # ``from __future__ import annotations``).
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    wrapper.__annotations__ = typing.get_type_hints(fn, include_extras=True)
    return wrapper  # type: ignore[return-value]
