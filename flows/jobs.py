"""One curation job, resolved from a catalog entry or from direct arguments (HSI and seismic alike)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from pipeline.errors import InputError
from schemas.catalog import load_catalog
from schemas.hsi import HSICurationParams, HSIInputs
from schemas.seismic import SeismicCurationParams, SeismicInputs

Inputs = TypeVar("Inputs", HSIInputs, SeismicInputs)
Params = TypeVar("Params", HSICurationParams, SeismicCurationParams)


@dataclass(frozen=True)
class CurationJob(Generic[Inputs, Params]):
    """Everything one curation run needs, whether it came from the catalog or from arguments."""

    inputs: Inputs
    params: Params
    target: Path
    publish: str | None
    root: str | None
    overwrite: bool = False


HSIJob = CurationJob[HSIInputs, HSICurationParams]
SeismicJob = CurationJob[SeismicInputs, SeismicCurationParams]


def resolve_job(
    kind: Literal["hsi", "seismic"],
    entry: str | None,
    catalog: str,
    inputs: Inputs | None,
    params: Params | None,
    out: str | None,
    publish: str | None = None,
    root: str | None = None,
    overwrite: bool = False,
) -> CurationJob[Inputs, Params]:
    """Inputs/params/output/publication from a catalog entry (arguments given override it), or
    from direct arguments. An entry's path is that dataset's own working copy, so re-running an
    HSI entry replaces its store (a seismic store is appended to, never replaced)."""
    if entry is not None:
        cat = load_catalog(catalog)
        cat_inputs, cat_params, cat_out = cat.hsi_job(entry) if kind == "hsi" else cat.seismic_job(entry)
        cat_publish, cat_root = cat.publication(entry)
        return CurationJob(
            inputs or cat_inputs,  # type: ignore[arg-type]
            params or cat_params,  # type: ignore[arg-type]
            Path(out) if out else cat_out,
            publish or cat_publish,
            root or cat_root,
            kind == "hsi",
        )
    if inputs is None or out is None:
        raise InputError(
            "no catalog entry and no inputs/output",
            fix="give either --entry NAME (a data_catalog.yaml entry) or the inputs and --out",
        )
    default: Params = HSICurationParams() if kind == "hsi" else SeismicCurationParams()  # type: ignore[assignment]
    return CurationJob(inputs, params or default, Path(out), publish, root, overwrite)
