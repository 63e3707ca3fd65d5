"""Turn a freshly curated store into an immutable, versioned, discoverable dataset.

:func:`publish_version` is the one publishing step (version + STAC); the flows run it as the
``publish-version`` task, and ``--no-prefect`` CLI runs call it directly.
"""

from __future__ import annotations

import logging

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runners import io_task_options
from pipeline.errors import PublishError
from pipeline.publishing.contract import check_publishable
from pipeline.publishing.stac import preview_item, write_stac
from pipeline.publishing.versions import PublishedVersion, publish_dataset
from pipeline.publishing.zarr_io import open_store


def publish_version(
    store: str, *, name: str, root: str | None, logger: logging.Logger | logging.LoggerAdapter | None = None
) -> PublishedVersion:
    """Publish ``store`` (with its rejects group) as a version of ``name`` and refresh its STAC.

    Publishing is the last step, and only of what passed every check: the store must satisfy
    its contract and hold at least one sample, and its STAC Item must render; only then is a
    version written (atomically) and ``latest`` moved.
    """
    check_publishable(store)
    ds = open_store(store)  # large arrays stay lazy: digested and written block by block
    rejects = open_store(store, group="rejects").load()
    try:
        preview_item(ds, name=name)
    except Exception as exc:
        raise PublishError(
            f"{store}: the STAC metadata of this dataset cannot be rendered ({type(exc).__name__}: {exc}); "
            "nothing was published\n  fix: check the store's coordinates and attributes (emin validate)"
        ) from exc
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
