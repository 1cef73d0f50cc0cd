"""The estimate's SQL path (sums over stored billed-day spans) equals the day rule of domain/billing.py.

Random histories are written through the license repository (which stores each holding's span in its
partner's zone), on the test database (SQLite, or PostgreSQL when DATABASE_URL is set). For each, the
SQL estimate's lines, counts, costs and every day-line page must equal `build_statement` over the same
holdings: DST months of New York and London, transfer chains (a key leaving and coming back in one
month; the partner it went to holds it in between, and its estimate is checked too), mid-month price
changes (one back to an earlier price), and keys that tie on remainders so the largest-remainder cut is
ranked by key. See docs/rules.md, "The day rule" and "Money and rounding"."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from domain.billing import BillingMonth, Holding, PriceBook, StatementParts, build_statement
from domain.licenses import License
from domain.partners import SUPPORTED_CURRENCIES
from domain.products import EARLIEST_PRICE_DATE, ProductPrice
from persistence.database import Database
from persistence.licenses import licenses
from persistence.partners import partners
from persistence.products import product_prices, products
from persistence.unit_of_work import UnitOfWork

DST_MONTHS = [
    ("America/New_York", BillingMonth(2026, 3)),
    ("America/New_York", BillingMonth(2026, 11)),
    ("Europe/London", BillingMonth(2026, 3)),
    ("Europe/London", BillingMonth(2026, 10)),
    ("Asia/Tokyo", BillingMonth(2026, 2)),
]
# "x-b" sorts before "xa" by code point but after it in a natural-language collation: the SQL order
# must be Python's.
PRODUCT_SUFFIXES = ("-b", "a")
KEYS = ("k-1", "k1", "k_2", "K3", "k4")
example_numbers = itertools.count()


@st.composite
def instants(draw: st.DrawFn, zone: str, month: BillingMonth) -> datetime:
    """Within ~35 days either side of the month, often within seconds of a local midnight."""
    start, end = month.bounds(zone)
    if draw(st.booleans()):
        return draw(st.sampled_from(month.midnights(zone))) + timedelta(seconds=draw(st.integers(-2, 2)))
    span = int((end - start).total_seconds()) + 70 * 86400
    return start - timedelta(days=35) + timedelta(seconds=draw(st.integers(0, span)))


@st.composite
def histories(draw: st.DrawFn, zone: str, month: BillingMonth, prefix: str) -> list[Holding]:
    """Per key, a chain of the partner's holdings: each but the last ended by transfer (the key went to
    someone else, and maybe came back); the last is active, revoked or transferred."""
    holdings = []
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=5)):
        product = prefix + draw(st.sampled_from(PRODUCT_SUFFIXES))
        instants_of_key = sorted(draw(st.lists(instants(zone, month), min_size=1, max_size=6)))
        pairs = list(itertools.zip_longest(instants_of_key[::2], instants_of_key[1::2]))
        for link, (held_from, held_until) in enumerate(pairs):
            last = link == len(pairs) - 1
            holdings.append(
                Holding(
                    id=f"{prefix}{key}-{link}",
                    key=f"{prefix}{key}",
                    product_slug=product,
                    site=draw(st.sampled_from([None, f"https://{prefix}{key}-{link}.example"])),
                    held_from=held_from,
                    held_until=held_until,
                    ended_by_transfer=held_until is not None and (not last or draw(st.booleans())),
                )
            )
    return holdings


@st.composite
def price_lists(draw: st.DrawFn, month: BillingMonth, prefix: str) -> list[ProductPrice]:
    """Each product's price since 2000, and maybe changes within the month (perhaps back to it)."""
    prices = []
    for suffix in PRODUCT_SUFFIXES:
        first = draw(st.integers(1, 2_000_000))
        prices.append(ProductPrice(prefix + suffix, "usd", EARLIEST_PRICE_DATE, first))
        days = draw(st.lists(st.integers(1, month.days - 1), unique=True, max_size=2))
        for day in sorted(days):
            micros = draw(st.sampled_from([first, draw(st.integers(1, 2_000_000))]))
            prices.append(ProductPrice(prefix + suffix, "usd", month.first_day + timedelta(days=day), micros))
    return prices


def received_holdings(holdings: list[Holding], receiver: str) -> list[Holding]:
    """The other partner's side of each transfer: it holds the key from the transfer until the next
    link of the chain (the key came back), or for good after the last one."""
    received = []
    for holding, following in itertools.zip_longest(holdings, holdings[1:]):
        if not holding.ended_by_transfer or holding.held_until is None:
            continue
        back = following is not None and following.key == holding.key
        received.append(
            Holding(
                id=f"{holding.id}-{receiver}",
                key=holding.key,
                product_slug=holding.product_slug,
                site=None,
                held_from=holding.held_until,
                held_until=following.held_from if back and following is not None else None,
                ended_by_transfer=back,
            )
        )
    return received


