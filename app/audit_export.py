"""GET /audit-log.csv: the audit log's filter as query parameters (the same as auditLog's `filter`)."""

from __future__ import annotations

from datetime import datetime

from starlette.datastructures import QueryParams

from domain.audit_log import AuditFilter
from domain.errors import DomainError, ErrorCode

# query parameter → AuditLogFilter field; `kind` and `action` may be repeated.
SINGLE = {"partnerId", "actorTokenId", "actorJob", "since", "until"}
REPEATED = {"kind", "action"}


def audit_filter(params: QueryParams) -> AuditFilter:
    """The filter the query string asks for; an unknown parameter or a bad instant is INVALID_INPUT."""
    unknown = sorted(set(params.keys()) - SINGLE - REPEATED)
    if unknown:
        accepted = ", ".join(sorted(SINGLE | REPEATED))
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Unknown parameter '{unknown[0]}' (accepted: {accepted})."
        )
    for name in SINGLE:
        if len(params.getlist(name)) > 1:
            raise DomainError(ErrorCode.INVALID_INPUT, f"Give '{name}' once.", name)
    kinds, actions = params.getlist("kind"), params.getlist("action")
    return AuditFilter(
        partner_id=params.get("partnerId"),
        actor_token_id=params.get("actorTokenId"),
        actor_job=params.get("actorJob"),
        kinds=frozenset(kinds) if kinds else None,
        actions=frozenset(actions) if actions else None,
        since=_instant(params, "since"),
        until=_instant(params, "until"),
    )


def _instant(params: QueryParams, name: str) -> datetime | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        message = f"'{name}' is not an ISO-8601 instant (e.g. 2026-07-01T00:00:00Z)."
        raise DomainError(ErrorCode.INVALID_INPUT, message, name) from error
