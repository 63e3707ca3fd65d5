"""Turn a freshly curated store into an immutable, versioned, discoverable dataset.

:func:`publish_version` is the one publishing step (version + STAC); the flows run it as the
``publish-version`` task, and ``--no-prefect`` CLI runs call it directly.
"""

from __future__ import annotations

import logging

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runners import io_task_options
from pipeline.publishing.stac import write_stac
from pipeline.publishing.versions import PublishedVersion, publish_dataset
from pipeline.publishing.zarr_io import open_store


def publish_version(
    store: str, *, name: str, root: str | None, logger: logging.Logger | logging.LoggerAdapter | None = None
) -> PublishedVersion:
    """Publish ``store`` (with its rejects group) as a version of ``name`` and refresh its STAC."""
    ds = open_store(store).load()
    rejects = open_store(store, group="rejects").load()
    version = publish_dataset(ds, name=name, root=root, groups={"rejects": rejects})
    write_stac(name, root=root)
    state = "new version" if version.created else "unchanged content, existing version"
    (logger or logging.getLogger(__name__)).info(
        "%s %s/%s at %s", state, name, version.version, version.store
    )
    return version


@task(name="publish-version", cache_policy=NO_CACHE, **io_task_options(retries=1))
def publish_version_task(store: str, *, name: str, root: str | None) -> PublishedVersion:
    """:func:`publish_version` as a Prefect task (logged to the run)."""
    return publish_version(store, name=name, root=root, logger=get_run_logger())
