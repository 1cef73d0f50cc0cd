"""The month's estimate for a partner with 100k licenses: before (every holding fetched, the statement
built in Python) and after (SQL sums over the stored billed-day spans), beside the floor measured in the
same run: one SQL aggregation of the same rows (license-days per product, spans clipped to the month).

Seeds bench/billing.py's partner (random histories, Europe/Paris, July 2026) on a temporary SQLite file,
and on PostgreSQL too when DATABASE_URL points at a scratch database. Goal: after <= 250 ms on SQLite and
<= 2x the floor on both.

    .venv/bin/python bench/billing_estimate.py [--licenses 100000] [--runs 5]
"""

from __future__ import annotations

from billing import (
    JULY,
    ZONE,
    run_on_each_database,
    seeded_partner,
    timed,
)  # bench/billing.py: the same histories
from sqlalchemy import func, select

from persistence.billing import greatest, least
from persistence.licenses import licenses
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import estimated_statement, live_statement

GOAL_MS = 250
GOAL_RATIO = 2.0


async def measure(url: str, count: int, runs: int) -> None:
    database, partner = await seeded_partner(url, count)
    partner_id = partner.id
    first = JULY.first_day.toordinal()
    last = first + JULY.days - 1

    async def floor() -> None:
        """License-days per product over the same rows: the least any SQL answer of the month costs."""
        c = licenses.c
        until = func.coalesce(c.last_billed_day, last)
        days = least(until, last) - greatest(c.first_billed_day, first) + 1
        async with UnitOfWork(database, read_only=True) as uow:
            rows = await uow.connection.execute(
                select(c.product_slug, func.sum(days))
                .where(
                    c.partner_id == partner_id,
                    c.first_billed_day <= last,
                    until >= first,
                    until >= c.first_billed_day,
                )
                .group_by(c.product_slug)
            )
            rows.all()

    totals = []

    async def before() -> None:
        async with UnitOfWork(database, read_only=True) as uow:
            totals.append((await live_statement(uow, partner, JULY)).total)

    async def after() -> None:
        async with UnitOfWork(database, read_only=True) as uow:
            totals.append((await estimated_statement(uow, partner, JULY))[1].total)

    floor_ms = await timed(runs, floor)
    before_ms = await timed(runs, before)
    after_ms = await timed(runs, after)
    await database.dispose()
    assert len(set(totals)) == 1, f"the two paths disagree: {sorted(set(totals))}"

    kind = url.split(":", 1)[0]
    print(f"[{kind}] {count:,} licenses, {JULY} ({ZONE}), total {totals[0]} cents; medians of {runs}:")
    print(f"  floor: SQL aggregation of the rows     {floor_ms:8.1f} ms")
    print(
        f"  before: fetch + build_statement        {before_ms:8.1f} ms   {before_ms / floor_ms:5.2f}x floor"
    )
    print(
        f"  after: SQL sums over billed-day spans  {after_ms:8.1f} ms   {after_ms / floor_ms:5.2f}x floor"
        f"   (goal <= {GOAL_MS} ms on SQLite, <= {GOAL_RATIO:.0f}x floor)"
    )


def main() -> None:
    run_on_each_database(measure, __doc__, 5)


if __name__ == "__main__":
    main()
