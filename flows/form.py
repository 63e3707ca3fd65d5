"""Flow-parameter metadata for the Prefect UI's run form.

Prefect builds a deployment's form from the flow's signature and docstring: the
``Args:`` section gives each field its description, ``Annotated[T, ui("Title", ge=...)]``
its human title and bounds (Prefect would otherwise title every field by its name).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, WithJsonSchema

__all__ = ["OptStr", "ui"]

#: An optional string shown as a plain text box (no str/None toggle); empty = None.
OptStr = Annotated[str | None, WithJsonSchema({"type": "string"})]


def ui(title: str, **bounds: Any) -> Any:
    """``Field`` metadata for a flow parameter: a title (with units) and bounds shown in the form."""
    return Field(json_schema_extra={"title": title}, **bounds)
