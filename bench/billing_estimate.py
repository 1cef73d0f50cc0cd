"""The month's estimate for a partner with 100k licenses: before (every holding fetched, the statement
built in Python) and after (SQL sums over the stored billed-day spans), beside the floor measured in the
same run: one SQL aggregation of the same rows (license-days per product, spans clipped to the month).
After is read twice: the totals alone (license-days and amounts: one statement over the spans), and
with the license counts and the cost's assigned/unassigned split (two more). Floor and after alternate
run by run (the machine is shared); each statement of the after path is timed too. The load average
is printed with the results.

Seeds bench/billing.py's partner (random histories, Europe/Paris, July 2026) on a temporary SQLite file,
and on PostgreSQL too when DATABASE_URL points at a scratch database. Goal: after <= 250 ms on SQLite and
<= 2x the floor on both.

    .venv/bin/python bench/billing_estimate.py [--licenses 100000] [--runs 5]
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections import defaultdict
from typing import Any

from billing import (
    JULY,
    ZONE,
    run_on_each_database,
    seeded_partner,
    timed,
)  # bench/billing.py: the same histories
from sqlalchemy import event, func, select, text

from domain.billing import StatementParts
from persistence.billing import greatest, least
from persistence.database import Database
from persistence.licenses import licenses
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import estimated_sums, live_statement

GOAL_MS = 250
# What is read: the totals (`licenseDays`, `costs { total }`, `products { amount }`), then everything.
PARTS = {
    StatementParts.LINES: "totals (license-days and amounts):",
    StatementParts.ALL: "with counts and the cost split:",
}
GOAL_RATIO = 2.0


async def measure(url: str, count: int, runs: int) -> None:
    database, partner = await seeded_partner(url, count)
    if database.dialect == "postgresql":  # as autovacuum would have by now: plans need statistics
        async with database.engine.begin() as connection:
            await connection.execute(text("ANALYZE licenses"))
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

    async def after(parts: StatementParts) -> None:
        async with UnitOfWork(database, read_only=True) as uow:
            totals.append((await estimated_sums(uow, partner, JULY, parts)).total)

    load_before = os.getloadavg()[0]
    statements = _statement_timer(database)
    floor_samples: list[float] = []
    samples: dict[StatementParts, list[float]] = {parts: [] for parts in PARTS}
    for _ in range(runs):  # interleaved, so that all see the same load from other processes
        floor_samples.append(await timed(1, floor))
        for parts in PARTS:
            statements.start()
            samples[parts].append(await timed(1, functools.partial(after, parts)))
            statements.keep(parts)
    floor_ms = statistics.median(floor_samples)
    before_ms = await timed(max(1, runs // 3), before)
    await database.dispose()
    assert len(set(totals)) == 1, f"the two paths disagree: {sorted(set(totals))}"

    kind = url.split(":", 1)[0]
    print(
        f"[{kind}] {count:,} licenses, {JULY} ({ZONE}), total {totals[0]} cents; medians of {runs}; "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}:"
    )
    print(f"  floor: SQL aggregation of the rows     {floor_ms:8.1f} ms")
    print(
        f"  before: fetch + build_statement        {before_ms:8.1f} ms   {before_ms / floor_ms:5.2f}x floor"
    )
    for parts, name in PARTS.items():
        after_ms = statistics.median(samples[parts])
        print(
            f"  after, {name:<34} {after_ms:8.1f} ms   {after_ms / floor_ms:5.2f}x floor"
            f"   (goal <= {GOAL_MS} ms on SQLite, <= {GOAL_RATIO:.0f}x floor)"
        )
        for position, (sql, median_ms) in enumerate(statements.medians(parts)):
            ratio = median_ms / floor_ms
            print(f"    statement {position + 1}: {median_ms:8.1f} ms   {ratio:5.2f}x floor   {sql}")


class _StatementTimes:
    """Wall time of each statement the estimate runs, by its position in the estimate."""

    def __init__(self) -> None:
        self.current: list[tuple[str, float]] | None = None  # None: not recording
        self.kept: dict[StatementParts, list[list[tuple[str, float]]]] = defaultdict(list)

    def start(self) -> None:
        self.current = []

    def keep(self, parts: StatementParts) -> None:
        if self.current is not None:
            self.kept[parts].append(self.current)
        self.current = None

    def medians(self, parts: StatementParts) -> list[tuple[str, float]]:
        return [
            (runs[0][0], statistics.median(ms for _, ms in runs))
            for runs in zip(*self.kept[parts], strict=False)
        ]


def _statement_timer(database: Database) -> _StatementTimes:
    times = _StatementTimes()
    engine = database.engine.sync_engine

    @event.listens_for(engine, "before_cursor_execute")
    def started(connection: Any, *_: Any) -> None:
        connection.info["statement_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def ended(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        elapsed = (time.perf_counter() - connection.info["statement_started"]) * 1000
        if times.current is not None and not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            times.current.append((" ".join(statement.split())[:60], elapsed))

    return times


def main() -> None:
    run_on_each_database(measure, __doc__, 5)


if __name__ == "__main__":
    main()
