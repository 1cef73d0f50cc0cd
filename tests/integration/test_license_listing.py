"""Listing licenses: filters, search, order, keyset pages, and a constant number of SQL statements."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from domain.clock import SettableClock
from persistence.database import Database
from tests.conftest import ON_POSTGRES
from tests.integration.conftest import Api, PartnerAccess, enrol_in_good_standing
from tests.integration.license_operations import (
    ACCEPT_TRANSFER,
    REVOKE,
    START_TRANSFER,
    assign,
    fresh_site,
    issue,
    mutate,
)

LIST = """
query($filter: LicenseFilterInput, $orderBy: LicenseOrderInput, $first: Int, $after: String) {
  licenses(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage endCursor }
    nodes { key state site issuedAt assignedAt revokedAt product { slug name dailyPrice } events { action } }
  }
}"""


async def page(api: Api, token: str, **variables: Any) -> dict[str, Any]:
    body = await api.data(LIST, variables, token)
    result: dict[str, Any] = body["licenses"]
    return result


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    """Every SQL statement (but SQLite's BEGIN) any engine sends while the block runs."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.strip().upper() not in {"BEGIN", "BEGIN IMMEDIATE"}:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def test_a_page_of_100_costs_the_same_statements_as_a_page_of_10(
    api: Api, good_partner: PartnerAccess
) -> None:
    keys = await issue(api, good_partner.token, "jetpack-backup", 60)
    keys += await issue(api, good_partner.token, "jetpack-scan", 60)
    for key in keys[:30]:
        await assign(api, good_partner.token, key, fresh_site())
    with counted_statements() as ten:
        small = await page(api, good_partner.token, first=10)
    with counted_statements() as hundred:
        large = await page(api, good_partner.token, first=100)
    assert (len(small["nodes"]), len(large["nodes"])) == (10, 100)
    assert {n["product"]["slug"] for n in large["nodes"]} == {"jetpack-backup", "jetpack-scan"}
    assert all(n["events"] for n in large["nodes"])
    assert len(ten) == len(hundred), (ten, hundred)
    # The token, the page with its count, the products with their prices, the caller's currency (whose
    # prices `dailyPrice` shows), the events: whatever the page size.
    assert len(hundred) == 5, hundred


PAGE_WITHOUT_COUNT = """{ licenses(first: 100) { pageInfo { endCursor }
  nodes { key state site issuedAt product { name dailyPrice } } } }"""


async def test_a_page_that_does_not_ask_for_total_count_does_not_count_the_whole_list(
    api: Api, good_partner: PartnerAccess
) -> None:
    await issue(api, good_partner.token, "jetpack-backup", 30)
    with counted_statements() as sent:
        body = await api.data(PAGE_WITHOUT_COUNT, {}, good_partner.token)
    assert len(body["licenses"]["nodes"]) == 30
    assert not [s for s in sent if "count(" in s.lower()], sent
    # The token, the page, the products with their prices, the caller's currency.
    assert len(sent) == 4, sent


async def test_a_page_of_100_with_products_and_prices_is_three_statements_counted_or_not(
    api: Api, good_partner: PartnerAccess
) -> None:
    """Besides the token's lookup (once per request): the page (its count riding along as a column when
    `totalCount` is asked), the page's products with their prices, and the caller's currency."""
    await issue(api, good_partner.token, "jetpack-backup", 60)
    await issue(api, good_partner.token, "jetpack-scan", 60)
    counted_query = PAGE_WITHOUT_COUNT.replace("pageInfo", "totalCount pageInfo")
    for query in (PAGE_WITHOUT_COUNT, counted_query):
        with counted_statements() as sent:
            body = await api.data(query, {}, good_partner.token)
        assert len(body["licenses"]["nodes"]) == 100
        assert all(node["product"]["dailyPrice"] for node in body["licenses"]["nodes"])
        page_statements = [s for s in sent if "api_tokens" not in s]
        assert len(page_statements) == 3, page_statements
    assert body["licenses"]["totalCount"] == 120


