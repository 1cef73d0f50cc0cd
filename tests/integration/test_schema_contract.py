"""schema.graphql is the contract: committed, current, and fully described."""

from __future__ import annotations

from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType

from schema.build import SDL_PATH, build_schema, export_sdl


def test_committed_schema_matches_the_live_schema() -> None:
    assert SDL_PATH.read_text() == export_sdl(), "schema.graphql is stale: run `make schema` and commit it"


def test_every_type_and_field_has_a_description() -> None:
    missing = []
    for name, graphql_type in build_schema()._schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Boolean", "ID", "Float"}:
            continue
        if not graphql_type.description:
            missing.append(name)
        if isinstance(graphql_type, GraphQLObjectType | GraphQLInputObjectType):
            missing += [f"{name}.{field}" for field, f in graphql_type.fields.items() if not f.description]
        if isinstance(graphql_type, GraphQLEnumType):
            continue
    assert missing == []
