"""A billing run at scale on PostgreSQL: partners and licenses with random histories, bulk-seeded with
COPY, a month closed by 1 and by 2 `licensing worker` processes (procrastinate), then by 2 workers one
of which is killed (SIGKILL) mid-run. Prints each run's wall time, its partners per second, the peak
memory of each worker, the 2-worker/1-worker ratio, the load average, a per-partner cost in PostgreSQL
round trips (a `SELECT 1` floor measured just before each run), and SQL checks that no partner was
invoiced twice and no invoice was charged twice.

    su postgres -c "createdb -O licensing licensing_jobs_bench"
    BENCH_DATABASE_URL=postgresql+asyncpg://licensing:licensing@127.0.0.1:5432/licensing_jobs_bench \\
      .venv/bin/python bench/billing_runs.py [--partners 10000] [--licenses 1000000] [--cards 300]

The database is emptied first. Without BENCH_DATABASE_URL (e.g. under `make bench`) it says so and
stops: it needs PostgreSQL. Cards are real localstripe cards (started here), so paid partners are real
PaymentIntents; the other partners have no card and go past due, as they would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from app.demo import DEMO_CATALOG
from app.devstripe import LocalStripe, free_port
from app.jobs import JobServices, ProcrastinateJobs
from domain.billing import BillingMonth, billable_span
from domain.clock import SettableClock
from domain.payments import CollectionPolicy
from domain.principals import Principal
from domain.support import SupportContact
from payments.stripe_gateway import StripeGateway
from persistence import migrate
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.billing_runs import DISPATCH_RUN, start_run
from resolvers.context import RequestContext
from resolvers.payments import add_payment_method
from resolvers.products import import_catalog

ROOT = Path(__file__).resolve().parents[1]
JULY = BillingMonth(2026, 7)
AS_OF = datetime(2026, 8, 2, tzinfo=UTC)
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
STRIPE_KEY, STRIPE_SECRET = "sk_test_bench", "whsec_bench"
COPY_BATCH = 100_000


def raw_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def partner_zone(index: int) -> str:
    return ZONES[index % len(ZONES)]


def license_rows(count: int, partner_ids: list[str], rng: random.Random):  # type: ignore[no-untyped-def]
    """Issued some time in June or July; then still active (assigned or not), revoked, or transferred."""
    start = datetime(2026, 6, 1, tzinfo=UTC)
    for i in range(count):
        product = DEMO_CATALOG[i % len(DEMO_CATALOG)].product.slug
        held_from = start + timedelta(minutes=rng.randrange(61 * 24 * 60))
        fate, held_until = rng.random(), None
        state = "assigned" if i % 2 else "issued"
        if fate < 0.3:
            held_until, state = held_from + timedelta(minutes=rng.randrange(1, 40 * 24 * 60)), "revoked"
        elif fate < 0.4:
            held_until, state = held_from + timedelta(minutes=rng.randrange(1, 40 * 24 * 60)), "transferred"
        partner = rng.randrange(len(partner_ids))
        span = billable_span(held_from, held_until, state == "transferred", partner_zone(partner))
        yield (
            f"lic_{i:012x}",
            f"{product}_{i:012x}{secrets.token_hex(6)}",
            partner_ids[partner],
            product,
            state,
            f"https://client-{i}.example.com" if state == "assigned" else None,
            held_from,
            held_until,
            held_from,
            1,
            span.first,
            span.last,
        )


async def seed(url: str, partners: int, licenses: int, cards: int, stripe_base: str) -> None:
    started = time.perf_counter()
    await migrate.downgrade_async(url, "base")
    await migrate.upgrade_async(url)
    database = Database(url)
    async with UnitOfWork(database) as uow:
        await import_catalog(uow, DEMO_CATALOG)
    rng = random.Random(15)
    partner_ids = [f"ptr_bench{i:06d}" for i in range(partners)]
    connection = await asyncpg.connect(raw_dsn(url))
    try:
        enrolled = datetime(2026, 1, 1, tzinfo=UTC)
        await connection.copy_records_to_table(
            "partners",
            records=[
                (pid, f"Agency {i}", partner_zone(i), "usd", enrolled) for i, pid in enumerate(partner_ids)
            ],
            columns=["id", "name", "billing_zone", "currency", "created_at"],
        )
        rows = license_rows(licenses, partner_ids, rng)
        columns = [
            "id", "key", "partner_id", "product_slug", "state", "site",
            "held_from", "held_until", "issued_at", "version", "first_billed_day", "last_billed_day",
        ]  # fmt: skip
        while batch := [row for _, row in zip(range(COPY_BATCH), rows, strict=False)]:
            await connection.copy_records_to_table("licenses", records=batch, columns=columns)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    seeded = time.perf_counter() - started
    gateway = StripeGateway(STRIPE_KEY, stripe_base, STRIPE_SECRET)
    try:
        for partner_id in partner_ids[:cards]:
            ctx = RequestContext(
                database=database,
                clock=SettableClock(AS_OF),
                principal=Principal("tok_bench", partner_id, False),
                request_id="bench-seed",
                support=SupportContact("", "", ""),
                gateway=gateway,
            )
            await add_payment_method(ctx, payment_method_id="pm_card_visa", make_primary=True)
    finally:
        await gateway.close()
        await database.dispose()
    print(
        f"seeded {partners:,} partners and {licenses:,} licenses in {seeded:.0f} s (COPY); "
        f"{cards:,} cards through localstripe in {time.perf_counter() - started - seeded:.0f} s"
    )


async def reset_month(url: str) -> None:
    """Forget the month's invoices, charges and runs, so the next run does the very same work."""
    connection = await asyncpg.connect(raw_dsn(url))
    try:
        month = str(JULY)
        ids = "SELECT id FROM invoices WHERE month = $1"
        for table in ("invoice_day_lines", "invoice_lines", "invoice_payments", "payment_attempts",
                      "invoice_dunning", "invoice_refunds"):  # fmt: skip
            await connection.execute(f"DELETE FROM {table} WHERE invoice_id IN ({ids})", month)
        await connection.execute("DELETE FROM invoices WHERE month = $1", month)
        await connection.execute("DELETE FROM billing_run_partners")
        await connection.execute("DELETE FROM billing_runs")
        await connection.execute("TRUNCATE procrastinate_jobs, procrastinate_workers CASCADE")
        await connection.execute(
            "UPDATE partners SET standing = CASE WHEN id IN (SELECT partner_id FROM payment_methods) "
            "THEN 'good' ELSE 'no_payment_method' END, standing_reason_invoice_id = NULL"
        )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


