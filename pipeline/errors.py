"""One exception tree for the whole product, rooted in :class:`EminError`.

Every error names the file or field at fault and says what to do about it, so that a user
reading a failed flow run (or the CLI's one-line message) knows the fix without reading the
code. The CLI maps this tree to exit code 2 in one place (``flows/cli/common.py``); anything
else is a bug and keeps its traceback.

    EminError
    ├── InputError                  bad input file or parameter (path=, fix=)
    │   ├── MissingInputError       (also FileNotFoundError)
    │   ├── CRSError, SchemaError, WavelengthError, NoOverlapError
    │   ├── DataSelectionError      impossible fold/split/fraction selection (also ValueError)
    │   └── TrainingConfigError     a training setting that cannot work (also ValueError)
    ├── ContractViolation           a store breaks docs/format.md
    ├── PublishError                atomic publishing failed
    ├── DatasetNotFoundError        no such published dataset/version (also LookupError)
    ├── IntegrityError              a published version no longer matches its manifest
    ├── ExportError                 a dataset cannot be exported in the requested format
    └── StackError                  the local Prefect stack (``emin serve``) did not start

:class:`EminWarning` is the one warning category: something was repaired or skipped, and it
is also recorded in the dataset's provenance.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CRSError",
    "ContractViolation",
    "DataSelectionError",
    "DatasetNotFoundError",
    "EminError",
    "EminWarning",
    "ExportError",
    "InputError",
    "IntegrityError",
    "MissingInputError",
    "NoOverlapError",
    "PublishError",
    "SchemaError",
    "StackError",
    "TrainingConfigError",
    "WavelengthError",
]


class EminError(Exception):
    """Root of every error raised on purpose by emin-fusion."""


class EminWarning(UserWarning):
    """Something was repaired or skipped; it is also recorded in the dataset's provenance."""


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


class DataSelectionError(InputError, ValueError):
    """A fold/split/fraction selection is impossible for this store."""


class TrainingConfigError(InputError, ValueError):
    """A training setting that cannot work with this model or store (``field=`` names it)."""

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None) -> None:
        self.field = field
        super().__init__(message if field is None else f"{field}: {message}", fix=fix)


class ContractViolation(EminError):
    """A published store does not satisfy its on-disk contract (docs/format.md)."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.path} violates the dataset contract:\n{listing}")


class PublishError(EminError):
    """A dataset could not be published atomically."""


class DatasetNotFoundError(EminError, LookupError):
    """No dataset (or no such version of it) under the dataset root."""


class IntegrityError(EminError):
    """A published store does not match its manifest (tampered, truncated or half-deleted)."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{where} does not match its manifest:\n{listing}{more}\n"
            "  fix: re-publish the dataset from its inputs, or open another version"
        )


class ExportError(EminError):
    """A dataset cannot be exported in the requested format."""


class StackError(EminError):
    """A part of the local Prefect stack did not start; the message holds its log tail."""
