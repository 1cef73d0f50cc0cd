"""The license lifecycle through GraphQL: issue, assign, move, unassign, revoke, with history."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from domain.clock import SettableClock
from persistence.database import Database
from persistence.events import events
from persistence.licenses import licenses
from persistence.unit_of_work import UnitOfWork
from tests.integration.conftest import Api, PartnerAccess, enrol_in_good_standing
from tests.integration.license_operations import (
    ASSIGN,
    COUNTS,
    ISSUE,
    LICENSE,
    REVOKE,
    UNASSIGN,
    assign,
    fresh_site,
    issue,
    mutate,
)


async def license_rows(database: Database, partner_id: str) -> int:
    async with UnitOfWork(database, read_only=True) as uow:
        statement = select(func.count()).select_from(licenses).where(licenses.c.partner_id == partner_id)
        return int((await uow.connection.execute(statement)).scalar_one())


async def test_issued_license_is_billed_from_the_issue_instant_on_no_site(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    body = await api.data(
        ISSUE,
        {
            "input": {
                "items": [
                    {"productSlug": "jetpack-backup", "quantity": 2},
                    {"productSlug": "jetpack-scan", "quantity": 1},
                ]
            }
        },
        good_partner.token,
    )
    issued = body["issueLicenses"]["licenses"]
    assert [(x["product"]["slug"], x["state"], x["site"]) for x in issued] == [
        ("jetpack-backup", "ISSUED", None),
        ("jetpack-backup", "ISSUED", None),
        ("jetpack-scan", "ISSUED", None),
    ]
    assert {x["heldFrom"] for x in issued} == {clock.now().isoformat()}
    assert all(x["key"].startswith(x["product"]["slug"] + "_") for x in issued)
    assert len({x["key"] for x in issued}) == 3


async def test_license_keys_are_the_product_slug_and_128_random_bits(
    api: Api, good_partner: PartnerAccess
) -> None:
    keys = await issue(api, good_partner.token, "jetpack-boost", 100)
    suffixes = [key.removeprefix("jetpack-boost_") for key in keys]
    assert all(len(suffix) == 32 and int(suffix, 16) >= 0 for suffix in suffixes)
    assert len(set(suffixes)) == 100


async def test_assign_move_unassign_revoke_is_recorded_as_history(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    [key] = await issue(api, good_partner.token)
    first, second = fresh_site("first"), fresh_site("second")
    clock.advance_to(clock.now() + timedelta(days=1))
    assigned = await assign(api, good_partner.token, key, first + "/")
    assert (assigned["license"]["state"], assigned["license"]["site"]) == ("ASSIGNED", first)
    clock.advance_to(clock.now() + timedelta(days=1))
    moved = await assign(api, good_partner.token, key, second)
    assert (moved["license"]["state"], moved["license"]["site"]) == ("ASSIGNED", second)
    unassigned = await mutate(api, good_partner.token, UNASSIGN, key=key)
    assert (unassigned["license"]["state"], unassigned["license"]["site"]) == ("ISSUED", None)
    clock.advance_to(clock.now() + timedelta(days=1))
    revoked = await mutate(api, good_partner.token, REVOKE, key=key)
    assert revoked["license"]["state"] == "REVOKED"
    assert revoked["license"]["revokedAt"] == revoked["license"]["heldUntil"] == clock.now().isoformat()

    history = (await api.data(LICENSE, {"key": key}, good_partner.token))["license"]["events"]
    assert [(e["action"], e["fromState"], e["toState"], e["site"], e["previousSite"]) for e in history] == [
        ("issue", None, "ISSUED", None, None),
        ("assign", "ISSUED", "ASSIGNED", first, None),
        ("move", "ASSIGNED", "ASSIGNED", second, first),
        ("unassign", "ASSIGNED", "ISSUED", None, second),
        ("revoke", "ISSUED", "REVOKED", None, None),
    ]
    assert all(e["actorTokenId"].startswith("tok_") and e["requestId"] for e in history)
    assert [e["seq"] for e in history] == sorted(e["seq"] for e in history)


async def test_event_rows_are_written_with_the_transition(
    api: Api, good_partner: PartnerAccess, database: Database
) -> None:
    [key] = await issue(api, good_partner.token)
    await assign(api, good_partner.token, key, fresh_site())
    async with UnitOfWork(database, read_only=True) as uow:
        rows = (
            await uow.connection.execute(
                select(events.c.stream, events.c.action).where(events.c.subject == key).order_by(events.c.seq)
            )
        ).all()
    assert [tuple(row) for row in rows] == [("license", "issue"), ("license", "assign")]


async def test_a_revoked_license_cannot_be_assigned_and_the_message_names_its_state(
    api: Api, good_partner: PartnerAccess
) -> None:
    [key] = await issue(api, good_partner.token)
    await mutate(api, good_partner.token, REVOKE, key=key)
    refused = await assign(api, good_partner.token, key, fresh_site())
    assert refused == {
        "license": None,
        "errors": [
            {
                "code": "INVALID_TRANSITION",
                "message": f"License {key} is revoked; it cannot be assigned.",
                "field": None,
            }
        ],
    }
    again = await mutate(api, good_partner.token, REVOKE, key=key)
    assert again["errors"][0]["message"] == f"License {key} is revoked; it cannot be revoked."


async def test_an_issued_license_cannot_be_unassigned(api: Api, good_partner: PartnerAccess) -> None:
    [key] = await issue(api, good_partner.token)
    refused = await mutate(api, good_partner.token, UNASSIGN, key=key)
    assert refused["errors"][0]["code"] == "INVALID_TRANSITION"
    assert refused["errors"][0]["message"] == f"License {key} is issued; it cannot be unassigned."


async def test_one_active_license_per_product_per_site(api: Api, good_partner: PartnerAccess) -> None:
    first, second = await issue(api, good_partner.token, "jetpack-backup", 2)
    [scan] = await issue(api, good_partner.token, "jetpack-scan", 1)
    site = fresh_site()
    assert (await assign(api, good_partner.token, first, site))["errors"] == []
    taken = await assign(api, good_partner.token, second, site.upper())
    assert taken["errors"][0]["code"] == "SITE_TAKEN"
    assert taken["errors"][0]["field"] == "site"
    assert (await assign(api, good_partner.token, scan, site))["errors"] == []  # another product is fine
    await mutate(api, good_partner.token, REVOKE, key=first)
    assert (await assign(api, good_partner.token, second, site))["errors"] == []  # freed by the revoke


async def test_moving_to_the_same_site_is_refused(api: Api, good_partner: PartnerAccess) -> None:
    [key] = await issue(api, good_partner.token)
    site = fresh_site()
    await assign(api, good_partner.token, key, site)
    refused = await assign(api, good_partner.token, key, site)
    assert (refused["errors"][0]["code"], refused["errors"][0]["field"]) == ("INVALID_INPUT", "site")


async def test_site_urls_are_normalized_before_they_are_stored(api: Api, good_partner: PartnerAccess) -> None:
    [key] = await issue(api, good_partner.token)
    host = fresh_site().removeprefix("https://")
    assigned = await assign(
        api, good_partner.token, key, f"  HTTPS://Café.{host.upper()}:443/Blog/?utm=x#top "
    )
    assert assigned["license"]["site"] == f"https://xn--caf-dma.{host}/Blog"


async def test_a_percent_encoded_spelling_of_a_held_site_is_taken_across_partners(
    api: Api, staff_token: str, database: Database, clock: SettableClock, good_partner: PartnerAccess
) -> None:
    other = await enrol_in_good_standing(api, staff_token, database, clock, name="Other Agency")
    [held] = await issue(api, good_partner.token)
    [mine, theirs] = await issue(api, good_partner.token, quantity=2)
    [elsewhere] = await issue(api, other.token)
    site = fresh_site()
    assert (await assign(api, good_partner.token, held, f"{site}/shop"))["errors"] == []
    for token, key, spelling in [
        (good_partner.token, mine, f"{site}/%73hop"),
        (other.token, elsewhere, f"{site}/%73%68%6F%70"),
        (other.token, elsewhere, f"{site.upper()}/%73hop/?ref=x"),
        (good_partner.token, theirs, f"{site}//%73hop//"),
    ]:
        taken = await assign(api, token, key, spelling)
        assert (taken["license"], taken["errors"][0]["code"]) == (None, "SITE_TAKEN"), spelling


async def test_encoded_dot_segments_separators_and_parameters_are_refused(
    api: Api, good_partner: PartnerAccess
) -> None:
    [key] = await issue(api, good_partner.token)
    site = fresh_site()
    for spelling in [
        f"{site}/a/%2e%2e/shop",
        f"{site}/a/.%2E/shop",
        f"{site}/shop%2F",
        f"{site}/shop%2fadmin",
        f"{site}/shop;",
        f"{site}/shop%zz",
    ]:
        refused = await assign(api, good_partner.token, key, spelling)
        assert refused["license"] is None
        assert (refused["errors"][0]["code"], refused["errors"][0]["field"]) == ("INVALID_SITE", "site"), (
            spelling
        )
    state = (await api.data(LICENSE, {"key": key}, good_partner.token))["license"]
    assert (state["state"], state["site"], len(state["events"])) == ("ISSUED", None, 1)


async def test_hostile_or_malformed_sites_are_refused_and_nothing_changes(
    api: Api, good_partner: PartnerAccess
) -> None:
    [key] = await issue(api, good_partner.token)
    for site in [
        "javascript:alert(1)",
        "<script>alert(1)</script>",
        "http://user:secret@example.com",
        "http://127.0.0.1/admin",
        "ftp://files.example.com",
        "https://exa mple.com",
        "https://example.com/../../etc/passwd",
        "localhost",
        "",
    ]:
        refused = await assign(api, good_partner.token, key, site)
        assert refused["license"] is None
        assert (refused["errors"][0]["code"], refused["errors"][0]["field"]) == ("INVALID_SITE", "site"), site
        assert "<script>" not in refused["errors"][0]["message"]
    state = (await api.data(LICENSE, {"key": key}, good_partner.token))["license"]
    assert (state["state"], len(state["events"])) == ("ISSUED", 1)


async def test_unknown_product_and_bad_quantities_issue_nothing(
    api: Api, good_partner: PartnerAccess, database: Database
) -> None:
    cases = [
        (
            [
                {"productSlug": "jetpack-backup", "quantity": 1},
                {"productSlug": "no-such-thing", "quantity": 1},
            ],
            ("UNKNOWN_PRODUCT", "items[1].productSlug"),
        ),
        ([{"productSlug": "jetpack-backup", "quantity": 0}], ("INVALID_INPUT", "items[0].quantity")),
        ([{"productSlug": "jetpack-backup", "quantity": 101}], ("INVALID_INPUT", "items[0].quantity")),
        (
            [
                {"productSlug": "jetpack-scan", "quantity": 5},
                {"productSlug": "jetpack-backup", "quantity": 101},
            ],
            ("INVALID_INPUT", "items[1].quantity"),
        ),
        ([], ("INVALID_INPUT", "items")),
    ]
    for items, (code, field) in cases:
        body = await api.data(ISSUE, {"input": {"items": items}}, good_partner.token)
        payload = body["issueLicenses"]
        assert payload["licenses"] == []
        assert (payload["errors"][0]["code"], payload["errors"][0]["field"]) == (code, field)
    assert await license_rows(database, good_partner.id) == 0


async def test_unknown_key_and_another_partners_key_look_the_same(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    other = await enrol_in_good_standing(api, staff_token, database, clock, "Other Agency")
    [theirs] = await issue(api, other.token)
    unknown = await api.call(LICENSE, {"key": "jetpack-backup_" + "0" * 32}, good_partner.token)
    foreign = await api.call(LICENSE, {"key": theirs}, good_partner.token)
    assert unknown["errors"][0]["message"] == foreign["errors"][0]["message"] == "No license with this key."
    assert (
        unknown["errors"][0]["extensions"]["code"]
        == foreign["errors"][0]["extensions"]["code"]
        == "NOT_FOUND"
    )
    for operation, extra in [(REVOKE, {}), (UNASSIGN, {}), (ASSIGN, {"site": fresh_site()})]:
        refused = await mutate(api, good_partner.token, operation, key=theirs, **extra)
        assert refused["errors"] == [
            {"code": "NOT_FOUND", "message": "No license with this key.", "field": "key"}
        ]
    still = (await api.data(LICENSE, {"key": theirs}, other.token))["license"]
    assert still["state"] == "ISSUED"


async def test_license_counts_by_state(api: Api, good_partner: PartnerAccess) -> None:
    keys = await issue(api, good_partner.token, "jetpack-social", 5)
    await assign(api, good_partner.token, keys[0], fresh_site())
    await assign(api, good_partner.token, keys[1], fresh_site())
    await mutate(api, good_partner.token, REVOKE, key=keys[2])
    counts = (await api.data(COUNTS, token=good_partner.token))["licenseCounts"]
    assert counts == {"issued": 2, "assigned": 2, "revoked": 1, "transferred": 0, "notRevoked": 4, "all": 5}
