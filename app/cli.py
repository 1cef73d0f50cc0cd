"""The `licensing` command: serve, migrate, demo, catalog, partner and token administration."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url

from app.catalog import load_catalog
from app.demo import seed_demo, seed_demo_without_card
from app.diagrams import README, with_diagrams, write_diagrams
from app.http import make_clock, make_gateway
from app.jobs import BILLING, InProcessJobs, JobServices, ProcrastinateJobs, job_engine
from app.observability import logging_config
from app.settings import BadSettings, InsecureSettings, Settings
from app.webhook_dispatch import webhook_delivery
from domain.access import Role, TokenChange, token_event
from domain.actors import OPERATOR_CLI, Actor
from domain.billing import BillingMonth
from domain.billing_runs import BillingRun
from domain.clock import SystemClock
from domain.errors import DomainError
from domain.money import format_micros
from domain.products import Product, new_price, new_product
from payments.gateway import GatewayUnavailable
from persistence import migrate
from persistence.database import Database, masked_url
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import EARLIEST_ZONE
from resolvers.billing_runs import DISPATCH_RUN, start_run, watch_run
from resolvers.dunning import run_dunning
from resolvers.partners import enrol_partner
from resolvers.products import ImportReport, add_product, import_catalog, price_product, retire_in_catalog
from resolvers.tokens import mint_token

T = TypeVar("T")
EXAMPLE_QUERY = "{ viewer { id name billingZone currency } products { slug name dailyPrice } }"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
    except BadSettings as error:  # every wrong variable, each named, before anything starts
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return int(args.run(args, settings) or 0)
    except DomainError as error:
        print(f"error: {error.code.value}: {error.message}", file=sys.stderr)
        return 1
    except InsecureSettings as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="licensing", description=__doc__)
    commands = parser.add_subparsers()

    serve = commands.add_parser("serve", help="serve the GraphQL API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=_serve)

    migrate_cmd = commands.add_parser("migrate", help="apply Alembic migrations (or roll back)")
    migrate_cmd.add_argument("--downgrade", metavar="REVISION", help="roll back to REVISION ('base': all)")
    migrate_cmd.set_defaults(run=_migrate)

    demo = commands.add_parser("demo", help="migrate, seed the demo data and print how to use it")
    demo.add_argument("--access-file", default=".licensing-demo.json")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=_demo)

    billing = commands.add_parser("billing", help="month close and collection").add_subparsers()
    close = billing.add_parser("close", help="finalize every partner's invoice for a month, then charge them")
    close.add_argument("--month", required=True, help="YYYY-MM, a month that has ended")
    close.add_argument(
        "--watch-only",
        action="store_true",
        help="PostgreSQL: only show the run's progress (by default this command also works on it)",
    )
    close.set_defaults(run=_close_month)
    dunning = billing.add_parser(
        "dunning",
        help="run due collection work: charge invoices an outage left open, retry past-due invoices on "
        "their dunning days, revoke the licenses of partners past due too long",
    )
    dunning.add_argument("--at", help="ISO instant to run as (default: now, or the sandbox start)")
    dunning.set_defaults(run=_dunning)

    worker = commands.add_parser(
        "worker", help="PostgreSQL: run background jobs (month close, charging, dunning) until stopped"
    )
    worker.add_argument("--concurrency", type=int, default=1, help="jobs run at once by this process")
    worker.add_argument("--name", help="shown in logs and procrastinate's tables")
    worker.add_argument("--queue", action="append", dest="queues", help="only these queues (repeatable)")
    worker.set_defaults(run=_worker)

    diagrams = commands.add_parser("diagrams", help="write the state machines as Mermaid into README.md")
    diagrams.add_argument("--readme", type=Path, default=README)
    diagrams.add_argument("--check", action="store_true", help="only report whether README.md is current")
    diagrams.set_defaults(run=_diagrams)

    partner = commands.add_parser("partner", help="manage partners").add_subparsers()
    create_partner = partner.add_parser("create", help="enrol a partner")
    create_partner.add_argument("name")
    create_partner.add_argument("--zone", default="UTC", help="IANA billing time zone")
    create_partner.add_argument("--currency", default="usd")
    create_partner.set_defaults(run=_create_partner)

    product = commands.add_parser("product", help="manage the catalog").add_subparsers()
    product.add_parser("list", help="every product with its prices").set_defaults(run=_list_products)
    create_product = product.add_parser("create", help="add a product (then give it prices)")
    create_product.add_argument("slug")
    create_product.add_argument("name")
    create_product.add_argument("--description", default="")
    create_product.set_defaults(run=_create_product)
    price = product.add_parser("price", help="set a daily price in a currency from a date on")
    price.add_argument("slug")
    price.add_argument("currency", help="usd, eur, gbp, cad, aud or jpy")
    price.add_argument("daily_price_micros", type=int, help="millionths of the currency unit per day")
    price.add_argument("--from", dest="effective_from", required=True, help="YYYY-MM-DD, a local date")
    price.set_defaults(run=_price_product)
    retire = product.add_parser("retire", help="stop issuing a product (held licenses keep billing)")
    retire.add_argument("slug")
    retire.set_defaults(run=_retire_product)

    catalog = commands.add_parser("catalog", help="import a catalog file").add_subparsers()
    import_cmd = catalog.add_parser("import", help="create or update products and prices from TOML or JSON")
    import_cmd.add_argument("file", type=Path)
    import_cmd.set_defaults(run=_import_catalog)

    token = commands.add_parser("token", help="manage API tokens").add_subparsers()
    create_token = token.add_parser("create", help="mint a token (printed once)")
    who = create_token.add_mutually_exclusive_group(required=True)
    who.add_argument("--partner", metavar="ID")
    who.add_argument("--staff", action="store_true")
    create_token.add_argument("--label", default="")
    create_token.add_argument(
        "--role", choices=[role.value for role in Role], help="default: admin (partner) or staff_admin"
    )
    create_token.set_defaults(run=_create_token)
    list_tokens = token.add_parser("list", help="every token (or one partner's): id, role, label, dates")
    list_tokens.add_argument("--partner", metavar="ID")
    list_tokens.set_defaults(run=_list_tokens)
    revoke_token = token.add_parser("revoke", help="stop a token now (open websockets close)")
    revoke_token.add_argument("token_id", metavar="TOKEN_ID")
    revoke_token.set_defaults(run=_revoke_token)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    settings.require_own_stripe_secrets()  # before any worker starts, with a message, not a traceback
    if args.workers > 1 and make_url(settings.database_url).get_backend_name() == "sqlite":
        print(
            f"error: --workers {args.workers} needs PostgreSQL: on SQLite a commit wakes only the "
            "subscriptions of the worker that made it (wake-ups are in-process), so the others would miss "
            "live events. Serve SQLite with one worker, or set DATABASE_URL=postgresql+asyncpg://...",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(
        "app.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        lifespan="on",
        # JSON lines (or plain text) with the request id, partner and operation; see app.observability.
        log_config=logging_config(settings.log_format, settings.log_level),
        access_log=False,
        # Events are small JSON: per-message deflate would cost CPU per delivery and ~100 KiB per socket.
        ws_per_message_deflate=False,
    )
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    if args.downgrade:
        migrate.downgrade(settings.database_url, args.downgrade)
    else:
        migrate.upgrade(settings.database_url)
    print(f"database at {args.downgrade or 'head'}: {masked_url(settings.database_url)}")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    migrate.upgrade(settings.database_url)

    async def seed() -> None:
        database = Database(settings.database_url)
        gateway = make_gateway(settings)
        try:
            access = await seed_demo(
                database, make_clock(settings), Path(args.access_file), gateway, settings.support
            )
        except GatewayUnavailable:
            print(
                f"warning: Stripe is not reachable at {settings.stripe_api_base} (`make run` starts "
                "localstripe there); the demo partner has no card and cannot issue licenses.",
                file=sys.stderr,
            )
            access = await seed_demo_without_card(database, make_clock(settings), Path(args.access_file))
        finally:
            await gateway.close()
            await database.dispose()
        url = f"http://127.0.0.1:{args.port}/graphql"
        print(f"\nGraphiQL:        {url}")
        print(f"staff token:     {access.staff_token}")
        print(f"partner token:   {access.partner_token}   (partner {access.partner_id})")
        print("\nExample (paste the header into GraphiQL's Headers tab):")
        print(f'  {{"Authorization": "Bearer {access.partner_token}"}}')
        print(f"  {EXAMPLE_QUERY}")
        print(f"\n  curl -s {url} -H 'Authorization: Bearer {access.partner_token}' \\")
        print(f"       -H 'Content-Type: application/json' -d '{{\"query\": \"{EXAMPLE_QUERY}\"}}'\n")

    asyncio.run(seed())
    return 0


def _dunning(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.fromisoformat(args.at) if args.at else make_clock(settings).now()
    if now.tzinfo is None:
        raise SystemExit("error: --at needs an offset, e.g. 2026-08-04T09:00:00+00:00")

    async def run() -> None:
        database = Database(settings.database_url)
        gateway = make_gateway(settings)
        try:
            report = await run_dunning(database, gateway, now=now, policy=settings.collection_policy())
        finally:
            await gateway.close()
            await database.dispose()
        for name, part in (("open invoices charged", report.collected), ("past-due retries", report.retried)):
            print(f"{name}: paid {part.paid}, past due {part.past_due}, uncollected {part.uncollected}")
        print(f"licenses revoked: {report.licenses_revoked} (partners: {report.partners_revoked})")

    asyncio.run(run())
    return 0


def _diagrams(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.readme
    if args.check:
        current = path.read_text() == with_diagrams(path.read_text())
        print(f"{path}: diagrams {'are current' if current else 'are stale: run `licensing diagrams`'}")
        return 0 if current else 1
    changed = write_diagrams(path)
    print(f"{path}: diagrams {'updated' if changed else 'already current'}")
    return 0


def _job_services(settings: Settings) -> JobServices:
    """What jobs run with here; partner webhooks are delivered unless LICENSING_WEBHOOK_DELIVERY=0."""
    database, clock = Database(settings.database_url), make_clock(settings)
    delivery = webhook_delivery(settings, database, clock)[0] if settings.webhook_delivery else None
    return JobServices(
        database, make_gateway(settings), clock, settings.collection_policy(), webhooks=delivery
    )


async def _close_services(services: JobServices) -> None:
    await services.gateway.close()
    if services.webhooks is not None:
        await services.webhooks.sender.close()
    await services.database.dispose()


def _close_month(args: argparse.Namespace, settings: Settings) -> int:
    """Start (or join) the month's billing run and show it until it finishes. On SQLite this process
    runs the jobs; on PostgreSQL it works alongside `licensing worker` processes (unless --watch-only)."""
    month = BillingMonth.parse(args.month)

    async def close() -> BillingRun:
        services = _job_services(settings)
        engine = job_engine(
            settings.database_url, services, periodic=False, queue_prefix=settings.job_queue_prefix
        )
        worker: asyncio.Task[None] | None = None
        try:
            now = services.clock.now()
            month.require_over(now, EARLIEST_ZONE)
            run, started = await start_run(services.database, month, as_of=now, started_by=None)
            if started or isinstance(engine, InProcessJobs):
                await engine.defer(DISPATCH_RUN, run_id=run.id)
            if isinstance(engine, ProcrastinateJobs) and not args.watch_only:
                worker = asyncio.create_task(engine.run_worker(name="billing-close", queues=[BILLING]))
            async for current in watch_run(services.database, run.id):
                counts = current.counts
                _progress_bar(counts.partners_total - counts.pending, counts.partners_total)
                run = current
            return run
        finally:
            if worker is not None:
                worker.cancel()
            await engine.close()
            await _close_services(services)

    run = asyncio.run(close())
    counts = run.counts
    print(
        f"\n{run.month}: {counts.closed} closed, {counts.already_closed} already closed, "
        f"{counts.not_over} pending (month not over in their zone)\n"
        f"charged: paid {counts.paid}, past due {counts.past_due}, uncollected {counts.uncollected}\n"
        f"run {run.id}: {counts.failed} failed"
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        print(
            "error: on SQLite the background jobs run inside `licensing serve`; `licensing worker` is for "
            "PostgreSQL (DATABASE_URL=postgresql+asyncpg://...)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")

    async def work() -> None:
        services = _job_services(settings)
        engine = ProcrastinateJobs(
            settings.database_url,
            services,
            periodic=settings.periodic_jobs,
            queue_prefix=settings.job_queue_prefix,
        )
        running = asyncio.current_task()
        assert running is not None
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, running.cancel)
        try:
            await engine.run_worker(name=args.name, concurrency=args.concurrency, queues=args.queues)
        finally:
            await engine.close()
            await _close_services(services)

    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(work())
    return 0


def _progress_bar(done: int, total: int, width: int = 30) -> None:
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} partners")
    sys.stderr.flush()


def _create_partner(args: argparse.Namespace, settings: Settings) -> int:
    async def create() -> str:
        database = Database(settings.database_url)
        try:
            async with UnitOfWork(database) as uow:
                partner = await enrol_partner(
                    uow,
                    name=args.name,
                    billing_zone=args.zone,
                    currency=args.currency,
                    now=SystemClock().now(),
                )
                return partner.id
        finally:
            await database.dispose()

    print(asyncio.run(create()))
    return 0


def _in_transaction(settings: Settings, step: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Run one administrative step in its own transaction (all of it or nothing); what it records is the
    operator's (the `operator-cli` job)."""

    async def run() -> T:
        database = Database(settings.database_url)
        try:
            async with UnitOfWork(database, actor=Actor.system(OPERATOR_CLI)) as uow:
                return await step(uow)
        finally:
            await database.dispose()

    return asyncio.run(run())


