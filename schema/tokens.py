"""API tokens in the API: staff's `createApiToken`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import strawberry
from graphql import FieldNode, get_operation_ast
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from resolvers import tokens
from resolvers.context import RequestContext
from schema.context import Info
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, UserError, attempt

# Root fields that never ask who the caller is: an operation made only of these skips the token lookup.
ANONYMOUS_ROOT_FIELDS = frozenset({"support", "__typename", "__schema", "__type"})


class IdentifyCaller(SchemaExtension):
    """Looks the request's bearer token up before execution, unless no root field needs a caller."""

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        request = context.context
        needs_lookup = isinstance(request, RequestContext) and request.unread_token is not None
        if needs_lookup and not only_anonymous_fields(context):
            await tokens.identify_caller(request)
        yield


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


@strawberry.input(description="A token for a partner, or a staff token.")
class CreateApiTokenInput:
    partner_id: strawberry.ID | None = strawberry.field(default=None, description="Partner to act for.")
    staff: bool = strawberry.field(default=False, description="Mint a staff token instead.")
    label: str = strawberry.field(default="", description="What the token is for.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.type(description="The result of createApiToken.")
class CreateApiTokenPayload:
    token: ApiToken | None = strawberry.field(description="The new token, unless there were errors.")
    errors: list[UserError] = strawberry.field(description="Why no token was made, if it was not.")


@strawberry.type
class TokenMutation:
    @strawberry.mutation(description="Staff: mint an API token for a partner, or a staff token.")
    async def create_api_token(self, info: Info, input: CreateApiTokenInput) -> CreateApiTokenPayload:
        issued, errors = await attempt(
            tokens.create_api_token(
                info.context,
                partner_id=None if input.partner_id is None else str(input.partner_id),
                staff=input.staff,
                label=input.label,
                idempotency_key=input.idempotency_key,
            )
        )
        token = (
            None
            if issued is None
            else ApiToken(
                id=strawberry.ID(issued.id),
                secret=issued.secret,
                partner_id=None if issued.partner_id is None else strawberry.ID(issued.partner_id),
                staff=issued.is_staff,
                label=issued.label,
            )
        )
        return CreateApiTokenPayload(token=token, errors=errors)
