"""Domain enums exposed in the API with a description for each value.

The domain's enums carry no Strawberry (the domain has no frameworks), so their values are described
here. A value without a description fails at import: a new value cannot reach the SDL undocumented
(graphql-schema-linter checks the exported SDL too; see CONTRIBUTING.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

import strawberry
from strawberry.types.enum import StrawberryEnumDefinition

Member = TypeVar("Member", bound=Enum)


class UndescribedEnumValue(Exception):
    """A value of an API enum with no description in its `values` table."""


def described_enum(
    enum: type[Member], *, name: str, description: str, values: Mapping[Member, str]
) -> type[Member]:
    """Register `enum` with Strawberry as `name`, giving every value the description in `values`."""
    missing = [member.name for member in enum if member not in values]
    if missing:
        raise UndescribedEnumValue(f"{name} values without a description: {', '.join(missing)}")
    strawberry.enum(enum, name=name, description=description)
    definition: StrawberryEnumDefinition = enum.__strawberry_definition__  # type: ignore[attr-defined]
    for value in definition.values:
        value.description = values[enum[value.name]]
    return enum
