"""Typed, user-facing failures: a stable code, a clear message and the input field at fault."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable codes the frontend switches on. Extend, never rename."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    UNKNOWN_TIME_ZONE = "UNKNOWN_TIME_ZONE"
    UNSUPPORTED_CURRENCY = "UNSUPPORTED_CURRENCY"
    SANDBOX_DISABLED = "SANDBOX_DISABLED"
    CLOCK_BACKWARDS = "CLOCK_BACKWARDS"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    CONFLICT = "CONFLICT"
    PAYMENT_METHOD_NOT_FOUND = "PAYMENT_METHOD_NOT_FOUND"
    PAYMENT_METHOD_NOT_USABLE = "PAYMENT_METHOD_NOT_USABLE"
    PAYMENT_METHOD_DECLINED = "PAYMENT_METHOD_DECLINED"
    PAYMENT_GATEWAY_UNAVAILABLE = "PAYMENT_GATEWAY_UNAVAILABLE"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    MONTH_NOT_OVER = "MONTH_NOT_OVER"
    NO_PAYMENT_METHOD = "NO_PAYMENT_METHOD"
    ACCOUNT_PAST_DUE = "ACCOUNT_PAST_DUE"
    SITE_TAKEN = "SITE_TAKEN"
    INVALID_SITE = "INVALID_SITE"
    UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"
    TRANSFER_CODE_INVALID = "TRANSFER_CODE_INVALID"
    TRANSFER_CODE_EXPIRED = "TRANSFER_CODE_EXPIRED"
    OWN_TRANSFER = "OWN_TRANSFER"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    PRICE_NOT_AVAILABLE = "PRICE_NOT_AVAILABLE"
    CURRENCY_LOCKED = "CURRENCY_LOCKED"
    MONTH_CLOSED = "MONTH_CLOSED"
    PRODUCT_RETIRED = "PRODUCT_RETIRED"
    REFUND_EXCEEDS_PAYMENT = "REFUND_EXCEEDS_PAYMENT"
    REFUND_REFUSED = "REFUND_REFUSED"
    # Refusals of the request itself, before any field runs.
    BAD_REQUEST = "BAD_REQUEST"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"


class DomainError(Exception):
    """A rule said no. Carries what the client needs to show and fix the problem."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"DomainError({self.code.value}, {self.message!r}, field={self.field!r})"
