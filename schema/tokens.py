"""API tokens in the API: list them (`apiTokens`), mint (`createApiToken`), revoke and rotate them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from graphql import FieldNode, get_operation_ast
from strawberry.types import ExecutionContext

from domain.access import ApiToken as StoredToken
from domain.access import Role
from resolvers import tokens
from resolvers.context import RequestContext
from schema.context import Info
from schema.enums import described_enum
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt

described_enum(
    Role,
    name="ApiTokenRole",
    values={
        Role.ADMIN: "A partner's administrator: everything its partner may do, including its tokens.",
        Role.LICENSES: "A partner token that reads everything and changes licenses.",
        Role.BILLING: "A partner token that reads everything, manages cards and pays invoices.",
        Role.READ_ONLY: "A partner token that only reads its partner's records.",
        Role.STAFF_ADMIN: "Staff operating the system: partners, catalog, month close, refunds, tokens.",
        Role.STAFF_SUPPORT: "Staff who read any partner's records and change nothing.",
    },
    description=(
        "What a token may do. Partner roles: admin (everything), licenses (license changes), billing "
        "(payment methods, paying invoices), read_only. Staff roles: staff_admin, staff_support (reads only)."
    ),
)


# Root fields that never ask who the caller is: an operation made only of these skips the token lookup.
ANONYMOUS_ROOT_FIELDS = frozenset({"support", "__typename", "__schema", "__type"})


async def identify_if_needed(context: ExecutionContext) -> None:
    """Look the request's bearer token up before execution, unless no root field needs a caller."""
    request = context.context
    needs_lookup = isinstance(request, RequestContext) and request.unread_token is not None
    if needs_lookup and not only_anonymous_fields(context):
        await tokens.identify_caller(request)


def only_anonymous_fields(context: ExecutionContext) -> bool:
    document = context.graphql_document
    operation = None if document is None else get_operation_ast(document, context.operation_name)
    if operation is None:
        return False
    return all(
        isinstance(selection, FieldNode) and selection.name.value in ANONYMOUS_ROOT_FIELDS
        for selection in operation.selection_set.selections
    )


@strawberry.type(description="A new API token. The secret is shown only in this response.")
class ApiToken:
    id: strawberry.ID = strawberry.field(description="Token id (not the secret).")
    secret: str | None = strawberry.field(
        description="Send as 'Authorization: Bearer <secret>'. Shown once: an idempotent replay returns null."
    )
    partner_id: strawberry.ID | None = strawberry.field(description="The partner it acts for, if any.")
    staff: bool = strawberry.field(description="Whether it operates the system as staff.")
    label: str = strawberry.field(description="A note saying what the token is for.")
    role: Role = strawberry.field(description="What the token may do.")
    expires_at: datetime | None = strawberry.field(description="It stops working at this instant, if set.")

    @classmethod
    def of(cls, grant: tokens.TokenGrant) -> ApiToken:
        return cls(
            id=strawberry.ID(grant.id),
            secret=grant.secret,
            partner_id=None if grant.partner_id is None else strawberry.ID(grant.partner_id),
            staff=grant.is_staff,
            label=grant.label,
            role=grant.role,
            expires_at=grant.expires_at,
        )


@strawberry.type(description="An API token as its owners see it; the secret is never shown again.")
class ApiTokenDetails:
    id: strawberry.ID = strawberry.field(description="Token id (not the secret).")
    partner_id: strawberry.ID | None = strawberry.field(description="The partner it acts for (none: staff).")
    label: str = strawberry.field(description="A note saying what the token is for.")
    role: Role = strawberry.field(description="What the token may do.")
    created_at: datetime = strawberry.field(description="When it was minted.")
    last_used_at: datetime | None = strawberry.field(
        description="When it last authenticated a request, to the minute (recorded at most once a minute)."
    )
    expires_at: datetime | None = strawberry.field(description="It stops working at this instant, if set.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked, if it was.")

    @classmethod
    def of(cls, token: StoredToken) -> ApiTokenDetails:
        return cls(
            id=strawberry.ID(token.id),
            partner_id=None if token.partner_id is None else strawberry.ID(token.partner_id),
            label=token.label,
            role=token.role,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )


@strawberry.input(description="A token for a partner, or a staff token.")
class CreateApiTokenInput:
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Partner to act for (a partner admin: its own, the default)."
    )
    staff: bool = strawberry.field(default=False, description="Mint a staff token instead.")
    label: str = strawberry.field(default="", description="What the token is for.")
    role: Role | None = strawberry.field(
        default=None, description="What it may do (default admin, or staff_admin); never above your own."
    )
    expires_at: datetime | None = strawberry.field(
        default=None, description="When it stops working (default: never)."
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.input(description="The token to revoke or rotate.")
class ApiTokenIdInput:
    id: strawberry.ID = strawberry.field(description="Token id.")


@strawberry.type(description="The result of createApiToken or rotateApiToken.")
class CreateApiTokenPayload:
    token: ApiToken | None = strawberry.field(description="The new token, unless there were errors.")
    errors: list[UserError] = strawberry.field(description="Why no token was made, if it was not.")


@strawberry.type(description="The result of revokeApiToken.")
class RevokeApiTokenPayload:
    token: ApiTokenDetails | None = strawberry.field(
        description="The revoked token, unless there were errors."
    )
    errors: list[UserError] = strawberry.field(description="Why nothing was revoked, if it was not.")


@strawberry.type
class TokenQuery:
    @strawberry.field(description="API tokens: a partner admin's own partner's; staff see every token.")
    async def api_tokens(self, info: Info) -> list[ApiTokenDetails]:
        return [ApiTokenDetails.of(token) for token in await tokens.list_api_tokens(info.context)]


@strawberry.type
class TokenMutation:
    @strawberry.mutation(
        description="Mint an API token: staff for anyone; a partner admin for its own partner, "
        "with a role no higher than its own."
    )
    async def create_api_token(
        self, info: Info, input: Annotated[CreateApiTokenInput, MUTATION_INPUT]
    ) -> CreateApiTokenPayload:
        issued, errors = await attempt(
            tokens.create_api_token(
                info.context,
                partner_id=None if input.partner_id is None else str(input.partner_id),
                staff=input.staff,
                label=input.label,
                role=input.role,
                expires_at=input.expires_at,
                idempotency_key=input.idempotency_key,
            )
        )
        return CreateApiTokenPayload(token=None if issued is None else ApiToken.of(issued), errors=errors)

    @strawberry.mutation(
        description="Stop a token now: HTTP refuses it; its open websockets close (4403) on every worker."
    )
    async def revoke_api_token(
        self, info: Info, input: Annotated[ApiTokenIdInput, MUTATION_INPUT]
    ) -> RevokeApiTokenPayload:
        revoked, errors = await attempt(tokens.revoke_api_token(info.context, token_id=str(input.id)))
        return RevokeApiTokenPayload(
            token=None if revoked is None else ApiTokenDetails.of(revoked), errors=errors
        )

    @strawberry.mutation(
        description="A new secret for a token (same partner, role, label and expiry, new id); the old secret "
        "keeps working for one hour, then stops as if revoked."
    )
    async def rotate_api_token(
        self, info: Info, input: Annotated[ApiTokenIdInput, MUTATION_INPUT]
    ) -> CreateApiTokenPayload:
        rotated, errors = await attempt(tokens.rotate_api_token(info.context, token_id=str(input.id)))
        return CreateApiTokenPayload(token=None if rotated is None else ApiToken.of(rotated), errors=errors)
