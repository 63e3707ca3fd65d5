"""Human titles (with units) and descriptions for parameter models, as the Prefect UI's form shows them.

``model_config = form_config(TITLES, DESCRIPTIONS)``: titles come from
``TITLES`` (else the field name in words), and fields without their own ``description``
get one from ``DESCRIPTIONS``. Only the JSON schema changes; values and dumps do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict
from pydantic.fields import FieldInfo

__all__ = ["form_config"]


def form_config(
    titles: Mapping[str, str], descriptions: Mapping[str, str], *, frozen: bool = False
) -> ConfigDict:
    """``extra="forbid"``, ``field_title_generator`` and a ``json_schema_extra`` that fills missing descriptions."""

    def title(name: str, _info: FieldInfo | Any) -> str:
        return titles.get(name, name.replace("_", " ").capitalize())

    def extra(schema: dict[str, Any]) -> None:
        for name, prop in schema.get("properties", {}).items():
            if not prop.get("description") and name in descriptions:
                prop["description"] = descriptions[name]

    return ConfigDict(extra="forbid", frozen=frozen, field_title_generator=title, json_schema_extra=extra)
