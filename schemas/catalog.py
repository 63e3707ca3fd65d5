"""The data catalog (``data_catalog.yaml``): named inputs and published datasets, Kedro-like.

Every entry has a ``type``, a ``path``, optional ``parameters`` and ``metadata``.
Relative paths are resolved against the catalog file's folder (scene entries:
their file names against the scene's own ``path``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import InputError, MissingInputError
from schemas.hsi import HSICurationParams, HSIInputs, RasterSpec
from schemas.seismic import SeismicCurationParams, SeismicInputs

PUBLISH_HELP = (
    "after each run, publish the store as an immutable version named after the entry in the "
    "dataset root ($EMIN_DATA_ROOT, else data/published next to the catalog; docs/publishing.md)"
)


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


class _DatasetEntry(BaseModel):
    """What every curated-dataset entry has: its store, its inputs entry, publication, metadata."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="where the Zarr store is written (seismic: appended to on re-runs)")
    inputs: str = Field(description="name of the entry holding the raw inputs (hsi_scene / seismic_network)")
    publish: bool = Field(default=True, description=PUBLISH_HELP)
    metadata: dict[str, Any] = Field(default_factory=dict)


class HSIDatasetEntry(_DatasetEntry):
    """A published HSI sample dataset and the parameters it is curated with."""

    type: Literal["hsi_dataset"]
    parameters: HSICurationParams = Field(default_factory=HSICurationParams)


class SeismicNetworkEntry(BaseModel):
    """Raw seismic inputs: waveform files (a glob), StationXML, an event catalog, optional picks."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["seismic_network"]
    path: Path = Field(description="folder holding the network's files")
    waveforms: str = Field(description="glob of waveform files, relative to `path`")
    inventory: Path
    events: Path
    picks: Path | None = None
    synthetic: SyntheticSpec | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_inputs(self, base: Path) -> SeismicInputs:
        """Curation inputs with the glob expanded and every path made absolute."""
        root = (base / self.path).resolve()
        return SeismicInputs.from_glob(
            str(root / self.waveforms),
            root / self.inventory,
            root / self.events,
            None if self.picks is None else root / self.picks,
        )


class SeismicDatasetEntry(_DatasetEntry):
    """A published seismic spectrogram store and the parameters it is curated with."""

    type: Literal["seismic_dataset"]
    parameters: SeismicCurationParams = Field(default_factory=SeismicCurationParams)


_E = TypeVar("_E", bound=BaseModel)

CatalogEntry = Annotated[
    HSISceneEntry | HSIDatasetEntry | SeismicNetworkEntry | SeismicDatasetEntry, Field(discriminator="type")
]


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

    def _typed(self, name: str, kind: type[_E]) -> _E:
        entry = self.get(name)
        if not isinstance(entry, kind):
            wanted = kind.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
            raise InputError(
                f"entry {name!r} is a {entry.type}, not a {wanted}",
                path=self.source,
                fix=f"pick one of {sorted(k for k, e in self.entries.items() if e.type == wanted)}",
            )
        return entry

    def _check_generated(self, entry: HSISceneEntry | SeismicNetworkEntry, probe: Path) -> None:
        if not probe.exists() and entry.synthetic is not None:
            raise MissingInputError(
                "the demo inputs have not been generated yet",
                path=probe,
                fix=f"run `emin synth {entry.synthetic.generator} --out {(self.base / entry.path)} "
                f"--seed {entry.synthetic.seed}` first (or `make demo`)",
            )

    def hsi_job(self, name: str) -> tuple[HSIInputs, HSICurationParams, Path]:
        """Inputs, parameters and output path of an ``hsi_dataset`` entry."""
        entry = self._typed(name, HSIDatasetEntry)
        scene = self._typed(entry.inputs, HSISceneEntry)
        inputs = scene.to_inputs(self.base)
        self._check_generated(scene, inputs.polygons)
        return inputs, entry.parameters, (self.base / entry.path).resolve()

    def publish_root(self) -> str:
        """Dataset root for published versions: ``$EMIN_DATA_ROOT``, else ``data/published`` here."""
        return os.environ.get("EMIN_DATA_ROOT") or str(self.base / "data" / "published")

    def publication(self, name: str) -> tuple[str | None, str]:
        """(dataset name to publish as, or None when the entry opts out; dataset root)."""
        entry = self.get(name)
        wanted = isinstance(entry, _DatasetEntry) and entry.publish
        return (name if wanted else None), self.publish_root()

    def seismic_job(self, name: str) -> tuple[SeismicInputs, SeismicCurationParams, Path]:
        """Inputs, parameters and output path of a ``seismic_dataset`` entry."""
        entry = self._typed(name, SeismicDatasetEntry)
        network = self._typed(entry.inputs, SeismicNetworkEntry)
        self._check_generated(network, (self.base / network.path / network.inventory).resolve())
        return network.to_inputs(self.base), entry.parameters, (self.base / entry.path).resolve()


def load_catalog(path: str | Path = "data_catalog.yaml") -> DataCatalog:
    """Read and validate a catalog file; errors name the entry and field at fault."""
    path = Path(path).resolve()
    if not path.exists():
        raise MissingInputError("catalog file not found", path=path, fix="pass --catalog PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError as exc:
        raise InputError(
            f"catalog is not UTF-8 text (byte {exc.start})", path=path, fix="give a YAML text file"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(
            f"malformed YAML at {where}{problem}",
            path=path,
            fix="fix the YAML syntax at that line (indentation, ':' after keys, quotes)",
        ) from exc
    if not isinstance(raw, dict):
        raise InputError("catalog must be a mapping of entry names to entries", path=path)
    try:
        return DataCatalog(source=path, entries=raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in exc.errors()
        )
        raise InputError(f"invalid catalog: {problems}", path=path, fix="fix the fields named above") from exc
