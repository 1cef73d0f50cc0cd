"""`auditLog`: every recorded event with who did it, for partner admins (own partner) and staff (any).
The same filter is exported as CSV by `GET /audit-log.csv` (app/audit_export.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import strawberry

from domain.actors import Actor as RecordedActor
from domain.audit_log import EVENT_KINDS, AuditFilter
from persistence.events import RecordedEvent
from resolvers import audit_log
from schema.actors import Actor, actor_for
from schema.context import Info
from schema.pagination import Connection, connection, selects_total_count

KINDS = ", ".join(EVENT_KINDS)


@strawberry.input(description="Which audit log entries to list; the parts given must all match.")
class AuditLogFilter:
    partner_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Staff: only this partner's entries (omitted: every partner's). A partner admin always "
        "reads its own; another partner's id is NOT_FOUND.",
    )
    actor_token_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Only what this API token did (a partner admin: one of its own partner's tokens).",
    )
    actor_job: str | None = strawberry.field(
        default=None, description="Only what this system job did (month-close, dunning, stripe-webhook, ...)."
    )
    kinds: list[str] | None = strawberry.field(
        default=None, description=f"Only events about these kinds of things (1 to 20 of: {KINDS})."
    )
    actions: list[str] | None = strawberry.field(
        default=None, description="Only these actions (1 to 20, e.g. revoke, finalize, created)."
    )
    since: datetime | None = strawberry.field(
        default=None, description="Only events that happened at or after this instant."
    )
    until: datetime | None = strawberry.field(
        default=None, description="Only events that happened before this."
    )

    def to_domain(self) -> AuditFilter:
        return AuditFilter(
            partner_id=None if self.partner_id is None else str(self.partner_id),
            actor_token_id=None if self.actor_token_id is None else str(self.actor_token_id),
            actor_job=self.actor_job,
            kinds=None if self.kinds is None else frozenset(self.kinds),
            actions=None if self.actions is None else frozenset(self.actions),
            since=self.since,
            until=self.until,
        )


@strawberry.type(description="One entry of the audit log: an event, and who made it.")
class AuditEntry:
    partner_id: strawberry.ID = strawberry.field(description="Whose feed the event is on.")
    seq: int = strawberry.field(description="The event's number in that partner's feed.")
    kind: str = strawberry.field(description=f"What it is about: {KINDS}.")
    subject: str = strawberry.field(
        description="Which one: a license key, an invoice id, a card or token id."
    )
    action: str = strawberry.field(
        description="What happened (issue, revoke, finalize, payment_attempt, ...)."
    )
    from_state: str | None = strawberry.field(description="The state before, when the event moved one.")
    to_state: str | None = strawberry.field(description="The state after.")
    at: datetime = strawberry.field(description="When it happened.")
    request_id: str | None = strawberry.field(description="The API request that made it, if one did.")
    details: str = strawberry.field(description="What else the event recorded, as a JSON object.")
    recorded_actor: strawberry.Private[RecordedActor]

    @strawberry.field(description="Who made it: an API token (id and label) or a system job.")
    def actor(self, info: Info) -> Actor:
        return actor_for(info, self.recorded_actor)

    @classmethod
    def of(cls, event: RecordedEvent) -> AuditEntry:
        return cls(
            partner_id=strawberry.ID(event.partner_id),
            seq=event.seq,
            kind=event.stream,
            subject=event.subject,
            action=event.action,
            from_state=event.from_state,
            to_state=event.to_state,
            at=event.at,
            request_id=event.request_id,
            details=json.dumps(event.payload, sort_keys=True),
            recorded_actor=event.actor,
        )


@strawberry.type
class AuditLogQuery:
    @strawberry.field(
        description="Who did what: every event (license, standing, invoice, card and token changes) with its "
        "actor, newest first, filtered. A partner admin reads its own partner's entries; staff any "
        "partner's. The same filter as CSV: GET /audit-log.csv (see the README)."
    )
    async def audit_log(
        self,
        info: Info,
        filter: Annotated[
            AuditLogFilter | None, strawberry.argument(description="Which entries (omitted: all).")
        ] = None,
        first: Annotated[int | None, strawberry.argument(description="Page size, 1 to 100 (20).")] = None,
        after: Annotated[str | None, strawberry.argument(description="An `endCursor` to go on from.")] = None,
    ) -> Connection[AuditEntry]:
        page = await audit_log.audit_log(
            info.context,
            where=(filter or AuditLogFilter()).to_domain(),
            first=first,
            after=after,
            count_total=selects_total_count(info),
        )
        return connection(page, AuditEntry.of)
