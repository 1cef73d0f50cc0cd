"""Fields that answer from a value their object already holds, without a resolver call.

Strawberry calls a field's resolver through a wrapper that builds an `Info` and parses arguments on
every call: on a page of 100 licenses, `product` and `product.dailyPrice` would cost that 200 times.
A `ReadyField` puts a plain function in front of the field's resolver in the built schema: when the
object already holds the answer (a license listed with its page's products, a product priced for the
caller), it is returned as it is; otherwise the field's own resolver runs as before.

A field with no resolver at all (a plain attribute: a license's `key`, `state`, `site`, ...) is read by
Strawberry through three calls (a wrapper, `get_result`, the default resolver) per object; `install`
reads it with one `operator.attrgetter` instead (700 fields on a page of 100 licenses). An enum value
(a license's `state`) is named by one dictionary lookup, where Strawberry's enum type compares it with
each of the enum's values in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import strawberry
from graphql import GraphQLEnumType, GraphQLObjectType, GraphQLResolveInfo

# What `ReadyField.ready` answers when the object does not hold the value: the resolver is called.
NOT_READY: Any = object()


@dataclass(frozen=True)
class ReadyField:
    type_name: str
    field_name: str
    ready: Callable[[Any], Any]


def install(schema: strawberry.Schema, fields: Iterable[ReadyField]) -> None:
    _read_plain_attributes(schema)
    _name_enum_values_by_lookup(schema)
    for field in fields:
        owner = schema._schema.type_map[field.type_name]
        assert isinstance(owner, GraphQLObjectType)
        definition = owner.fields[field.field_name]
        definition.resolve = _ready_first(field.ready, definition.resolve)


def _ready_first(ready: Callable[[Any], Any], resolve: Any) -> Callable[..., Any]:
    def resolve_ready_first(source: Any, info: GraphQLResolveInfo, **arguments: Any) -> Any:
        value = ready(source)
        return resolve(source, info, **arguments) if value is NOT_READY else value

    return resolve_ready_first


def _read_plain_attributes(schema: strawberry.Schema) -> None:
    """Every field Strawberry resolves by its default resolver (no resolver, no field extension: what
    it marks `_is_default`) reads its Python attribute directly, as that resolver (`getattr`) would."""
    if schema.config.default_resolver is not getattr:
        return
    for owner in schema._schema.type_map.values():
        if not isinstance(owner, GraphQLObjectType) or owner.name.startswith("__"):
            continue
        for definition in owner.fields.values():
            if getattr(definition.resolve, "_is_default", False):
                field = definition.extensions["strawberry-definition"]
                definition.resolve = _attribute(attrgetter(field.python_name))


def _attribute(read: Callable[[Any], Any]) -> Callable[..., Any]:
    def resolve_attribute(source: Any, _info: GraphQLResolveInfo, **_arguments: Any) -> Any:
        return read(source)

    return resolve_attribute


def _name_enum_values_by_lookup(schema: strawberry.Schema) -> None:
    """Each enum type names a value by a dictionary of its values (a StrEnum or IntEnum member is
    found by its value: it hashes and compares as it); anything else goes to the type's own code."""
    for owner in schema._schema.type_map.values():
        if isinstance(owner, GraphQLEnumType) and not owner.name.startswith("__"):
            names = {value.value: name for name, value in owner.values.items()}
            owner.coerce_output_value = _named(names, owner.coerce_output_value)  # type: ignore[method-assign,assignment]


def _named(names: dict[Any, str], otherwise: Callable[[Any], str]) -> Callable[[Any], str]:
    def name_of(value: Any) -> str:
        found = names.get(value)
        return otherwise(value) if found is None else found

    return name_of
