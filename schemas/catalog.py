"""The data catalog (``data_catalog.yaml``): named inputs and published datasets, Kedro-like.

Every entry has a ``type``, a ``path``, optional ``parameters`` and ``metadata``.
Relative paths are resolved against the catalog file's folder (scene entries:
their file names against the scene's own ``path``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import InputError, MissingInputError
from schemas.hsi import HSICurationParams, HSIInputs, RasterSpec


class SyntheticSpec(BaseModel):
    """How to regenerate a synthetic demo input (``emin synth ...``)."""

    model_config = ConfigDict(extra="forbid")

    generator: Literal["hsi", "seismic"]
    seed: int = 0


class HSISceneEntry(BaseModel):
    """Raw HSI inputs: labelled polygons, one raster per modality, a transmission profile."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["hsi_scene"]
    path: Path = Field(description="folder holding the scene's files")
    polygons: Path
    class_column: str
    layer: str | None = None
    polygons_crs: str | None = None
    transmission: Path | None = None
    rasters: list[RasterSpec] = Field(min_length=1)
    synthetic: SyntheticSpec | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_inputs(self, base: Path) -> HSIInputs:
        """Curation inputs with every path made absolute."""
        root = (base / self.path).resolve()
        return HSIInputs(
            polygons=root / self.polygons,
            class_column=self.class_column,
            layer=self.layer,
            polygons_crs=self.polygons_crs,
            transmission=None if self.transmission is None else root / self.transmission,
            rasters=[r.model_copy(update={"path": root / r.path}) for r in self.rasters],
        )


class HSIDatasetEntry(BaseModel):
    """A published HSI sample dataset and the parameters it is curated with."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["hsi_dataset"]
    path: Path = Field(description="where the Zarr store is published")
    inputs: str = Field(description="name of an hsi_scene entry")
    parameters: HSICurationParams = Field(default_factory=HSICurationParams)
    metadata: dict[str, Any] = Field(default_factory=dict)


class GenericEntry(BaseModel):
    """Entries of other kinds (seismic inputs and stores); validated by their own flows."""

    model_config = ConfigDict(extra="allow")

    type: Literal["seismic_network", "seismic_dataset"]
    path: Path
    parameters: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


CatalogEntry = Annotated[HSISceneEntry | HSIDatasetEntry | GenericEntry, Field(discriminator="type")]


class DataCatalog(BaseModel):
    """All named entries of one catalog file."""

    model_config = ConfigDict(extra="forbid")

    source: Path
    entries: dict[str, CatalogEntry]

    @property
    def base(self) -> Path:
        return self.source.parent

    def get(self, name: str) -> CatalogEntry:
        if name not in self.entries:
            raise InputError(
                f"no catalog entry named {name!r}",
                path=self.source,
                fix=f"use one of {sorted(self.entries)}",
            )
        return self.entries[name]

    def hsi_job(self, name: str) -> tuple[HSIInputs, HSICurationParams, Path, HSISceneEntry]:
        """Inputs, parameters and output path of an ``hsi_dataset`` entry."""
        entry = self.get(name)
        if not isinstance(entry, HSIDatasetEntry):
            raise InputError(
                f"entry {name!r} is a {entry.type}, not an hsi_dataset",
                path=self.source,
                fix=f"pick one of {sorted(k for k, e in self.entries.items() if e.type == 'hsi_dataset')}",
            )
        scene = self.get(entry.inputs)
        if not isinstance(scene, HSISceneEntry):
            raise InputError(
                f"entry {name!r} names inputs {entry.inputs!r}, which is not an hsi_scene",
                path=self.source,
                fix="point `inputs:` at an hsi_scene entry",
            )
        inputs = scene.to_inputs(self.base)
        if not inputs.polygons.exists() and scene.synthetic is not None:
            raise MissingInputError(
                "the demo scene has not been generated yet",
                path=inputs.polygons,
                fix=f"run `emin synth {scene.synthetic.generator} --out {(self.base / scene.path)} "
                f"--seed {scene.synthetic.seed}` first (or `make demo`)",
            )
        return inputs, entry.parameters, (self.base / entry.path).resolve(), scene


def load_catalog(path: str | Path = "data_catalog.yaml") -> DataCatalog:
    """Read and validate a catalog file; errors name the entry and field at fault."""
    path = Path(path).resolve()
    if not path.exists():
        raise MissingInputError("catalog file not found", path=path, fix="pass --catalog PATH")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise InputError("catalog must be a mapping of entry names to entries", path=path)
    try:
        return DataCatalog(source=path, entries=raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in exc.errors()
        )
        raise InputError(f"invalid catalog: {problems}", path=path, fix="fix the fields named above") from exc
