"""Latency of `licenses(first: 100)` for a partner holding 100k licenses, beside its floors.

Seeds a temporary SQLite file by bulk insert (Core, not the API), then runs the page (with and
without `totalCount`, and 500 pages deep) through the schema in-process, as the service runs a query
over HTTP (its reads share one transaction), and prints median / p95 wall time, median CPU time and
the SQL statements each page sends, beside a trivial Strawberry query, graphql-core serving the same
page shape from memory (parse, validate and execute every time: the floor of issue 14) and Strawberry
serving it from memory (what Strawberry's own execution costs), with the ratios (wall and CPU: on a
machine shared with other work the CPU ratio swings less). With DATABASE_URL set to a PostgreSQL
database, that database is measured too (its licenses and events tables are filled; use a scratch
database).

    .venv/bin/python bench/licenses_page.py [--licenses 100000] [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import graphql
import strawberry
from sqlalchemy import event, select
from strawberry.extensions import ParserCache, ValidationCache

from app.demo import DEMO_CATALOG
from app.http import tune_garbage_collection
from app.settings import Settings
from domain.billing import billable_span
from domain.clock import SettableClock
from domain.principals import Principal
from domain.support import SupportContact
from persistence import migrate
from persistence.database import Database
from persistence.events import events
from persistence.licenses import licenses
from persistence.pagination import CursorCodec, cursor_instant, cursor_key
from persistence.partners import partners
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext, SharedReads
from resolvers.products import import_catalog
from schema.build import build_schema

PAGE = """{ licenses(first: 100) { totalCount pageInfo { endCursor }
  nodes { key state site issuedAt product { name dailyPrice } } } }"""
PAGE_WITHOUT_COUNT = PAGE.replace("totalCount ", "")
PAGE_AFTER = "query($after: String) " + PAGE_WITHOUT_COUNT.replace("first: 100", "first: 100, after: $after")
TRIVIAL = "{ numbers { value label } }"
# The floor for the page: graphql-core over plain dicts, the same shape, nothing read from a database.
MEMORY_SDL = """type Product { name: String! dailyPrice: String! }
type License { key: String! state: String! site: String issuedAt: String! product: Product! }
type PageInfo { endCursor: String }
type LicenseConnection { totalCount: Int! pageInfo: PageInfo! nodes: [License!]! }
type Query { licenses(first: Int): LicenseConnection! }"""
START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 5_000


@strawberry.type(description="A plain object.")
class Plain:
    value: int = strawberry.field(description="A number.")
    label: str = strawberry.field(description="Its label.")


@strawberry.type(description="The trivial baseline: 100 objects from memory, no database.")
class TrivialQuery:
    @strawberry.field(description="100 plain objects.")
    async def numbers(self) -> list[Plain]:
        return [Plain(value=i, label=f"n{i}") for i in range(100)]


@strawberry.enum(description="A license's state.")
class MemoryState(Enum):
    ISSUED = "issued"


@strawberry.type(description="A product from memory.")
class MemoryProduct:
    name: str = strawberry.field(description="Name.")
    daily_price: str = strawberry.field(description="Price.")


@strawberry.type(description="A license from memory.")
class MemoryLicense:
    key: str = strawberry.field(description="Key.")
    state: MemoryState = strawberry.field(description="State.")
    site: str | None = strawberry.field(description="Site.")
    issued_at: datetime = strawberry.field(description="Issued.")
    product: MemoryProduct = strawberry.field(description="Product.")


@strawberry.type(description="Cursors.")
class MemoryPageInfo:
    end_cursor: str | None = strawberry.field(description="Last cursor.")


@strawberry.type(description="A page from memory.")
class MemoryConnection:
    page_info: MemoryPageInfo = strawberry.field(description="Cursors.")
    nodes: list[MemoryLicense] = strawberry.field(description="Items.")


MEMORY_PAGE = MemoryConnection(
    page_info=MemoryPageInfo(end_cursor="x"),
    nodes=[
        MemoryLicense(
            key=f"jetpack-backup_{i:032x}",
            state=MemoryState.ISSUED,
            site=None,
            issued_at=START,
            product=MemoryProduct(name="Jetpack Backup", daily_price="0.328767"),
        )
        for i in range(100)
    ],
)


@strawberry.type(description="Strawberry's own floor: the page's shape from memory, no database.")
class MemoryQuery:
    @strawberry.field(description="The same page every time.")
    def licenses(self, first: int) -> MemoryConnection:
        return MEMORY_PAGE


async def seed(database: Database, count: int) -> str:
    partner_id = "ptr_bench_" + secrets.token_hex(4)
    products = [entry.product.slug for entry in DEMO_CATALOG]
    async with UnitOfWork(database) as uow:
        await import_catalog(uow, DEMO_CATALOG)
        await uow.connection.execute(
            partners.insert().values(
                id=partner_id, name="Bench Agency", billing_zone="UTC", currency="usd", created_at=START
            )
        )
    for offset in range(0, count, BATCH):
        rows, event_rows = [], []
        for i in range(offset, min(offset + BATCH, count)):
            at = START + timedelta(seconds=i * 60)
            product = products[i % len(products)]
            key = f"{product}_{secrets.token_hex(16)}"
            assigned = i % 3 == 0
            revoked = i % 7 == 0
            state = "revoked" if revoked else ("assigned" if assigned else "issued")
            site = f"https://site-{i}.example.com" if assigned and not revoked else None
            until = at + timedelta(days=3) if revoked else None
            span = billable_span(at, until, False, "UTC")
            rows.append(
                {
                    "id": "lic_" + secrets.token_hex(12),
                    "key": key,
                    "partner_id": partner_id,
                    "product_slug": product,
                    "state": state,
                    "site": site,
                    "held_from": at,
                    "held_until": until,
                    "issued_at": at,
                    "assigned_at": at if site else None,
                    "revoked_at": until,
                    "transferred_at": None,
                    "version": 1,
                    "first_billed_day": span.first,
                    "last_billed_day": span.last,
                }
            )
            event_rows.append(
                {
                    "partner_id": partner_id,
                    "seq": i + 1,
                    "stream": "license",
                    "subject": key,
                    "action": "issue",
                    "from_state": None,
                    "to_state": "issued",
                    "at": at,
                    "actor_token_id": None,
                    "request_id": None,
                    "payload": "{}",
                }
            )
        async with UnitOfWork(database) as uow:
            await uow.connection.execute(licenses.insert(), rows)
            await uow.connection.execute(events.insert(), event_rows)
    return partner_id


Run = Callable[[], Awaitable[Any]]


def memory_floor() -> Run:
    """graphql-core answering the page's shape for 100 licenses held in memory."""
    schema = graphql.build_schema(MEMORY_SDL)
    product = {"name": "Jetpack Backup", "dailyPrice": "0.328767"}
    nodes = [
        {"key": f"jetpack-backup_{i:032x}", "state": "ISSUED", "site": None, "issuedAt": START.isoformat()}
        | {"product": product}
        for i in range(100)
    ]
    root = {"licenses": {"totalCount": 100_000, "pageInfo": {"endCursor": "x"}, "nodes": nodes}}
    return lambda: graphql.graphql(schema, PAGE, root_value=root)


