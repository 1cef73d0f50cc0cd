"""Billing runs as stored: the run, and one row per partner saying how far its close and charge went.

At most one run per month is unfinished at a time (a partial unique index), so a second start while
one runs finds the running one instead of starting another.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Row,
    Select,
    String,
    Table,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.billing_runs import (
    BillingRun,
    ChargeResult,
    CloseResult,
    PartnerState,
    RunCounts,
    RunPartner,
    RunProgress,
    RunStatus,
)
from persistence.invoices import invoices
from persistence.metadata import metadata
from persistence.partners import partners
from persistence.tokens import api_tokens
from persistence.types import UTCDateTime

billing_runs = Table(
    "billing_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("month", String(7), nullable=False),
    Column("status", String(16), nullable=False),
    Column("as_of", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("started_by", String(32), nullable=True),
    Index(
        "uq_billing_runs_running_month",
        "month",
        unique=True,
        sqlite_where=text("status = 'running'"),
        postgresql_where=text("status = 'running'"),
    ),
    Index("ix_billing_runs_started_at", "started_at"),
)

billing_run_partners = Table(
    "billing_run_partners",
    metadata,
    Column("run_id", String(32), ForeignKey("billing_runs.id"), nullable=False),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("close_result", String(16), nullable=True),
    Column("charge_result", String(16), nullable=True),
    Column("tries", Integer, nullable=False),
    Column("reason", String(500), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("run_id", "partner_id"),
    Index("ix_billing_run_partners_run_state", "run_id", "state"),
)

OPEN_STATES = [PartnerState.PENDING.value, PartnerState.RETRYING.value]


def _run_rows() -> Select[Any]:
    """Runs with the label of the staff token that started one (labels never change)."""
    return select(billing_runs, api_tokens.c.label.label("started_by_label")).select_from(
        billing_runs.outerjoin(api_tokens, api_tokens.c.id == billing_runs.c.started_by)
    )


class BillingRunRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def running(self, month: str) -> BillingRun | None:
        row = (
            await self._connection.execute(
                _run_rows().where(
                    billing_runs.c.month == month, billing_runs.c.status == RunStatus.RUNNING.value
                )
            )
        ).one_or_none()
        return None if row is None else await self._run(row)

    async def start(
        self, run_id: str, month: str, *, as_of: datetime, enrolled_before: datetime, started_by: str | None
    ) -> None:
        """The run and one pending row per partner enrolled before `enrolled_before`, in one statement
        each; partners already invoiced for the month are marked so, to be charged if still open."""
        await self._connection.execute(
            billing_runs.insert().values(
                id=run_id,
                month=month,
                status=RunStatus.RUNNING.value,
                as_of=as_of,
                started_at=as_of,
                started_by=started_by,
            )
        )
        invoiced = exists().where(invoices.c.partner_id == partners.c.id, invoices.c.month == month)
        chosen = select(
            literal(run_id),
            partners.c.id,
            literal(PartnerState.PENDING.value),
            case((invoiced, literal(CloseResult.ALREADY_CLOSED.value)), else_=None),
            literal(0),
        ).where(partners.c.created_at < enrolled_before)
        await self._connection.execute(
            billing_run_partners.insert().from_select(
                ["run_id", "partner_id", "state", "close_result", "tries"], chosen
            )
        )

    async def get(self, run_id: str) -> BillingRun | None:
        row = (await self._connection.execute(_run_rows().where(billing_runs.c.id == run_id))).one_or_none()
        return None if row is None else await self._run(row)

    async def get_header(self, run_id: str) -> BillingRun | None:
        """The run without its counts (what a job needs, without counting every partner)."""
        row = (await self._connection.execute(_run_rows().where(billing_runs.c.id == run_id))).one_or_none()
        return None if row is None else _to_run(row, RunCounts())

    async def listed(self, *, limit: int) -> list[BillingRun]:
        rows = await self._connection.execute(
            _run_rows().order_by(billing_runs.c.started_at.desc(), billing_runs.c.id).limit(limit)
        )
        return [await self._run(row) for row in rows.all()]

    async def open_partner_ids(self, run_id: str) -> list[str]:
        rows = await self._connection.execute(
            select(billing_run_partners.c.partner_id)
            .where(
                billing_run_partners.c.run_id == run_id,
                billing_run_partners.c.state.in_(OPEN_STATES),
            )
            .order_by(billing_run_partners.c.partner_id)
        )
        return list(rows.scalars())

    async def unfinished_ids(self) -> list[str]:
        rows = await self._connection.execute(
            select(billing_runs.c.id).where(billing_runs.c.status == RunStatus.RUNNING.value)
        )
        return list(rows.scalars())

    async def stalled_ids(self, quiet_since: datetime) -> list[str]:
        """Running runs started before `quiet_since` with no partner done since then."""
        recent = exists().where(
            billing_run_partners.c.run_id == billing_runs.c.id,
            billing_run_partners.c.updated_at >= quiet_since,
        )
        rows = await self._connection.execute(
            select(billing_runs.c.id).where(
                billing_runs.c.status == RunStatus.RUNNING.value,
                billing_runs.c.started_at < quiet_since,
                ~recent,
            )
        )
        return list(rows.scalars())

    async def partner(self, run_id: str, partner_id: str, *, for_update: bool = False) -> RunPartner | None:
        statement = select(billing_run_partners).where(
            billing_run_partners.c.run_id == run_id, billing_run_partners.c.partner_id == partner_id
        )
        if for_update and self._connection.dialect.name != "sqlite":
            statement = statement.with_for_update()
        row = (await self._connection.execute(statement)).one_or_none()
        return None if row is None else _to_partner(row)

    async def failures(self, run_id: str, *, limit: int) -> list[RunPartner]:
        rows = await self._connection.execute(
            select(billing_run_partners)
            .where(
                billing_run_partners.c.run_id == run_id,
                billing_run_partners.c.state.in_([PartnerState.RETRYING.value, PartnerState.FAILED.value]),
            )
            .order_by(billing_run_partners.c.partner_id)
            .limit(limit)
        )
        return [_to_partner(row) for row in rows]

    async def partners(self, run_id: str, partner_ids: list[str]) -> list[RunPartner]:
        """These partners' parts in the run (in the order given; unknown ones left out)."""
        rows = await self._connection.execute(
            select(billing_run_partners).where(
                billing_run_partners.c.run_id == run_id,
                billing_run_partners.c.partner_id.in_(partner_ids),
            )
        )
        found = {row.partner_id: _to_partner(row) for row in rows}
        return [found[partner_id] for partner_id in partner_ids if partner_id in found]

    async def record(self, run_id: str, parts: list[RunPartner]) -> None:
        """Store how far each partner got, if it is still open: a duplicate delivery of a finished
        partner's job changes nothing. One statement for the batch."""
        if not parts:
            return
        await self._connection.execute(
            update(billing_run_partners)
            .where(
                billing_run_partners.c.run_id == run_id,
                billing_run_partners.c.partner_id == bindparam("part_id"),
                # (IN would expand its list, which an executemany cannot)
                or_(*(billing_run_partners.c.state == state for state in OPEN_STATES)),
            )
            .values(
                state=bindparam("part_state"),
                close_result=bindparam("part_close"),
                charge_result=bindparam("part_charge"),
                tries=bindparam("part_tries"),
                reason=bindparam("part_reason"),
                updated_at=bindparam("part_updated_at"),
            ),
            [
                {
                    "part_id": part.partner_id,
                    "part_state": part.state.value,
                    "part_close": None if part.close is None else part.close.value,
                    "part_charge": None if part.charge is None else part.charge.value,
                    "part_tries": part.tries,
                    "part_reason": part.reason,
                    "part_updated_at": part.updated_at,
                }
                for part in parts
            ],
        )

    async def finish_if_done(self, run_id: str, at: datetime) -> RunProgress:
        """Mark the run finished if no partner is left to do, and say how far it is. Run it after the
        partners' own commit: then the last of two concurrent batches to commit always sees both done."""
        left = func.sum(case((billing_run_partners.c.state.in_(OPEN_STATES), 1), else_=0))
        total, open_left = (
            await self._connection.execute(
                select(func.count(), func.coalesce(left, 0)).where(billing_run_partners.c.run_id == run_id)
            )
        ).one()
        finished = False
        if open_left == 0:
            result = await self._connection.execute(
                update(billing_runs)
                .where(billing_runs.c.id == run_id, billing_runs.c.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.FINISHED.value, finished_at=at)
            )
            finished = bool(result.rowcount)
        return RunProgress(int(total) - int(open_left), int(total), finished)

    async def counts(self, run_id: str) -> RunCounts:
        rows = await self._connection.execute(
            select(
                billing_run_partners.c.state,
                billing_run_partners.c.close_result,
                billing_run_partners.c.charge_result,
                func.count(),
            )
            .where(billing_run_partners.c.run_id == run_id)
            .group_by(
                billing_run_partners.c.state,
                billing_run_partners.c.close_result,
                billing_run_partners.c.charge_result,
            )
        )
        return RunCounts.of(
            (
                PartnerState(row[0]),
                None if row[1] is None else CloseResult(row[1]),
                None if row[2] is None else ChargeResult(row[2]),
                int(row[3]),
            )
            for row in rows
        )

    async def _run(self, row: Row[Any]) -> BillingRun:
        return _to_run(row, await self.counts(row.id))


def _to_run(row: Row[Any], counts: RunCounts) -> BillingRun:
    return BillingRun(
        id=row.id,
        month=row.month,
        status=RunStatus(row.status),
        as_of=row.as_of,
        started_at=row.started_at,
        finished_at=row.finished_at,
        started_by=row.started_by,
        counts=counts,
        started_by_label=row.started_by_label,
    )


def _to_partner(row: Row[Any]) -> RunPartner:
    return RunPartner(
        partner_id=row.partner_id,
        state=PartnerState(row.state),
        close=None if row.close_result is None else CloseResult(row.close_result),
        charge=None if row.charge_result is None else ChargeResult(row.charge_result),
        tries=row.tries,
        reason=row.reason,
        updated_at=row.updated_at,
    )
