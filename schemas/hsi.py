"""Pydantic models for HSI curation: the inputs (one scene) and every curation parameter.

Defaults are the report's values (section 3.2). Every field is recorded in the
published dataset's ``parameters`` attribute.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.form import form_config

Sensor = Literal["VNIR", "SWIR"]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class RasterSpec(BaseModel):
    """One modality: a raster file, its sensor type, and optional metadata overrides."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="modality name, used for variable names (letters, digits, _)")
    path: Path
    sensor: Sensor
    wavelengths_nm: list[float] | None = Field(
        default=None, description="band centre wavelengths, overriding the file's metadata"
    )
    wavelength_units: str | None = Field(
        default=None, description="units of wavelengths_nm when they are not nm (e.g. Micrometers)"
    )
    scale_factor: float | None = Field(default=None, description="reflectance = raw * scale + offset")
    offset: float | None = None
    nodata: float | None = Field(default=None, description="overrides the file's nodata value")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"modality name {value!r} must start with a letter and use only letters, digits, _"
            )
        return value


class HSIInputs(BaseModel):
    """The raw inputs of one HSI curation run."""

    model_config = ConfigDict(extra="forbid")

    polygons: Path
    class_column: str
    layer: str | None = Field(default=None, description="layer of a multi-layer vector file")
    polygons_crs: str | None = Field(
        default=None, description="CRS to assume when the polygon file has none (e.g. EPSG:4326)"
    )
    rasters: list[RasterSpec] = Field(min_length=1)
    transmission: Path | None = Field(
        default=None, description="CSV with columns wavelength_nm, transmission (needed for SWIR masks)"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> HSIInputs:
        names = [r.name for r in self.rasters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate modality names {dupes}; give every raster its own name")
        return self


_HSI_TITLES = {
    "seed": "Seed", "working_crs": "Working CRS", "interior_buffer_m": "Interior buffer (m)",
    "n_classes": "Classes kept", "class_rank_by": "Rank classes by",
    "target_density_per_m2": "Target point density (per m²)",
    "background_density_per_m2": "Background point density (per m²)", "background_class": "Background class name",
    "max_points_per_class": "Max points per class", "vnir_range_nm": "VNIR range (nm)",
    "swir_range_nm": "SWIR range (nm)", "min_transmission": "Min atmospheric transmission (0–1)",
    "drop_windows_nm": "Dropped SWIR windows (nm)", "clip_range": "Reflectance clip range",
    "n_folds": "Folds", "sample_chunk": "Zarr chunk (samples)",
}  # fmt: skip
_HSI_DESCRIPTIONS = {
    "seed": "seeds point sampling, the per-class cap and the fold assignment",
    "target_density_per_m2": "points drawn per m² inside the (buffered) class polygons",
    "background_class": "class name given to background points (outside every polygon)",
    "max_points_per_class": "cap on sampled points per class (drawn before sampling, never discarded)",
    "vnir_range_nm": "[low, high] nm: VNIR bands kept",
    "swir_range_nm": "[low, high] nm: SWIR bands kept",
    "min_transmission": "SWIR bands whose atmospheric transmission is below this are dropped",
    "clip_range": "[low, high]: reflectance is clipped to this range",
}


class HSICurationParams(BaseModel):
    """Every knob of HSI curation, with the report's values as defaults."""

    model_config = form_config(_HSI_TITLES, _HSI_DESCRIPTIONS)

    seed: int = 0
    working_crs: str | None = Field(default=None, description="metric CRS; default: UTM zone of the polygons")
    interior_buffer_m: float = Field(default=1.5, ge=0.0, description="negative buffer applied to polygons")
    n_classes: int = Field(default=10, ge=1, description="classes kept, background included")
    class_rank_by: Literal["count", "area"] = Field(
        default="count", description="rank classes by polygon count or by buffered area"
    )
    target_density_per_m2: float = Field(default=5.0, gt=0.0)
    background_density_per_m2: float = Field(default=0.025, ge=0.0, description="0 disables background")
    background_class: str = "background"
    max_points_per_class: int = Field(default=2000, ge=1)
    vnir_range_nm: tuple[float, float] = (400.0, 900.0)
    swir_range_nm: tuple[float, float] = (900.0, 2500.0)
    min_transmission: float = Field(default=0.25, ge=0.0, le=1.0)
    drop_windows_nm: list[tuple[float, float]] = Field(
        default_factory=lambda: [(1880.0, 1920.0), (2030.0, 2070.0)],
        description="SWIR bands inside these [lo, hi] nm windows are dropped",
    )
    clip_range: tuple[float, float] = (0.0, 1.5)
    n_folds: int = Field(default=5, ge=2, description="stratified folds; the last one is the test fold")
    sample_chunk: int = Field(default=8192, ge=1, description="Zarr chunk length along `sample`")

    @field_validator("vnir_range_nm", "swir_range_nm", "clip_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError(f"range {value} must be (low, high) with low < high")
        return value
