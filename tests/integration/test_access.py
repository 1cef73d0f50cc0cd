"""Roles: every query and mutation of the live schema, called with a token of every role. A role the
policy table refuses gets FORBIDDEN naming the permission; a role it allows never does. A root field
without a policy entry cannot be built into the schema at all."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
)

from domain.access import Permission, Role, allows, roles_sentence
from schema.access import ROOT_FIELD_PERMISSIONS
from schema.build import build_schema
from tests.integration.conftest import CREATE_TOKEN, Api, PartnerAccess

LIVE = build_schema()._schema
SCALAR_SAMPLES: dict[str, Any] = {
    "Int": 1,
    "Float": 1.0,
    "Boolean": False,
    "DateTime": "2026-01-01T00:00:00+00:00",
    "Date": "2026-01-01",
}


def sample(kind: GraphQLInputType) -> Any:
    """Some well-typed value: it gets past GraphQL validation so the use case itself decides."""
    if isinstance(kind, GraphQLNonNull):
        return sample(kind.of_type)
    if isinstance(kind, GraphQLList):
        return [sample(kind.of_type)]
    if isinstance(kind, GraphQLEnumType):
        return next(iter(kind.values))
    if isinstance(kind, GraphQLInputObjectType):
        return {
            name: sample(field.type)
            for name, field in kind.fields.items()
            if isinstance(field.type, GraphQLNonNull)
        }
    assert isinstance(kind, GraphQLScalarType)
    return SCALAR_SAMPLES.get(kind.name, "x")


def document(operation: str, name: str) -> tuple[str, dict[str, Any]]:
    root = LIVE.query_type if operation == "query" else LIVE.mutation_type
    assert root is not None
    field = root.fields[name]
    required = {arg: spec for arg, spec in field.args.items() if isinstance(spec.type, GraphQLNonNull)}
    declared = ", ".join(f"${arg}: {spec.type}" for arg, spec in required.items())
    passed = ", ".join(f"{arg}: ${arg}" for arg in required)
    returned = get_named_type(field.type)
    selection = ""
    if isinstance(returned, GraphQLObjectType):
        selection = "{ errors { code message } }" if "errors" in returned.fields else "{ __typename }"
    head = f"{operation}({declared})" if declared else operation
    call = f"{name}({passed})" if passed else name
    text = f"{head} {{ {call} {selection} }}"
    return text, {arg: sample(spec.type) for arg, spec in required.items()}


def refusals(body: dict[str, Any], name: str) -> list[str]:
    """Messages of every FORBIDDEN answer, top-level or in the payload."""
    found = [e for e in body.get("errors") or [] if (e.get("extensions") or {}).get("code") == "FORBIDDEN"]
    payload = (body.get("data") or {}).get(name) or {}
    if isinstance(payload, dict):
        found += [e for e in payload.get("errors") or [] if e["code"] == "FORBIDDEN"]
    return [error["message"] for error in found]


def root_fields() -> list[tuple[str, str]]:
    assert LIVE.query_type is not None and LIVE.mutation_type is not None
    return [("query", name) for name in LIVE.query_type.fields] + [
        ("mutation", name) for name in LIVE.mutation_type.fields
    ]


@pytest.fixture
async def tokens_by_role(api: Api, staff_token: str, partner: PartnerAccess) -> dict[Role, str]:
    minted: dict[Role, str] = {}
    for role in Role:
        scope = {"staff": True} if role.is_staff else {"partnerId": partner.id}
        body = await api.data(CREATE_TOKEN, {"input": {**scope, "role": role.name}}, staff_token)
        minted[role] = body["createApiToken"]["token"]["secret"]
    return minted


def test_every_root_field_has_a_policy_entry_named_in_its_description() -> None:
    for type_name, root in (
        ("Query", LIVE.query_type),
        ("Mutation", LIVE.mutation_type),
        ("Subscription", LIVE.subscription_type),
    ):
        assert root is not None
        for name, field in root.fields.items():
            permission = ROOT_FIELD_PERMISSIONS[type_name][name]
            assert (field.description or "").endswith(roles_sentence(permission)), name


async def test_every_query_and_mutation_refuses_exactly_the_roles_the_policy_table_refuses(
    api: Api, tokens_by_role: dict[Role, str]
) -> None:
    table = {**ROOT_FIELD_PERMISSIONS["Query"], **ROOT_FIELD_PERMISSIONS["Mutation"]}
    wrong: list[str] = []
    for operation, name in root_fields():
        permission = table[name]
        text, variables = document(operation, name)
        for role, token in tokens_by_role.items():
            body = await api.call(text, variables, token)
            named = [m for m in refusals(body, name) if f"`{permission.value}`" in m]
            if allows(role, permission) == bool(named):
                wrong.append(f"{name} as {role.value}: {body}")
    assert wrong == []


async def test_a_refusal_names_the_permission_and_the_roles_that_hold_it(
    api: Api, tokens_by_role: dict[Role, str]
) -> None:
    body = await api.call(
        'mutation { removePaymentMethod(input: {paymentMethodId: "pm_x"}) { errors { code message } } }',
        token=tokens_by_role[Role.LICENSES],
    )
    assert body["data"]["removePaymentMethod"]["errors"] == [
        {
            "code": "FORBIDDEN",
            "message": "A 'licenses' token may not do this. "
            "Needs permission `payments:write` (roles: admin, billing).",
        }
    ]
    assert (
        roles_sentence(Permission.INVOICE_ADJUST)
        == "Needs permission `invoices:adjust` (roles: staff_admin)."
    )
