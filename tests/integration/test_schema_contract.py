"""schema.graphql is the contract: committed, current, and fully described."""

from __future__ import annotations

from enum import Enum

import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
)

from schema.build import SDL_PATH, build_schema, export_sdl
from schema.enums import UndescribedEnumValue, described_enum


def test_committed_schema_matches_the_live_schema() -> None:
    assert SDL_PATH.read_text() == export_sdl(), "schema.graphql is stale: run `make schema` and commit it"


def undescribed(graphql_schema: GraphQLSchema) -> list[str]:
    """Every type, field, argument, input field and enum value without a description (as the SDL linter
    reports them; `make lint-schema` runs graphql-schema-linter itself, this runs without node)."""
    missing = []
    for name, graphql_type in graphql_schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Boolean", "ID", "Float"}:
            continue
        if not graphql_type.description:
            missing.append(name)
        if isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in graphql_type.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(graphql_type, GraphQLEnumType):
            missing += [f"{name}.{value}" for value, v in graphql_type.values.items() if not v.description]
    return missing


@strawberry.enum(description="A colour.")
class Colour(Enum):
    RED = "red"


@strawberry.type(description="A root with an undescribed argument.")
class BareQuery:
    @strawberry.field(description="A colour by name.")
    def colour(self, name: str) -> Colour:
        return Colour.RED


def test_every_type_field_argument_and_enum_value_has_a_description() -> None:
    assert undescribed(build_schema()._schema) == []


def test_an_undescribed_argument_or_enum_value_is_reported() -> None:
    """The check above can fail: a schema with one bare argument and one bare enum value is caught."""
    assert undescribed(strawberry.Schema(query=BareQuery)._schema) == ["BareQuery.colour(name)", "Colour.RED"]


def test_an_api_enum_value_without_a_description_fails_at_import() -> None:
    class Weekday(Enum):
        MONDAY = "monday"
        TUESDAY = "tuesday"

    with pytest.raises(UndescribedEnumValue, match="TUESDAY"):
        described_enum(Weekday, name="Weekday", description="A day.", values={Weekday.MONDAY: "The first."})
