"""Flow-parameter metadata for the Prefect UI's run form.

Prefect builds a deployment's form from the flow's signature and docstring: the
``Args:`` section gives each field its description, ``Annotated[T, ui("Title", ge=...)]``
its human title and bounds (Prefect would otherwise title every field by its name).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

__all__ = ["ui"]


def ui(title: str, **bounds: Any) -> Any:
    """``Field`` metadata for a flow parameter: a title (with units) and bounds shown in the form."""
    return Field(json_schema_extra={"title": title}, **bounds)