def _list_products(args: argparse.Namespace, settings: Settings) -> int:
    async def read(uow: UnitOfWork) -> list[Product]:
        return await uow.products.list_all()

    for listed in _in_transaction(settings, read):
        retired = f"  (retired {listed.retired_at:%Y-%m-%d})" if listed.retired_at else ""
        print(f"{listed.slug}  {listed.name}{retired}")
        for price in listed.prices:
            print(
                f"    {price.currency}  {format_micros(price.daily_price_micros):>14}/day"
                f"  from {price.effective_from.isoformat()}"
            )
    return 0


def _create_product(args: argparse.Namespace, settings: Settings) -> int:
    async def create(uow: UnitOfWork) -> Product:
        return await add_product(uow, new_product(args.slug, args.name, args.description))

    print(_in_transaction(settings, create).slug)
    return 0


def _price_product(args: argparse.Namespace, settings: Settings) -> int:
    try:
        effective_from = date.fromisoformat(args.effective_from)
    except ValueError:
        raise SystemExit(f"error: --from {args.effective_from!r} is not a date (YYYY-MM-DD)") from None
    price = new_price(args.slug, args.currency, args.daily_price_micros, effective_from)

    async def set_price(uow: UnitOfWork) -> bool:
        return await price_product(uow, price)

    changed = _in_transaction(settings, set_price)
    print(
        f"{price.product_slug} {price.currency} {format_micros(price.daily_price_micros)}/day from "
        f"{price.effective_from.isoformat()}{'' if changed else ' (already set)'}"
    )
    return 0


