"""The audit log: every recorded event with its actor, filtered by partner, actor, kind and time.

Partner admins read their own partner's entries; staff read any partner's (the policy table in
domain.access holds `audit:read`). Entries are listed newest first, in the order they were recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
        for name, instant in (("since", self.since), ("until", self.until)):
            if instant is not None and instant.tzinfo is None:
                raise DomainError(ErrorCode.INVALID_INPUT, f"'{name}' needs a UTC offset.", name)
        if self.since is not None and self.until is not None and self.until <= self.since:
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
        return self
