"""Websockets on /graphql: authenticated by connection_params, refused with the protocol's code."""

from __future__ import annotations

import pytest
import websockets

from app.devstripe import LocalStripe
from app.http import create_app
from domain.clock import SettableClock
from tests.integration.conftest import GraphQLSocket, PartnerAccess, serve, stripe_settings


async def test_a_partner_token_in_connection_params_is_acknowledged(
    live_server: str, partner: PartnerAccess
) -> None:
    async with GraphQLSocket.open(live_server, {"authorization": f"Bearer {partner.token}"}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", "{ viewer { id } }")
        answer = await socket.receive()
        assert answer == {"id": "1", "type": "next", "payload": {"data": {"viewer": {"id": partner.id}}}}


@pytest.mark.parametrize(
    "params", [{"authorization": ""}, {"authorization": "Bearer plk_wrong"}, {"authorization": 42}]
)
async def test_a_bad_token_closes_the_connection_with_4403(live_server: str, params: dict) -> None:
    """Without any token the socket is anonymous instead (see test_license_status.py)."""
    async with GraphQLSocket.open(live_server, params) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.receive()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def acknowledged(address: str, token: str, origin: str | None) -> bool:
    """Whether a socket from a page on `origin` (None: a non-browser client) is let in and acknowledged."""
    try:
        async with GraphQLSocket.open(address, {"authorization": f"Bearer {token}"}, origin) as socket:
            return (await socket.receive())["type"] == "connection_ack"
    except websockets.InvalidStatus as refused:
        assert refused.response.status_code == 403
        return False


async def test_with_no_origins_configured_only_the_servers_own_pages_and_non_browsers_connect(
    live_server: str, partner: PartnerAccess
) -> None:
    assert await acknowledged(live_server, partner.token, origin=None)
    assert await acknowledged(live_server, partner.token, origin=f"http://{live_server}")
    assert not await acknowledged(live_server, partner.token, origin="https://portal.example")
    assert not await acknowledged(live_server, partner.token, origin="null")


@pytest.mark.parametrize(
    ("origins", "portal", "elsewhere"), [(("https://portal.example",), True, False), (("*",), True, True)]
)
async def test_configured_origins_may_open_sockets_and_a_star_allows_every_origin(
    database_url: str,
    clock: SettableClock,
    catalog: None,
    localstripe: LocalStripe,
    partner: PartnerAccess,
    origins: tuple[str, ...],
    portal: bool,
    elsewhere: bool,
) -> None:
    settings = stripe_settings(database_url, localstripe).replace(websocket_origins=origins)
    async with serve(create_app(settings, clock=clock)) as server:
        assert await acknowledged(server.address, partner.token, origin="https://portal.example") is portal
        assert await acknowledged(server.address, partner.token, origin="https://other.example") is elsewhere
        assert await acknowledged(server.address, partner.token, origin=f"http://{server.address}")
        assert await acknowledged(server.address, partner.token, origin=None)
