"""The audit log: every recorded event with its actor, filtered by partner, actor, kind and time.

Partner admins read their own partner's entries; staff read any partner's (the policy table in
domain.access holds `audit:read`). Entries are listed newest first, in the order they were recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from domain.errors import DomainError, ErrorCode

# What an event is about (the event table's streams); features may add kinds, so a filter takes any name.
EVENT_KINDS = ("license", "standing", "invoice", "payment_method", "api_token")
MAX_NAMES = 20
MAX_NAME_LENGTH = 32


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to list; every part is optional, and the parts given must all match.

    `since` is inclusive and `until` exclusive, compared with when the event happened (`at`).
    """

    partner_id: str | None = None
    actor_token_id: str | None = None
    actor_job: str | None = None
    kinds: frozenset[str] | None = None
    actions: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def checked(self) -> AuditFilter:
        """This filter, if it makes sense (INVALID_INPUT naming the part that does not)."""
        since, until = _utc(self.since, "since"), _utc(self.until, "until")
        if since is not None and until is not None and until <= since:
            raise DomainError(ErrorCode.INVALID_INPUT, "'until' must be after 'since'.", "until")
        for name, names in (("kinds", self.kinds), ("actions", self.actions)):
            if names is not None and (
                not 1 <= len(names) <= MAX_NAMES or not all(0 < len(n) <= MAX_NAME_LENGTH for n in names)
            ):
                raise DomainError(
                    ErrorCode.INVALID_INPUT,
                    f"Give 1 to {MAX_NAMES} {name} of at most {MAX_NAME_LENGTH} characters, or omit it.",
                    name,
                )
        if self.actor_job is not None and not 0 < len(self.actor_job) <= MAX_NAME_LENGTH:
            raise DomainError(ErrorCode.INVALID_INPUT, "'actorJob' is not a job name.", "actorJob")
        return replace(self, since=since, until=until)


def _utc(instant: datetime | None, name: str) -> datetime | None:
    """An instant with its offset, in UTC; one outside the calendar in UTC (year 0 or 10000) is refused."""
    if instant is None:
        return None
    if instant.tzinfo is None:
        raise DomainError(ErrorCode.INVALID_INPUT, f"'{name}' needs a UTC offset.", name)
    try:
        return instant.astimezone(UTC)
    except OverflowError as error:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"'{name}' is outside the calendar in UTC.", name
        ) from error
