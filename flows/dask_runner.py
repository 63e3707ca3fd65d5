"""prefect-dask's task runner, without hashing every task run's arguments at submit.

``PrefectDaskClient.submit`` passes Dask ``pure=True``, so distributed tokenises the whole call
to name its key: the task's parameters (a raster's sampled points, tens of MB) and Prefect's
serialised settings context, about 0.09 s per task run on 2 cores, serial in the flow, and
pointless, because the call also carries the task run's new UUID and its key is unique anyway.
:class:`UnhashedDaskTaskRunner` submits with ``pure=False`` (a key from a fresh UUID); nothing
else changes. Imported only where a Dask runner is made (distributed is a slow import).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture


class UnhashedDaskTaskRunner(DaskTaskRunner):
    """:class:`prefect_dask.DaskTaskRunner` whose task runs get UUID keys instead of argument hashes."""

    def submit(  # type: ignore[override]  # prefect-dask's overloads, one implementation
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectDaskFuture[Any]] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> PrefectDaskFuture[Any]:
        """As prefect-dask's ``submit``, with ``pure=False``."""
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        parameters = self._optimize_futures(parameters)
        wait_for = self._optimize_futures(wait_for) if wait_for else None
        future = self.client.submit(
            task,
            parameters=parameters,
            wait_for=wait_for,
            dependencies=dependencies,
            return_type="state",
            pure=False,
        )
        return PrefectDaskFuture(wrapped_future=future, task_run_id=future.task_run_id)
