"""Caught-up subscriptions are delivered by their partner's live tail: one task per partner, not one
per subscription, with every guarantee of a subscription kept (order, replay, complete, revocation)."""

from __future__ import annotations

import asyncio
import gc

from domain.clock import SettableClock
from schema.fanout import FanoutExecutor
from tests.integration.conftest import Api, GraphQLSocket, LiveServer, enrol_in_good_standing
from tests.integration.license_operations import issue
from tests.integration.test_subscription_fanout import sockets
from tests.integration.test_subscriptions import (
    LICENSE_EVENTS,
    auth,
    connected,
    event_cursor,
    items,
    subscribed,
)

SUBSCRIPTIONS_PER_SOCKET = 10


async def test_thirty_idle_subscriptions_of_one_partner_wait_without_a_task_each_and_all_get_each_event(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    partner = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Busy Agency")
    followers = served.followers()
    tasks_before = len(asyncio.all_tasks())
    async with sockets(served, partner.token, 3) as opened:
        await _all_live(served, opened, followers)
        # A socket costs its own few tasks (reader, keep-alive); its subscriptions cost none each.
        assert len(asyncio.all_tasks()) - tasks_before < 3 * SUBSCRIPTIONS_PER_SOCKET

        keys = [key for _ in range(2) for key in await issue(live_api, partner.token)]
        for socket in opened:
            received: dict[str, list[str]] = {str(number): [] for number in range(SUBSCRIPTIONS_PER_SOCKET)}
            for _ in range(2 * SUBSCRIPTIONS_PER_SOCKET):
                message = await socket.receive()
                assert message["type"] == "next", message
                received[message["id"]].append(message["payload"]["data"]["licenseEvents"]["key"])
            assert all(got == keys for got in received.values()), received


async def test_a_subscriber_resuming_from_an_older_cursor_while_others_are_live_gets_each_event_once_in_order(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    partner = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Resume Agency")
    since = await event_cursor(live_api, partner.token)
    followers = served.followers()
    async with (
        GraphQLSocket.open(served.address, auth(partner.token)) as live,
        GraphQLSocket.open(served.address, auth(partner.token)) as late,
    ):
        await connected(live)
        await live.subscribe("live", LICENSE_EVENTS)
        await subscribed(served, followers + 1)
        missed = await issue(live_api, partner.token)
        missed += await issue(live_api, partner.token)

        # The late one replays from its cursor, then joins the tail already delivering to the other.
        await connected(late)
        await late.subscribe("late", LICENSE_EVENTS, {"since": since})
        replayed = await items(late, "late", 2)
        await subscribed(served, followers + 2)
        after = await issue(live_api, partner.token)

        assert [item["key"] for item in await items(live, "live", 3)] == missed + after
        assert [item["key"] for item in replayed] == missed
        assert [item["key"] for item in await items(late, "late", 1)] == after
        with_no_more = await asyncio.gather(
            *(asyncio.wait_for(socket.receive(), 0.5) for socket in (live, late)), return_exceptions=True
        )
    assert all(isinstance(outcome, TimeoutError) for outcome in with_no_more), with_no_more


async def test_completing_a_live_subscription_stops_its_events_and_its_id_can_be_used_again(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    partner = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Done Agency")
    followers = served.followers()
    async with GraphQLSocket.open(served.address, auth(partner.token)) as socket:
        await connected(socket)
        await socket.subscribe("1", LICENSE_EVENTS)
        await subscribed(served, followers + 1)
        await socket.send({"id": "1", "type": "complete"})
        async with asyncio.timeout(10):
            while served.followers() > followers:
                await asyncio.sleep(0.01)

        # The same id again is a new subscription, not a duplicate (that would close the socket, 4409).
        await socket.subscribe("1", LICENSE_EVENTS)
        await subscribed(served, followers + 1)
        [key] = await issue(live_api, partner.token)
        [item] = await items(socket, "1", 1)
        assert item["key"] == key
        # Only the one subscription of that id received it.
        try:
            extra = await asyncio.wait_for(socket.receive(), 0.5)
        except TimeoutError:
            extra = None
    assert extra is None


async def test_thirty_idle_subscriptions_asking_the_same_leave_no_executor_for_the_garbage_collector(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    """Each subscription's pipeline builds its own executor; once the tail executes its events with the
    one shared executor, the others are freed at once, not left for a full collection (README,
    Subscriptions: memory per idle subscriber)."""
    partner = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Thrifty Agency")
    followers = served.followers()
    gc.collect()
    gc.disable()  # what is freed now is freed by reference counting alone
    try:
        # Held here, so that an earlier test's executor freed meanwhile does not change the counts.
        earlier = _executors()
        executors_before = len(earlier)
        async with sockets(served, partner.token, 3) as opened:
            await _all_live(served, opened, followers)
            kept = len(_executors()) - executors_before
            gc.collect()
            # Nothing was left for the collector: 29 dropped executors used to wait for it.
            assert len(_executors()) - executors_before == kept
            assert kept < SUBSCRIPTIONS_PER_SOCKET

            [key] = await issue(live_api, partner.token)
            for socket in opened:
                for _ in range(SUBSCRIPTIONS_PER_SOCKET):
                    message = await socket.receive()
                    assert message["payload"]["data"]["licenseEvents"]["key"] == key
    finally:
        gc.enable()


async def _all_live(served: LiveServer, opened: list[GraphQLSocket], followers: int) -> None:
    """SUBSCRIPTIONS_PER_SOCKET license-event subscriptions on each socket, all handed to the tail."""
    for socket in opened:
        for number in range(SUBSCRIPTIONS_PER_SOCKET):
            await socket.subscribe(str(number), LICENSE_EVENTS)
    await subscribed(served, followers + len(opened) * SUBSCRIPTIONS_PER_SOCKET)
    await asyncio.sleep(0.2)  # let the subscriptions' pipelines end after their hand-over


def _executors() -> list[FanoutExecutor]:
    """Subscription executors in memory, reachable or not (gc.get_objects lists uncollected cycles)."""
    return [thing for thing in gc.get_objects() if isinstance(thing, FanoutExecutor)]