def _retire_product(args: argparse.Namespace, settings: Settings) -> int:
    async def retire(uow: UnitOfWork) -> Product:
        return await retire_in_catalog(uow, args.slug, SystemClock().now())

    retired = _in_transaction(settings, retire)
    print(f"{retired.slug} retired at {retired.retired_at}")
    return 0


def _import_catalog(args: argparse.Namespace, settings: Settings) -> int:
    entries = load_catalog(args.file)

    async def run_import(uow: UnitOfWork) -> ImportReport:
        return await import_catalog(uow, entries)

    report = _in_transaction(settings, run_import)
    print(
        f"{args.file}: {report.created} products created, {report.updated} updated, "
        f"{report.prices_set} prices set"
    )
    return 0


def _create_token(args: argparse.Namespace, settings: Settings) -> int:
    role = Role(args.role) if args.role else (Role.STAFF_ADMIN if args.staff else Role.ADMIN)
    if role.is_staff != bool(args.staff):
        raise SystemExit(
            f"error: the role '{role.value}' is for {'staff' if role.is_staff else 'partner'} tokens"
        )

    async def create(uow: UnitOfWork) -> str:
        if args.partner and await uow.partners.get(args.partner) is None:
            raise SystemExit(f"error: no partner '{args.partner}'")
        now = SystemClock().now()
        token = await mint_token(uow, partner_id=args.partner, role=role, label=args.label, at=now)
        uow.collect(token_event(token, TokenChange.CREATED, now))  # on the partner's feed and audit log
        return token.secret

    print(_in_transaction(settings, create))
    return 0


def _list_tokens(args: argparse.Namespace, settings: Settings) -> int:
    def when(at: datetime | None) -> str:
        return "-" if at is None else at.isoformat(timespec="seconds")

    for token in _in_transaction(settings, lambda uow: uow.tokens.listed(args.partner)):
        print(
            f"{token.id}  {token.role.value:<13} {token.partner_id or '(staff)':<20} "
            f"created {when(token.created_at)}  used {when(token.last_used_at)}  "
            f"expires {when(token.expires_at)}  revoked {when(token.revoked_at)}  {token.label}"
        )
    return 0


def _revoke_token(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke(uow: UnitOfWork) -> bool:
        now = SystemClock().now()
        if not await uow.tokens.revoke(args.token_id, now):
            return False
        revoked = await uow.tokens.get(args.token_id)
        assert revoked is not None
        uow.collect(token_event(revoked, TokenChange.REVOKED, now))
        return True

    if not _in_transaction(settings, revoke):
        raise SystemExit(f"error: no active token '{args.token_id}'")
    print(f"revoked {args.token_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
