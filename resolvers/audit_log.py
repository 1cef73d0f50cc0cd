"""auditLog and its CSV export: who did what, for partner admins (their own partner) and staff (any)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import AsyncIterator

from domain.access import Permission
from domain.audit_log import AuditFilter
from domain.errors import DomainError, ErrorCode
from persistence.events import RecordedEvent
from persistence.pagination import Page
from resolvers.context import RequestContext

# Rows read per short read transaction while the export streams: no connection is held while a slow
# client reads.
EXPORT_BATCH = 500

CSV_HEADER = (
    "at",
    "partner_id",
    "seq",
    "kind",
    "subject",
    "action",
    "from_state",
    "to_state",
    "actor_kind",
    "actor_token_id",
    "actor_label",
    "actor_job",
    "request_id",
    "details",
)


async def scoped_filter(ctx: RequestContext, where: AuditFilter) -> AuditFilter:
    """The filter the caller may run: staff any partner's (or all); a partner admin only its own.

    Another partner's id, or a token that is not the caller's partner's, answers NOT_FOUND like an
    unknown one, so the filter tells nothing about other partners."""
    caller = ctx.require(Permission.AUDIT_READ)
    own = None if caller.is_staff else caller.require_partner()
    where = where.checked()
    if own is not None and where.partner_id not in (None, own):
        raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{where.partner_id}'.", "partnerId")
    async with ctx.reader() as uow:
        if where.partner_id is not None and own is None and await uow.partners.get(where.partner_id) is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{where.partner_id}'.", "partnerId")
        if where.actor_token_id is not None:
            token = await uow.tokens.get(where.actor_token_id)
            if token is None or (own is not None and token.partner_id != own):
                raise DomainError(
                    ErrorCode.NOT_FOUND, f"No API token '{where.actor_token_id}'.", "actorTokenId"
                )
    return where if own is None else dataclasses.replace(where, partner_id=own)


async def audit_log(
    ctx: RequestContext,
    *,
    where: AuditFilter,
    first: int | None = None,
    after: str | None = None,
    count_total: bool = False,
) -> Page[RecordedEvent]:
    """A page of the entries the caller may read, newest first."""
    scoped = await scoped_filter(ctx, where)
    async with ctx.reader() as uow:
        return await uow.audit_log.page(scoped, first=first, after=after, count_total=count_total)


async def audit_log_csv(ctx: RequestContext, *, where: AuditFilter) -> AsyncIterator[str]:
    """The same entries as CSV, streamed: the caller is checked before the first line, then rows are
    read `EXPORT_BATCH` at a time, each batch in its own read transaction."""
    scoped = await scoped_filter(ctx, where)
    viewer = ctx.caller()
    viewer_partner = None if viewer.is_staff else viewer.partner_id

    async def rows() -> AsyncIterator[str]:
        yield _line(CSV_HEADER)
        before_id: int | None = None
        while True:
            async with ctx.reader() as uow:
                batch = await uow.audit_log.batch(scoped, before_id=before_id, limit=EXPORT_BATCH)
            if not batch:
                return
            yield "".join(_line(_row(event, viewer_partner)) for event in batch)
            if len(batch) < EXPORT_BATCH:
                return
            before_id = batch[-1].id

    return rows()


def _row(event: RecordedEvent, viewer_partner: str | None) -> tuple[object, ...]:
    actor = event.actor.seen_by(viewer_partner)
    return (
        event.at.isoformat(),
        event.partner_id,
        event.seq,
        event.stream,
        event.subject,
        event.action,
        event.from_state or "",
        event.to_state or "",
        actor.kind.value,
        actor.token_id or "",
        actor.label or "",
        actor.job or "",
        event.request_id or "",
        json.dumps(event.payload, sort_keys=True, separators=(",", ":")),
    )


# A cell a spreadsheet would run as a formula (CSV injection): written with a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _line(cells: tuple[object, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell for cell in cells
    )
    return out.getvalue()
