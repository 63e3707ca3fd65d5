"""Task that turns a freshly curated store into an immutable, versioned, discoverable dataset."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runners import io_task_options
from pipeline.publishing.stac import write_stac
from pipeline.publishing.versions import PublishedVersion, publish_dataset
from pipeline.publishing.zarr_io import open_store


@task(name="publish-version", cache_policy=NO_CACHE, **io_task_options(retries=1))
def publish_version_task(store: str, *, name: str, root: str | None) -> PublishedVersion:
    """Publish ``store`` (with its rejects group) as a version of ``name`` and refresh its STAC."""
    ds = open_store(store).load()
    rejects = open_store(store, group="rejects").load()
    version = publish_dataset(ds, name=name, root=root, groups={"rejects": rejects})
    write_stac(name, root=root)
    logger = get_run_logger()
    state = "new version" if version.created else "unchanged content, existing version"
    logger.info("%s %s/%s at %s", state, name, version.version, version.store)
    return version
