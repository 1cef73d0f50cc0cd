"""The error model: typed `UserError`s in payloads, and masking of everything unexpected."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError

from domain.errors import DomainError
from domain.errors import ErrorCode as DomainErrorCode

T = TypeVar("T")

IDEMPOTENCY_KEY_DESCRIPTION = "Optional: a replay with the same key returns the first response."
log = logging.getLogger("licensing.errors")

ErrorCode = DomainErrorCode
strawberry.enum(
    ErrorCode, name="ErrorCode", description="A stable code for each way a request can be refused."
)


@strawberry.type(description="A problem with the request that the caller can fix; nothing was written.")
class UserError:
    code: ErrorCode = strawberry.field(description="Stable machine-readable code.")
    message: str = strawberry.field(description="What went wrong, in words for a person.")
    field: str | None = strawberry.field(description="The input field at fault, when there is one.")

    @classmethod
    def from_domain(cls, error: DomainError) -> UserError:
        return cls(code=error.code, message=error.message, field=error.field)


async def attempt(call: Awaitable[T]) -> tuple[T | None, list[UserError]]:
    """Await a use case; a DomainError becomes the payload's `errors` (its transaction was rolled back)."""
    try:
        return await call, []
    except DomainError as error:
        return None, [UserError.from_domain(error)]


def mask_errors(result: Any, request_id: str) -> None:
    """DomainErrors raised by fields become coded errors; anything else is masked with a request id.
    (Over websockets each result is sent as it is yielded: its errors are presented before that.)"""
    if result is not None and result.errors:
        result.errors = [present_error(error, request_id) for error in result.errors]


def present_error(error: GraphQLError, request_id: str) -> GraphQLError:
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return _with_code(error)
    if isinstance(original, DomainError):
        return GraphQLError(
            original.message,
            nodes=error.nodes,
            path=error.path,
            extensions={"code": original.code.value, "field": original.field},
        )
    log.error("unexpected error (request %s)", request_id, exc_info=original)
    # The client gets the request id only; the trace stays in the log.
    return GraphQLError(
        f"Internal server error. Quote request id {request_id} to support.",
        nodes=error.nodes,
        path=error.path,
        extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
    )


def _with_code(error: GraphQLError) -> GraphQLError:
    """Errors of the document itself (syntax, validation) get a code like every other error."""
    if (error.extensions or {}).get("code") or error.path is not None:
        return error
    if isinstance(error, GraphQLSyntaxError):
        # graphql-core's parser enforces the token limit and says so in this one message.
        too_long = "tokens. Parsing aborted" in error.message or "nested too deeply" in error.message
        code = DomainErrorCode.QUERY_TOO_COMPLEX if too_long else DomainErrorCode.GRAPHQL_PARSE_FAILED
    else:
        code = DomainErrorCode.GRAPHQL_VALIDATION_FAILED
    error.extensions = {**(error.extensions or {}), "code": code.value}
    return error