async def test_total_count_asked_for_in_a_fragment_is_counted(api: Api, good_partner: PartnerAccess) -> None:
    await issue(api, good_partner.token, "jetpack-scan", 12)
    query = """query { licenses(first: 5) { ...Counted nodes { key } } }
      fragment Counted on LicenseConnection { ... on LicenseConnection { totalCount } }"""
    with counted_statements() as sent:
        body = await api.data(query, {}, good_partner.token)
    assert body["licenses"]["totalCount"] == 12
    assert len(body["licenses"]["nodes"]) == 5
    assert [s for s in sent if "count(" in s.lower()], sent


async def test_pages_follow_each_other_without_gaps_or_repeats(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    keys = []
    for _ in range(5):
        keys += await issue(api, good_partner.token, "jetpack-boost", 5)  # 5 share each issue instant
        clock.advance_to(clock.now() + timedelta(minutes=1))
    seen: list[str] = []
    after = None
    while True:
        current = await page(api, good_partner.token, first=7, after=after)
        assert current["totalCount"] == 25
        seen += [n["key"] for n in current["nodes"]]
        if not current["pageInfo"]["hasNextPage"]:
            break
        after = current["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(keys)
    assert len(seen) == 25
    issued = [n["issuedAt"] for n in (await page(api, good_partner.token, first=25))["nodes"]]
    assert issued == sorted(issued, reverse=True)  # newest first by default


async def test_filter_by_state_and_product_and_order_by_revocation(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    backups = await issue(api, good_partner.token, "jetpack-backup", 3)
    scans = await issue(api, good_partner.token, "jetpack-scan", 2)
    for key in (backups[2], backups[0], scans[0]):
        clock.advance_to(clock.now() + timedelta(hours=1))
        await mutate(api, good_partner.token, REVOKE, key=key)
    revoked_backups = await page(
        api,
        good_partner.token,
        filter={"states": ["REVOKED"], "productSlugs": ["jetpack-backup"]},
        orderBy={"field": "REVOKED_AT", "direction": "ASC"},
    )
    assert [n["key"] for n in revoked_backups["nodes"]] == [backups[2], backups[0]]
    assert revoked_backups["totalCount"] == 2
    by_revocation = await page(api, good_partner.token, orderBy={"field": "REVOKED_AT", "direction": "DESC"})
    assert [n["key"] for n in by_revocation["nodes"][:3]] == [scans[0], backups[0], backups[2]]
    assert all(n["revokedAt"] is None for n in by_revocation["nodes"][3:])  # never revoked: last


async def test_licenses_never_assigned_come_last_in_both_directions(
    api: Api, good_partner: PartnerAccess
) -> None:
    keys = await issue(api, good_partner.token, "jetpack-social", 3)
    await assign(api, good_partner.token, keys[1], fresh_site())
    for direction in ("ASC", "DESC"):
        listed = await page(api, good_partner.token, orderBy={"field": "ASSIGNED_AT", "direction": direction})
        assert listed["nodes"][0]["key"] == keys[1]
        assert [n["assignedAt"] for n in listed["nodes"][1:]] == [None, None]


async def test_search_matches_key_product_name_and_site_in_any_case(
    api: Api, good_partner: PartnerAccess
) -> None:
    [backup] = await issue(api, good_partner.token, "jetpack-backup")
    [video] = await issue(api, good_partner.token, "jetpack-videopress")
    site = fresh_site("bakery")
    await assign(api, good_partner.token, backup, site)

    async def found(search: str) -> set[str]:
        return {n["key"] for n in (await page(api, good_partner.token, filter={"search": search}))["nodes"]}

    assert await found(video[-10:].upper()) == {video}
    assert await found("videoPRESS") == {video}  # product name
    assert await found(site.removeprefix("https://")[:12]) == {backup}
    assert await found("%") == set()  # wildcards are plain text
    assert await found("   ") == {backup, video}


async def test_another_partners_licenses_are_never_listed(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    other = await enrol_in_good_standing(api, staff_token, database, clock, "Other")
    await issue(api, other.token, "jetpack-backup", 3)
    mine = await issue(api, good_partner.token, "jetpack-backup", 1)
    listed = await page(api, good_partner.token)
    assert [n["key"] for n in listed["nodes"]] == mine


async def test_page_size_and_foreign_cursors_are_refused(api: Api, good_partner: PartnerAccess) -> None:
    for variables in ({"first": 0}, {"first": 101}, {"after": "not-a-cursor"}):
        body = await api.call(LIST, variables, good_partner.token)
        assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT", variables


DASHBOARD = """{ viewer { id name standing { state allowedActions } }
  licenseCounts { issued assigned revoked notRevoked all }
  licenses(first: 5) { nodes { key product { name dailyPrice } } } }"""


async def test_a_query_reads_all_its_fields_through_one_connection(
    api: Api, good_partner: PartnerAccess
) -> None:
    """The token, the viewer, its standing, the counts and a page: one read transaction, not one each."""
    await issue(api, good_partner.token, "jetpack-backup", 6)
    checkouts: list[object] = []

    def checked_out(*_: Any) -> None:
        checkouts.append(None)

    event.listen(Pool, "checkout", checked_out)
    try:
        with counted_statements() as sent:
            body = await api.data(DASHBOARD, {}, good_partner.token)
    finally:
        event.remove(Pool, "checkout", checked_out)
    assert body["licenseCounts"]["all"] == 6 and len(body["licenses"]["nodes"]) == 5
    assert body["viewer"]["standing"]["state"] == "GOOD"
    assert len(sent) >= 5, sent
    assert len(checkouts) == 1, sent


@contextmanager
def counted_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every call aiosqlite runs on a connection's thread while the block runs."""
    trips: list[object] = []
    send = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(fn)
        return await send(self, fn, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(aiosqlite.Connection, "_execute", counted)
        yield trips


@pytest.mark.skipif(ON_POSTGRES, reason="trips to aiosqlite's thread exist only on SQLite")
async def test_a_page_on_sqlite_costs_one_trip_to_its_thread_per_statement(
    api: Api, good_partner: PartnerAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `BEGIN` rides with the first statement and the pool's rollback of an ended transaction
    costs nothing: a statement is one trip, a read transaction one more (its rollback)."""
    await issue(api, good_partner.token, "jetpack-backup", 30)
    with counted_trips(monkeypatch) as trips, counted_statements() as sent:
        body = await api.data(PAGE_WITHOUT_COUNT, {}, good_partner.token)
    assert len(body["licenses"]["nodes"]) == 30
    assert len(sent) == 4, sent
    assert len(trips) == len(sent) + 1, trips


async def test_the_viewer_and_its_standing_are_one_read(api: Api, good_partner: PartnerAccess) -> None:
    with counted_statements() as sent:
        body = await api.data("{ viewer { name standing { state allowedActions } } }", {}, good_partner.token)
    assert body["viewer"]["standing"]["state"] == "GOOD"
    assert "ISSUE" in body["viewer"]["standing"]["allowedActions"]
    partner_reads = [s for s in sent if "FROM partners" in s]
    assert len(partner_reads) == 1, sent


async def test_a_mutation_answers_with_what_it_wrote(api: Api, good_partner: PartnerAccess) -> None:
    """A mutation's payload is read after its write commits (its reads share no earlier snapshot)."""
    [key] = await issue(api, good_partner.token, "jetpack-scan", 1)
    body = await api.data(
        """mutation($key: String!) { revokeLicense(input: {key: $key}) {
             license { key state product { name } } errors { code } } }""",
        {"key": key},
        good_partner.token,
    )
    revoked = body["revokeLicense"]
    assert revoked["errors"] == [] and revoked["license"]["state"] == "REVOKED"
    assert revoked["license"]["product"]["name"]
    assert (await api.data(DASHBOARD, {}, good_partner.token))["licenseCounts"]["revoked"] == 1


TOTAL = "{ licenses(first: 1) { totalCount } }"
# With every state asked for, a filtered list is the same list, counted by its own statement.
COUNTED_ROW_BY_ROW = """{ licenses(first: 1, filter: {states: [ISSUED, ASSIGNED, REVOKED, TRANSFERRED]}) {
  totalCount } }"""


async def totals(api: Api, token: str) -> tuple[int, int]:
    """The unfiltered list's total and the same list's, filtered by every state."""
    unfiltered = (await api.data(TOTAL, {}, token))["licenses"]["totalCount"]
    counted = (await api.data(COUNTED_ROW_BY_ROW, {}, token))["licenses"]["totalCount"]
    return unfiltered, counted


async def test_total_count_follows_issues_revocations_and_transfers_on_both_sides(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Receiving Agency")
    assert await totals(api, receiver.token) == (0, 0)
    keys = await issue(api, good_partner.token, "jetpack-backup", 7)
    keys += await issue(api, good_partner.token, "jetpack-scan", 5)
    assert await totals(api, good_partner.token) == (12, 12)
    assert (await mutate(api, good_partner.token, REVOKE, key=keys[0]))["errors"] == []
    # A revoked license is still listed (and counted): only its state changed.
    assert await totals(api, good_partner.token) == (12, 12)
    started = await mutate(api, good_partner.token, START_TRANSFER, key=keys[1])
    assert (await mutate(api, receiver.token, ACCEPT_TRANSFER, code=started["code"]))["errors"] == []
    # The sender keeps its ended holding; the receiver's holding is a new one.
    assert await totals(api, good_partner.token) == (12, 12)
    assert await totals(api, receiver.token) == (1, 1)


async def test_total_count_is_exact_after_many_issues_at_once(api: Api, good_partner: PartnerAccess) -> None:
    quantities = [1, 2, 3, 4, 5, 6, 7, 8]
    issued = await asyncio.gather(
        *(issue(api, good_partner.token, "jetpack-backup", quantity) for quantity in quantities)
    )
    assert sum(len(keys) for keys in issued) == sum(quantities)
    assert await totals(api, good_partner.token) == (sum(quantities), sum(quantities))


EVERY_STATE = {"states": ["ISSUED", "ASSIGNED", "REVOKED", "TRANSFERRED"]}


async def every_page(api: Api, token: str, **variables: Any) -> list[tuple[str, str | None, str | None]]:
    """Every license of the list, 7 a page, with its assignment and revocation instants."""
    listed: list[tuple[str, str | None, str | None]] = []
    after = None
    while True:
        body = await page(api, token, first=7, after=after, **variables)
        listed += [(node["key"], node["assignedAt"], node["revokedAt"]) for node in body["nodes"]]
        if not body["pageInfo"]["hasNextPage"]:
            return listed
        after = body["pageInfo"]["endCursor"]


async def test_an_unfiltered_list_pages_exactly_like_the_same_list_filtered(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    """The unfiltered list (statements built once, run straight on SQLite's cursor) and the same
    licenses through a filter (a statement of its own) list the same, in every order, page by page,
    licenses without the instant they are ordered by last."""
    keys = await issue(api, good_partner.token, "jetpack-backup", 12)
    for number, key in enumerate(keys[:8]):
        clock.advance_to(clock.now() + timedelta(minutes=number + 1))
        await assign(api, good_partner.token, key, fresh_site())
    for key in keys[5:10]:
        clock.advance_to(clock.now() + timedelta(minutes=1))
        assert (await mutate(api, good_partner.token, REVOKE, key=key))["errors"] == []
    for field in ("ISSUED_AT", "ASSIGNED_AT", "REVOKED_AT"):
        for direction in ("ASC", "DESC"):
            order = {"field": field, "direction": direction}
            unfiltered = await every_page(api, good_partner.token, orderBy=order)
            filtered = await every_page(api, good_partner.token, orderBy=order, filter=EVERY_STATE)
            assert unfiltered == filtered, order
            assert sorted(key for key, _, _ in unfiltered) == sorted(keys)
