"""Enrolling partners: bad input is refused with a typed error and nothing is written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from persistence.database import Database
from persistence.partners import partners
from persistence.unit_of_work import UnitOfWork
from tests.integration.conftest import CREATE_PARTNER, Api


async def partner_count(database: Database) -> int:
    async with UnitOfWork(database, read_only=True) as uow:
        return int((await uow.connection.execute(select(func.count()).select_from(partners))).scalar_one())


async def test_staff_creates_a_partner_in_a_zone_and_currency(api: Api, staff_token: str) -> None:
    body = await api.data(
        CREATE_PARTNER,
        {"input": {"name": "  Paris   Web  ", "billingZone": "Europe/Paris", "currency": "EUR"}},
        staff_token,
    )
    partner = body["createPartner"]["partner"]
    assert partner["name"] == "Paris Web"
    assert (partner["billingZone"], partner["currency"]) == ("Europe/Paris", "eur")
    assert partner["id"].startswith("ptr_")


async def test_unknown_time_zone_is_refused_and_nothing_is_written(
    api: Api, staff_token: str, database: Database
) -> None:
    before = await partner_count(database)
    body = await api.data(
        CREATE_PARTNER, {"input": {"name": "Mars", "billingZone": "Mars/Olympus"}}, staff_token
    )
    assert body["createPartner"] == {
        "partner": None,
        "errors": [
            {
                "code": "UNKNOWN_TIME_ZONE",
                "message": "'Mars/Olympus' is not an IANA time zone name.",
                "field": "billingZone",
            }
        ],
    }
    assert await partner_count(database) == before


@pytest.mark.parametrize("zone", ["localtime", "Factory", "posixrules", "posix/Europe/Paris", "right/UTC"])
async def test_system_zone_files_that_are_not_iana_zones_are_refused(
    api: Api, staff_token: str, database: Database, zone: str
) -> None:
    before = await partner_count(database)
    body = await api.data(CREATE_PARTNER, {"input": {"name": "Host Zone", "billingZone": zone}}, staff_token)
    assert body["createPartner"]["partner"] is None
    assert [(e["code"], e["field"]) for e in body["createPartner"]["errors"]] == [
        ("UNKNOWN_TIME_ZONE", "billingZone")
    ]
    assert await partner_count(database) == before


async def test_unsupported_currency_is_refused_and_nothing_is_written(
    api: Api, staff_token: str, database: Database
) -> None:
    before = await partner_count(database)
    body = await api.data(CREATE_PARTNER, {"input": {"name": "Coins", "currency": "doge"}}, staff_token)
    assert body["createPartner"]["errors"][0]["code"] == "UNSUPPORTED_CURRENCY"
    assert body["createPartner"]["errors"][0]["field"] == "currency"
    assert await partner_count(database) == before


async def test_blank_name_is_refused(api: Api, staff_token: str) -> None:
    body = await api.data(CREATE_PARTNER, {"input": {"name": "   "}}, staff_token)
    assert body["createPartner"]["errors"][0] == {
        "code": "INVALID_INPUT",
        "message": "A partner needs a name.",
        "field": "name",
    }