def as_license(holding: Holding, partner_id: str) -> License:
    if holding.held_until is None:
        state = "issued" if holding.site is None else "assigned"
    else:
        state = "transferred" if holding.ended_by_transfer else "revoked"
    return License(
        id=holding.id,
        key=holding.key,
        partner_id=partner_id,
        product_slug=holding.product_slug,
        state=state,
        site=holding.site,
        held_from=holding.held_from,
        held_until=holding.held_until,
        issued_at=holding.held_from,
    )


async def compare(
    database_url: str, zone: str, month: BillingMonth, prefix: str, data: st.DataObject
) -> None:
    holdings = data.draw(histories(zone, month, prefix))
    prices = data.draw(price_lists(month, prefix))
    partner_id, receiver_id = f"ptr_{prefix}", f"ptr_{prefix}r"
    # The partner the keys went to holds them in between: its holdings of the same keys must count
    # neither as the partner's nor as keys it held twice.
    received = received_holdings(holdings, receiver_id)
    database = Database(database_url)
    try:
        async with UnitOfWork(database) as uow:
            await uow.connection.execute(
                insert(partners),
                [
                    {
                        "id": each,
                        "name": each,
                        "billing_zone": zone,
                        "currency": "usd",
                        "created_at": datetime(2020, 1, 1, tzinfo=UTC),
                    }
                    for each in (partner_id, receiver_id)
                ],
            )
            await uow.connection.execute(
                insert(products), [{"slug": prefix + suffix, "name": prefix} for suffix in PRODUCT_SUFFIXES]
            )
            await uow.connection.execute(insert(product_prices), [price.__dict__ for price in prices])
            await uow.licenses.add_many(
                [as_license(holding, partner_id) for holding in holdings]
                + [as_license(holding, receiver_id) for holding in received]
            )
        async with UnitOfWork(database, read_only=True) as uow:
            book = await uow.billing.price_book("usd")
            sums = await uow.billing.month_sums(partner_id, book, month, zone, SUPPORTED_CURRENCIES["usd"])
            estimated = sums.statement()
            # What `billingEstimate { licenseDays costs { total } products { amount } }` reads.
            lines_only = await uow.billing.month_sums(
                partner_id, book, month, zone, SUPPORTED_CURRENCIES["usd"], StatementParts.LINES
            )
            day_lines = []
            for offset in itertools.count(0, 3):  # small pages, to page through the order
                page = await uow.billing.day_lines(partner_id, book, sums, offset=offset, limit=3)
                day_lines.extend(page)
                if len(page) < 3:
                    break
            count = await uow.billing.day_line_count(partner_id, book, month)
            receiver_estimate = (
                await uow.billing.month_sums(receiver_id, book, month, zone, SUPPORTED_CURRENCIES["usd"])
            ).statement()
        async with UnitOfWork(database) as uow:  # keep the session's catalog small
            slugs = [prefix + suffix for suffix in PRODUCT_SUFFIXES]
            await uow.connection.execute(
                delete(licenses).where(licenses.c.partner_id.in_([partner_id, receiver_id]))
            )
            await uow.connection.execute(
                delete(product_prices).where(product_prices.c.product_slug.in_(slugs))
            )
            await uow.connection.execute(delete(products).where(products.c.slug.in_(slugs)))
            await uow.connection.execute(delete(partners).where(partners.c.id.in_([partner_id, receiver_id])))
    finally:
        await database.dispose()
    expected = build_statement(holdings, PriceBook("usd", prices), month, zone, SUPPORTED_CURRENCIES["usd"])
    assert estimated.product_lines == expected.product_lines
    assert estimated.counts == expected.counts
    assert estimated.costs == expected.costs
    assert lines_only.total == expected.total
    assert lines_only.license_days == expected.license_days
    assert [(plan.product_slug, plan.daily_price_micros, plan.amount) for plan in lines_only.lines] == [
        (line.product_slug, line.daily_price_micros, line.amount) for line in expected.product_lines
    ]
    assert tuple(day_lines) == expected.day_lines
    assert count == len(expected.day_lines)
    received_expected = build_statement(
        received, PriceBook("usd", prices), month, zone, SUPPORTED_CURRENCIES["usd"]
    )
    assert receiver_estimate.product_lines == received_expected.product_lines
    assert receiver_estimate.counts == received_expected.counts
    assert receiver_estimate.costs == received_expected.costs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(zone_month=st.sampled_from(DST_MONTHS), data=st.data())
def test_the_estimate_summed_in_sql_equals_the_day_rule(
    database_url: str, zone_month: tuple[str, BillingMonth], data: st.DataObject
) -> None:
    zone, month = zone_month
    prefix = f"spans{next(example_numbers)}"
    asyncio.run(compare(database_url, zone, month, prefix, data))
