"""What the portal shows around a transfer: the sender sees it pending, the receiver previews the code."""

from __future__ import annotations

from datetime import timedelta

from domain.clock import SettableClock
from persistence.database import Database
from tests.integration.conftest import Api, enrol_in_good_standing
from tests.integration.license_operations import START_TRANSFER, issue, mutate

PENDING = "query($key: String!) { license(key: $key) { key pendingTransfer { createdAt expiresAt } } }"
PREVIEW = "query($code: String!) { transferPreview(code: $code) { expiresAt product { slug name } } }"


async def test_receiver_previews_the_product_and_expiry_and_the_sender_sees_it_pending(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    sender = await enrol_in_good_standing(api, staff_token, database, clock, name="Sender")
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, name="Receiver")
    (key,) = await issue(api, sender.token, "jetpack-scan")
    assert (await api.data(PENDING, {"key": key}, sender.token))["license"]["pendingTransfer"] is None

    started = await mutate(api, sender.token, START_TRANSFER, key=key)
    expires_at = started["transfer"]["expiresAt"]
    pending = (await api.data(PENDING, {"key": key}, sender.token))["license"]["pendingTransfer"]
    assert pending == {"createdAt": started["transfer"]["createdAt"], "expiresAt": expires_at}

    preview = await api.data(PREVIEW, {"code": started["code"]}, receiver.token)
    assert preview["transferPreview"] == {
        "expiresAt": expires_at,
        "product": {"slug": "jetpack-scan", "name": "Scan"},
    }

    own = await api.call(PREVIEW, {"code": started["code"]}, sender.token)
    assert own["errors"][0]["extensions"]["code"] == "OWN_TRANSFER"
    clock.advance_to(clock.now() + timedelta(days=8))
    expired = await api.call(PREVIEW, {"code": started["code"]}, receiver.token)
    assert expired["errors"][0]["extensions"]["code"] == "TRANSFER_CODE_EXPIRED"
    unknown = await api.call(PREVIEW, {"code": "not-a-code"}, receiver.token)
    assert unknown["errors"][0]["extensions"]["code"] == "TRANSFER_CODE_INVALID"
