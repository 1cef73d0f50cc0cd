"""Websockets on /graphql: authenticated by connection_params, refused with the protocol's code."""

from __future__ import annotations

import pytest
import websockets

from tests.integration.conftest import GraphQLSocket, PartnerAccess


async def test_a_partner_token_in_connection_params_is_acknowledged(
    live_server: str, partner: PartnerAccess
) -> None:
    async with GraphQLSocket.open(live_server, {"authorization": f"Bearer {partner.token}"}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", "{ viewer { id } }")
        answer = await socket.receive()
        assert answer == {"id": "1", "type": "next", "payload": {"data": {"viewer": {"id": partner.id}}}}


@pytest.mark.parametrize("params", [{}, {"authorization": "Bearer plk_wrong"}, {"authorization": 42}])
async def test_a_missing_or_bad_token_closes_the_connection_with_4403(live_server: str, params: dict) -> None:
    async with GraphQLSocket.open(live_server, params) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.receive()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403
