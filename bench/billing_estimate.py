"""How long a month's statement takes for a partner with 100k licenses with random histories.

Builds the holdings in memory (about 9 products; issues, revokes and transfer chains around July 2026,
Europe/Paris), times `build_statement` (median of several runs) and compares it with a plain Python loop
that only touches the same 100k rows: the floor any per-license pass in Python pays. Target: <= 0.5 s.

Run: .venv/bin/python bench/billing_estimate.py [licenses]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain.billing import BillingMonth, Holding, build_statement

ZONE = "Europe/Paris"
MONTH = BillingMonth(2026, 7)
RUNS = 7
PRICES = {
    f"product-{index}": price
    for index, price in enumerate([328767, 136986, 54794, 273972, 684931, 95890, 410958, 1353425, 19178])
}


def random_holdings(count: int, seed: int = 2026) -> list[Holding]:
    """`count` holdings: most issued before or during the month, some revoked, some passed on by transfer."""
    rng = random.Random(seed)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    span = int(timedelta(days=110).total_seconds())
    products = list(PRICES)
    holdings: list[Holding] = []
    key_number = 0
    while len(holdings) < count:
        key_number += 1
        key = f"key-{key_number:07d}"
        product = rng.choice(products)
        held_from = start + timedelta(seconds=rng.randrange(span))
        # A chain of 1-3 holdings of the same key: transfers, then maybe a revoke.
        for link in range(rng.choice((1, 1, 1, 2, 3))):
            site = f"https://site-{rng.randrange(50_000)}.example" if rng.random() < 0.7 else None
            ends = rng.random() < 0.5
            held_until = held_from + timedelta(seconds=rng.randrange(1, 40 * 86400)) if ends else None
            by_transfer = ends and rng.random() < 0.5
            holdings.append(
                Holding(f"hld-{key_number}-{link}", key, product, site, held_from, held_until, by_transfer)
            )
            if not by_transfer or held_until is None or len(holdings) >= count:
                break
            held_from = held_until
    return holdings


def timings(work: Callable[[], object]) -> list[float]:
    seconds = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return seconds


def touch_rows(holdings: list[Holding]) -> int:
    """The baseline: one pass reading each row's fields, doing nothing with them."""
    touched = 0
    for holding in holdings:
        if holding.held_from is not None and holding.product_slug:
            touched += 1
    return touched


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    holdings = random_holdings(count)
    statement = build_statement(holdings, PRICES, MONTH, ZONE, 2)
    assert statement.total == sum(line.amount for line in statement.day_lines)
    statement_runs = timings(lambda: build_statement(holdings, PRICES, MONTH, ZONE, 2))
    statement_s = statistics.median(statement_runs)
    baseline_s = statistics.median(timings(lambda: touch_rows(holdings)))
    print(
        f"holdings: {len(holdings)}, day-lines: {len(statement.day_lines)}, "
        f"license-days: {statement.license_days}, total: {statement.total} cents"
    )
    print(
        f"build_statement: {statement_s * 1000:.1f} ms median, {min(statement_runs) * 1000:.1f} ms best "
        f"of {RUNS} (target <= 500 ms)"
    )
    print(f"plain loop touching the rows: {baseline_s * 1000:.1f} ms")
    print(f"ratio build_statement / plain loop: {statement_s / baseline_s:.1f}x")


if __name__ == "__main__":
    main()
