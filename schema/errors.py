"""The error model: typed `UserError`s in payloads, and masking of everything unexpected."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError

from domain.errors import DomainError
from domain.errors import ErrorCode as DomainErrorCode
from schema.enums import described_enum

T = TypeVar("T")

IDEMPOTENCY_KEY_DESCRIPTION = "Optional: a replay with the same key returns the first response."
# Every mutation takes one `input`; its type's description says what it changes.
MUTATION_INPUT = strawberry.argument(description="What to change: the fields of the input type.")
log = logging.getLogger("licensing.errors")

ErrorCode = DomainErrorCode
C = DomainErrorCode
# When each code is returned: the SDL's description of each ErrorCode value (a code missing here fails
# at import). Codes go in `errors[].code` of a payload or in `extensions.code` of a GraphQL error.
ERROR_CODE_DESCRIPTIONS: dict[DomainErrorCode, str] = {
    C.UNAUTHENTICATED: "No token, or the token is unknown, expired or revoked (HTTP 401 outside GraphQL).",
    C.FORBIDDEN: "The token's role lacks the permission the field needs, or a partner token asked for a "
    "staff-only action (or the reverse).",
    C.NOT_FOUND: "The id, key or slug names nothing the caller may see: it does not exist or belongs to "
    "another partner (the two are not told apart).",
    C.INVALID_INPUT: "An input value is malformed or out of range: an instant without an offset, a bad "
    "cursor or page size, a malformed global id, an empty list; `field` names it.",
    C.UNKNOWN_TIME_ZONE: "`billingZone` is not an IANA time zone name.",
    C.UNSUPPORTED_CURRENCY: "The currency is not one the service bills in.",
    C.SANDBOX_DISABLED: "advanceSandboxClock was called on a server not in sandbox mode.",
    C.CLOCK_BACKWARDS: "advanceSandboxClock was asked to move the sandbox clock into the past.",
    C.IDEMPOTENCY_KEY_REUSED: "The idempotency key was used before with a different input.",
    C.CONFLICT: "The change collides with existing state: a product slug already taken, a refund "
    "still waiting for Stripe, or the same idempotency key in flight in another request.",
    C.PAYMENT_METHOD_NOT_FOUND: "The payment method id is not one of the partner's cards on file.",
    C.PAYMENT_METHOD_NOT_USABLE: "The card was removed, is on file for another partner, or Stripe "
    "cannot attach it; the browser must collect it anew.",
    C.PAYMENT_METHOD_DECLINED: "The card was declined when Stripe verified it on addPaymentMethod.",
    C.PAYMENT_GATEWAY_UNAVAILABLE: "Stripe did not answer in time or failed; nothing was recorded, "
    "retry with the same idempotency key.",
    C.INVALID_TRANSITION: "The license, invoice or standing is in a state that does not allow the "
    "action (e.g. revoking a revoked license, refunding an unpaid invoice).",
    C.MONTH_NOT_OVER: "closeBillingMonth was asked for a month that has not ended in a partner's zone.",
    C.NO_PAYMENT_METHOD: "Issuing or assigning while no card is on file, or paying with no card.",
    C.ACCOUNT_PAST_DUE: "Issuing or assigning while an invoice is past due: pay it first.",
    C.SITE_TAKEN: "Another active license of the same product is already assigned to the site.",
    C.INVALID_SITE: "The site is not a valid http(s) URL with a public host name.",
    C.UNKNOWN_PRODUCT: "The product slug is not in the catalog.",
    C.TRANSFER_CODE_INVALID: "The transfer code is unknown, already used or cancelled.",
    C.TRANSFER_CODE_EXPIRED: "The transfer code is more than 7 days old.",
    C.OWN_TRANSFER: "A partner tried to accept its own license transfer.",
    C.PAYMENT_FAILED: "payInvoice charged the card and it was declined; the invoice stays unpaid.",
    C.PRICE_NOT_AVAILABLE: "The product has no price in the partner's currency on that day.",
    C.CURRENCY_LOCKED: "setPartnerCurrency on a partner that has already held licenses.",
    C.MONTH_CLOSED: "setProductPrice from a day in a month that is already invoiced.",
    C.PRODUCT_RETIRED: "Issuing a product staff retired.",
    C.REFUND_EXCEEDS_PAYMENT: "refundInvoice asked for more than is left of what was paid.",
    C.REFUND_REFUSED: "Stripe refused the refund; nothing was refunded.",
    C.BAD_REQUEST: "The request itself is wrong: an HTTP method or body the endpoint does not take, or "
    "a subscription sent over HTTP instead of a websocket.",
    C.GRAPHQL_PARSE_FAILED: "The document is not valid GraphQL syntax.",
    C.GRAPHQL_VALIDATION_FAILED: "The document does not validate against the schema (unknown field, "
    "wrong argument type).",
    C.QUERY_TOO_COMPLEX: "The document exceeds the depth, token, alias or field limits.",
    C.REQUEST_TOO_LARGE: "The request body is larger than the limit (HTTP 413).",
    C.REQUEST_TIMEOUT: "The request ran past its time budget and was cut off (HTTP 503); retry.",
}
described_enum(
    ErrorCode,
    name="ErrorCode",
    description="A stable code for each way a request can be refused.",
    values=ERROR_CODE_DESCRIPTIONS,
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