@dataclass
class Outcome:
    seconds: float
    partners: int
    counts: dict[str, int]
    peak_rss_mib: list[float] = field(default_factory=list)


def rss_mib(pid: int, key: str = "VmHWM") -> float:
    """A process's memory from /proc: its peak resident set (VmHWM) by default."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def start_worker(url: str, stripe_base: str, name: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        DATABASE_URL=url,
        PYTHONPATH=str(ROOT),
        STRIPE_API_BASE=stripe_base,
        STRIPE_API_KEY=STRIPE_KEY,
        STRIPE_WEBHOOK_SECRET=STRIPE_SECRET,
        LICENSING_PERIODIC_JOBS="0",
        LICENSING_LOG_LEVEL="error",
    )
    command = [sys.executable, "-m", "app.cli", "worker", "--name", name, "--queue", "billing"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def close_with_workers(
    url: str, stripe_base: str, workers: int, *, kill_at: float | None = None
) -> Outcome:
    """Start a run of the month, queue it, and let `workers` worker processes do it; with `kill_at`, kill
    one worker (SIGKILL) once that share of partners is done."""
    database = Database(url)
    gateway = StripeGateway(STRIPE_KEY, stripe_base, STRIPE_SECRET)
    engine = ProcrastinateJobs(
        url, JobServices(database, gateway, SettableClock(AS_OF), CollectionPolicy()), periodic=False
    )
    processes = [start_worker(url, stripe_base, f"bench-{i}") for i in range(workers)]
    peaks = [0.0] * workers
    started = time.perf_counter()
    try:
        run, _ = await start_run(database, JULY, as_of=AS_OF, started_by=None)
        await engine.defer(DISPATCH_RUN, run_id=run.id)
        killed = False
        while True:
            await asyncio.sleep(1)
            for i, process in enumerate(processes):
                peaks[i] = max(peaks[i], rss_mib(process.pid))
            async with UnitOfWork(database, read_only=True) as uow:
                current = await uow.billing_runs.get(run.id)
            assert current is not None
            counts = current.counts
            done = counts.partners_total - counts.pending
            if kill_at is not None and not killed and done >= kill_at * counts.partners_total:
                processes[0].send_signal(signal.SIGKILL)
                killed = True
                print(
                    f"  killed worker bench-0 (pid {processes[0].pid}) at {done:,}/{counts.partners_total:,}"
                )
            if current.status.value == "finished":
                break
        seconds = time.perf_counter() - started
        return Outcome(seconds, counts.partners_total, counts.__dict__, peaks)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        await engine.close()
        await gateway.close()
        await database.dispose()


CHECKS = {
    "partners invoiced twice for the month": """
        SELECT count(*) FROM (SELECT partner_id FROM invoices WHERE month = $1
                              GROUP BY partner_id HAVING count(*) > 1) twice""",
    "invoices charged twice (succeeded attempts)": """
        SELECT count(*) FROM (SELECT a.invoice_id FROM payment_attempts a
                              JOIN invoices i ON i.id = a.invoice_id
                              WHERE i.month = $1 AND a.status = 'succeeded'
                              GROUP BY a.invoice_id HAVING count(*) > 1) twice""",
    "invoices paid by two PaymentIntents": """
        SELECT count(*) FROM (SELECT p.invoice_id FROM invoice_payments p
                              JOIN invoices i ON i.id = p.invoice_id
                              WHERE i.month = $1 GROUP BY p.invoice_id HAVING count(*) > 1) twice""",
    "partners enrolled without an invoice": """
        SELECT count(*) FROM partners p WHERE NOT EXISTS
            (SELECT 1 FROM invoices i WHERE i.partner_id = p.id AND i.month = $1)""",
}


async def check(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(raw_dsn(url))
    try:
        return {name: int(await connection.fetchval(sql, str(JULY))) for name, sql in CHECKS.items()}
    finally:
        await connection.close()


async def round_trip_floor(url: str, trips: int = 2000) -> float:
    """Milliseconds per `SELECT 1` round trip to PostgreSQL now: the floor a partner's statements are
    measured against, taken in the same run (the machine is shared, so its load moves)."""
    connection = await asyncpg.connect(raw_dsn(url))
    try:
        started = time.perf_counter()
        for _ in range(trips):
            await connection.fetchval("SELECT 1")
        return (time.perf_counter() - started) * 1000 / trips
    finally:
        await connection.close()


def load() -> str:
    return "load " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def report(label: str, outcome: Outcome, floor_ms: float) -> None:
    counts = outcome.counts
    peaks = ", ".join(f"{peak:.0f}" for peak in outcome.peak_rss_mib)
    per_partner = outcome.seconds * 1000 / max(outcome.partners, 1)
    print(
        f"{label}: {outcome.seconds:7.1f} s  {outcome.partners / outcome.seconds:6.1f} partners/s  "
        f"{per_partner:.0f} ms/partner = {per_partner / floor_ms:.0f} round trips of {floor_ms:.2f} ms  "
        f"closed {counts['closed']:,} paid {counts['paid']:,} past due {counts['past_due']:,} "
        f"uncollected {counts['uncollected']:,} failed {counts['failed']:,}  "
        f"peak RSS per worker {peaks} MiB  ({load()})"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--licenses", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=300, help="partners with a localstripe card")
    parser.add_argument("--skip-seed", action="store_true", help="reuse the seeded database")
    parser.add_argument("--no-kill", action="store_true", help="skip the killed-worker run")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of 1 then 2 workers")
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        print("skipped: set BENCH_DATABASE_URL to a scratch PostgreSQL database (it is emptied)")
        return 0
    stripe = LocalStripe(free_port())
    stripe.wait_until_ready()
    try:
        url = args.database_url
        if not args.skip_seed:
            await seed(url, args.partners, args.licenses, args.cards, stripe.base_url)
        outcomes = {}
        for round_number in range(1, args.rounds + 1):
            for workers in (1, 2):
                await reset_month(url)
                floor_ms = await round_trip_floor(url)
                outcomes[workers] = await close_with_workers(url, stripe.base_url, workers)
                report(
                    f"round {round_number}, {workers} worker{'s' if workers > 1 else ' '}",
                    outcomes[workers],
                    floor_ms,
                )
                print(f"  checks: {await check(url)}")
            print(
                f"round {round_number}: 2 workers / 1 worker: "
                f"{outcomes[2].seconds / outcomes[1].seconds:.2f}x the time"
            )
        if not args.no_kill:
            await reset_month(url)
            floor_ms = await round_trip_floor(url)
            killed = await close_with_workers(url, stripe.base_url, 2, kill_at=0.3)
            report("2 workers, one killed at 30%", killed, floor_ms)
            print(f"  checks: {await check(url)}")
    finally:
        stripe.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
