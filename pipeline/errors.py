"""One exception tree for the whole product, rooted in :class:`EminError`.

Every error names the file or field at fault and says what to do about it, so
that a user reading a failed flow run knows the fix without reading the code.
"""

from __future__ import annotations

from pathlib import Path


class EminError(Exception):
    """Root of every error raised on purpose by emin-fusion."""


class InputError(EminError):
    """An input file or parameter is missing, malformed or inconsistent."""

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.fix = fix
        text = message if self.path is None else f"{self.path}: {message}"
        if fix:
            text = f"{text}\n  fix: {fix}"
        super().__init__(text)


class MissingInputError(InputError, FileNotFoundError):
    """A named input file does not exist."""


class CRSError(InputError):
    """A geospatial input has no coordinate reference system, or an unusable one."""


class SchemaError(InputError):
    """A column, band or field is missing or has the wrong type."""


class WavelengthError(InputError):
    """Band wavelengths are missing or do not match the raster's bands."""


class NoOverlapError(InputError):
    """Inputs do not overlap in space, so no sample can be built."""


class ContractViolation(EminError):
    """A published store does not satisfy its on-disk contract (docs/format.md)."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.path} violates the dataset contract:\n{listing}")


class PublishError(EminError):
    """A dataset could not be published atomically."""
