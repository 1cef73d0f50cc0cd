"""Subscribers that ask the same share the work: one execution per event, one serialized message.

The count comes from the worker's own /metrics (`licensing_subscription_executions_total`), read
before and after the events; the messages are compared as the raw text each socket received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from domain.clock import SettableClock
from tests.integration.conftest import (
    CREATE_TOKEN,
    Api,
    GraphQLSocket,
    LiveServer,
    PartnerAccess,
    enrol_in_good_standing,
)
from tests.integration.license_operations import issue
from tests.integration.test_subscriptions import LICENSE_EVENTS, auth, connected, event_cursor, subscribed

EXECUTIONS = "licensing_subscription_executions_total"


async def executions(api: Api) -> float:
    """How many subscription selections the worker has executed for events so far."""
    text = (await api.client.get("/metrics")).text
    [line] = [line for line in text.splitlines() if line.startswith(EXECUTIONS + " ")]
    return float(line.split()[1])


async def raw_next(socket: GraphQLSocket, timeout: float = 10) -> str:
    """The next `next` message exactly as it came over the wire."""
    while True:
        text = await asyncio.wait_for(socket.connection.recv(), timeout)
        assert isinstance(text, str)
        message = json.loads(text)
        if message["type"] in {"ping", "pong"}:
            continue
        assert message["type"] == "next", message
        return text


def without_id(text: str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(text)
    message.pop("id")
    return message


@contextlib.asynccontextmanager
async def sockets(served: LiveServer, token: str, count: int) -> AsyncIterator[list[GraphQLSocket]]:
    async with contextlib.AsyncExitStack() as stack:
        opened = []
        for _ in range(count):
            socket = await stack.enter_async_context(GraphQLSocket.open(served.address, auth(token)))
            await connected(socket)
            opened.append(socket)
        yield opened


async def test_subscribers_of_one_document_get_one_message_made_once_per_event_and_only_their_partners(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    mine = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Mine Agency")
    theirs = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Their Agency")
    [my_old_key] = await issue(live_api, mine.token)
    my_since, their_since = (
        await event_cursor(live_api, mine.token),
        await event_cursor(live_api, theirs.token),
    )
    followers = served.followers()
    async with (
        sockets(served, mine.token, 5) as my_sockets,
        sockets(served, theirs.token, 3) as their_sockets,
    ):
        for number, socket in enumerate(my_sockets):
            # Different ids and different root arguments (where the stream starts, which keys): the
            # selection each event is mapped through is the same, so it runs once for all of them.
            variables: dict[str, Any] = {"since": my_since}
            if number == 1:
                variables = {}
            await socket.subscribe(f"mine-{number}", LICENSE_EVENTS, variables)
        for number, socket in enumerate(their_sockets):
            await socket.subscribe(f"theirs-{number}", LICENSE_EVENTS, {"since": their_since})
        await subscribed(served, followers + 8)
        before = await executions(live_api)

        [their_key] = await issue(live_api, theirs.token)
        [my_key] = await issue(live_api, mine.token)
        my_messages = [await raw_next(socket) for socket in my_sockets]
        their_messages = [await raw_next(socket) for socket in their_sockets]
        after = await executions(live_api)

    # One execution per event: one for my partner's, one for theirs, however many subscribers.
    assert after - before == 2
    # Every subscriber of a partner got the very same serialized message, under its own id.
    assert [json.loads(text)["id"] for text in my_messages] == [f"mine-{n}" for n in range(5)]
    assert len({text.split(",", 1)[1] for text in my_messages}) == 1
    assert len({text.split(",", 1)[1] for text in their_messages}) == 1
    # And only its own partner's event: mine committed after theirs, so theirs would have come first.
    [my_event] = {json.dumps(without_id(text)) for text in my_messages}
    [their_event] = {json.dumps(without_id(text)) for text in their_messages}
    assert json.loads(my_event)["payload"]["data"]["licenseEvents"]["key"] == my_key != my_old_key
    assert json.loads(their_event)["payload"]["data"]["licenseEvents"]["key"] == their_key
    assert my_event != their_event


async def test_tokens_of_different_roles_do_not_share_an_execution(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    admin = await enrol_in_good_standing(live_api, staff_token, served.database, clock)
    minted = await live_api.data(
        CREATE_TOKEN, {"input": {"partnerId": admin.id, "role": "READ_ONLY"}}, staff_token
    )
    reader = PartnerAccess(admin.id, minted["createApiToken"]["token"]["secret"])
    since = await event_cursor(live_api, admin.token)
    followers = served.followers()
    async with sockets(served, admin.token, 2) as admins, sockets(served, reader.token, 2) as readers:
        for number, socket in enumerate([*admins, *readers]):
            await socket.subscribe(str(number), LICENSE_EVENTS, {"since": since})
        await subscribed(served, followers + 4)
        before = await executions(live_api)
        [key] = await issue(live_api, admin.token)
        received = [without_id(await raw_next(socket)) for socket in [*admins, *readers]]
        after = await executions(live_api)

    assert after - before == 2  # one per role: a field may answer by permission
    assert all(message["payload"]["data"]["licenseEvents"]["key"] == key for message in received)