def through(schema: Any, query: str, context: RequestContext, variables: dict[str, Any] | None = None) -> Run:
    """The query as app.http runs a query: a fresh request's loaders, its reads in one transaction."""

    async def run() -> Any:
        context.loaders.clear()
        context.shared_reads = SharedReads(context.database)
        try:
            return await schema.execute(query, variable_values=variables, context_value=context)
        finally:
            await context.end_reads()

    return run


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    statements: int = 0


async def interleaved(runs: dict[str, Run], count: int, sent: list[str]) -> dict[str, Samples]:
    """Each query once per round, so every sample of each shares the same moment of a busy machine."""
    samples = {label: Samples() for label in runs}
    for round_number in range(count + 3):
        for label, run in runs.items():
            sent.clear()
            began, cpu_began = time.perf_counter(), time.process_time()
            result = await run()
            elapsed, cpu = (time.perf_counter() - began) * 1000, (time.process_time() - cpu_began) * 1000
            assert result.errors is None, result.errors
            samples[label].statements = len(sent)
            if round_number >= 3:  # warm-up rounds are not counted
                samples[label].wall.append(elapsed)
                samples[label].cpu.append(cpu)
    return samples


@contextmanager
def counting(database: Database) -> Iterator[list[str]]:
    """The SQL statements sent (SQLite's BEGIN aside), collected while the block runs."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.strip().upper() not in {"BEGIN", "BEGIN IMMEDIATE"}:
            sent.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)


async def deep_cursor(database: Database, partner_id: str, position: int) -> str:
    """The `after` cursor of the `position`-th license in the default order (newest first)."""
    async with UnitOfWork(database, read_only=True) as uow:
        row = (
            await uow.connection.execute(
                select(licenses.c.issued_at, licenses.c.id)
                .where(licenses.c.partner_id == partner_id)
                .order_by(licenses.c.issued_at.desc(), licenses.c.id.desc())
                .offset(position)
                .limit(1)
            )
        ).one()
    codec = CursorCodec("licenses/issued_at/desc", [cursor_instant, cursor_key])
    return codec.encode([row.issued_at, row.id])


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


async def measure(url: str, count: int, runs: int) -> None:
    database = Database(url)
    try:
        began = time.perf_counter()
        partner_id = await seed(database, count)
        print(f"  seeded {count:,} licenses in {time.perf_counter() - began:.1f}s")
        context = RequestContext(
            database=database,
            clock=SettableClock(START),
            principal=Principal(token_id="tok_bench", partner_id=partner_id, is_staff=False),
            request_id="bench",
            support=SupportContact("", "", ""),
        )
        schema = build_schema()
        deep = await deep_cursor(database, partner_id, min(50_000, count // 2))
        with counting(database) as sent:
            measured = await interleaved(
                {
                    "licenses(first: 100) with totalCount": through(schema, PAGE, context),
                    "licenses(first: 100) without totalCount": through(schema, PAGE_WITHOUT_COUNT, context),
                    "the same, 500 pages deep (after:)": through(
                        schema, PAGE_AFTER, context, {"after": deep}
                    ),
                    "floor: graphql-core, same page in memory": memory_floor(),
                    "Strawberry (cached parse), same page in memory": through(
                        strawberry.Schema(query=MemoryQuery, extensions=[ParserCache, ValidationCache]),
                        PAGE_WITHOUT_COUNT,
                        context,
                    ),
                    "trivial Strawberry query, 100 objects": through(
                        strawberry.Schema(query=TrivialQuery), TRIVIAL, context
                    ),
                },
                runs,
                sent,
            )
        wall, cpu = {}, {}
        for label, samples in measured.items():
            median, p95 = summary(samples.wall)
            wall[label], cpu[label] = median, statistics.median(samples.cpu)
            print(
                f"  {label:<42} median {median:7.2f} ms   p95 {p95:7.2f} ms   CPU {cpu[label]:7.2f} ms"
                f"   {samples.statements} statements"
            )
        print(f"  load average (1, 5, 15 min): {os.getloadavg()}")
        floor = "floor: graphql-core, same page in memory"
        for label in [*list(measured)[:3], "Strawberry (cached parse), same page in memory"]:
            print(
                f"  {label} / graphql-core floor (median): {wall[label] / wall[floor]:.2f}x wall, "
                f"{cpu[label] / cpu[floor]:.2f}x CPU (goal <= 1.5x without totalCount)"
            )
    finally:
        await database.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--licenses", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    # As a served worker collects garbage (app.http.tune_garbage_collection, the default setting).
    tune_garbage_collection(Settings().gc_gen0_threshold)
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        print(f"SQLite ({args.licenses:,} licenses, {args.runs} runs)")
        await measure(url, args.licenses, args.runs)
    postgres = os.environ.get("DATABASE_URL", "")
    if postgres.startswith("postgresql"):
        await asyncio.to_thread(migrate.upgrade, postgres)
        print(f"PostgreSQL ({args.licenses:,} licenses, {args.runs} runs)")
        await measure(postgres, args.licenses, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
