"""The catalog and the support contact."""

from __future__ import annotations

from tests.integration.conftest import Api, PartnerAccess


async def test_products_list_daily_prices_in_micro_units(api: Api, partner: PartnerAccess) -> None:
    products = (
        await api.data("{ products { slug name dailyPriceMicros dailyPrice currency } }", token=partner.token)
    )["products"]
    backup = next(p for p in products if p["slug"] == "jetpack-backup")
    assert backup == {
        "slug": "jetpack-backup",
        "name": "VaultPress Backup",
        "dailyPriceMicros": 328767,
        "dailyPrice": "0.328767",
        "currency": "usd",
    }
    assert {p["slug"] for p in products} >= {"jetpack-scan", "jetpack-security", "jetpack-complete"}


async def test_products_need_a_token(api: Api) -> None:
    body = await api.call("{ products { slug } }")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_support_answers_without_a_token(api: Api) -> None:
    support = (await api.data("{ support { message email url } }"))["support"]
    assert support["email"] == "partners@example.com"
    assert "Agency & Pro manager" in support["message"]
