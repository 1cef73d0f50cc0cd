"""The event feed in the API: `eventCursor` and the subscriptions `licenseEvents`, `standingChanged`
and `invoiceUpdated` (graphql-transport-ws on /graphql, authenticated by connection_params).

Every item carries a `cursor` from the partner's one feed; pass any of them as `since` to any of the
subscriptions to get what was missed, then live events, with no gap and no duplicate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, TypeVar, cast

import strawberry

from domain.actors import Actor as RecordedActor
from domain.invoices import InvoiceStatus
from domain.standing import StandingState
from persistence.events import RecordedEvent
from resolvers import feed
from schema.actors import Actor, actor_for
from schema.context import Info
from schema.invoices import Invoice
from schema.licenses import LicenseEvent
from schema.standing import Standing

E = TypeVar("E", bound=Enum)
T = TypeVar("T")
R = TypeVar("R")

KEYS_DESCRIPTION = "Only these license keys (1 to 100). Omitted: every license of the partner."

SINCE_DESCRIPTION = (
    "A cursor from an earlier item or from `eventCursor`: first replay what committed after it. "
    "Omitted: only what commits from now on."
)


@strawberry.type(description="The partner's standing after a change (or, first, as it was on subscribing).")
class StandingChange:
    cursor: str = strawberry.field(description="Resume after this item with `since`.")
    action: str | None = strawberry.field(
        description="The standing event (payment_method_added, invoice_past_due, …); "
        "null on the first item sent without `since`: the standing when you subscribed."
    )
    from_state: StandingState | None = strawberry.field(description="Standing before the event.")
    to_state: StandingState | None = strawberry.field(description="Standing right after the event.")
    at: datetime | None = strawberry.field(description="When the event happened.")
    standing: Standing = strawberry.field(description="The standing, read when this item was delivered.")
    recorded_actor: strawberry.Private[RecordedActor | None]

    @strawberry.field(description="Who made the change (null on the first item sent without `since`).")
    def actor(self, info: Info) -> Actor | None:
        return None if self.recorded_actor is None else actor_for(info, self.recorded_actor)

    # The recorded event's id; None for the snapshot sent on subscribing (never shared).
    event_id: strawberry.Private[int | None] = None

    @classmethod
    def from_domain(cls, change: feed.StandingChange, partner_id: str) -> StandingChange:
        event = change.event
        return cls(
            event_id=None if event is None else event.id,
            cursor=feed.encode_feed_cursor(change.seq),
            action=None if event is None else event.action,
            from_state=None if event is None else _state(StandingState, event.from_state),
            to_state=None if event is None else _state(StandingState, event.to_state),
            at=None if event is None else event.at,
            standing=Standing.from_domain(change.standing, partner_id),
            recorded_actor=None if event is None else event.actor,
        )

    def fanout_key(self) -> object:
        """Subscribers share the execution of one standing event (schema.fanout)."""
        return self.event_id


@strawberry.type(description="Something happened to one of the partner's invoices.")
class InvoiceUpdate:
    cursor: str = strawberry.field(description="Resume after this item with `since`.")
    action: str = strawberry.field(
        description="What happened: finalize, a payment event (payment_attempt, record_payment, "
        "charge_failed, ...), or staff's void, mark_uncollectible, refunded or refund_failed."
    )
    from_status: InvoiceStatus | None = strawberry.field(description="Status before the event.")
    to_status: InvoiceStatus | None = strawberry.field(description="Status right after the event.")
    at: datetime = strawberry.field(description="When the event happened.")
    invoice: Invoice = strawberry.field(description="The invoice, read when this item was delivered.")
    recorded_actor: strawberry.Private[RecordedActor]

    @strawberry.field(
        description="Who made the change: a token, or a system job (month-close, dunning, stripe-webhook)."
    )
    def actor(self, info: Info) -> Actor:
        return actor_for(info, self.recorded_actor)

    event_id: strawberry.Private[int | None] = None

    @classmethod
    def from_domain(cls, update: feed.InvoiceUpdate) -> InvoiceUpdate:
        event = update.event
        return cls(
            event_id=event.id,
            cursor=feed.encode_feed_cursor(update.seq),
            action=event.action,
            from_status=_state(InvoiceStatus, event.from_state),
            to_status=_state(InvoiceStatus, event.to_state),
            at=event.at,
            invoice=Invoice.from_domain(update.invoice),
            recorded_actor=event.actor,
        )

    def fanout_key(self) -> object:
        """Subscribers share the execution of one invoice event (schema.fanout)."""
        return self.event_id


def _state(kind: type[E], value: str | None) -> E | None:
    """An event's recorded state as the enum, or None when absent or not one of its values."""
    try:
        return None if value is None else kind(value)
    except ValueError:
        return None


class _Converted:
    """The last items converted, by identity: followers of one partner get the same recorded event
    objects (resolvers.feed shares their reads), so each is converted once for all of them."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._made: OrderedDict[tuple[object, int], tuple[object, object]] = OrderedDict()

    def __call__(self, to_type: Callable[[T], R], item: T) -> R:
        key = (to_type, id(item))
        found = self._made.get(key)
        if found is not None and found[0] is item:
            return cast(R, found[1])
        made = to_type(item)
        # The item is kept with it, so its id cannot be reused by another while it is here.
        self._made[key] = (item, made)
        if len(self._made) > self._size:
            self._made.popitem(last=False)
        return made


_converted = _Converted()


def _license_event(event: RecordedEvent) -> LicenseEvent:
    return _converted(LicenseEvent.from_recorded, event)


@strawberry.type
class FeedQuery:
    @strawberry.field(
        description="The partner's feed position now. Read your state, then subscribe with "
        "`since: <this>`: nothing that commits in between is missed."
    )
    async def event_cursor(self, info: Info) -> str:
        return await feed.current_cursor(info.context)


@strawberry.type
class FeedSubscription:
    @strawberry.subscription(
        description="The partner's license events as they commit, in order, each with its cursor. "
        "`keys` narrows to those licenses (keys the partner does not hold never match)."
    )
    async def license_events(
        self,
        info: Info,
        keys: Annotated[list[str] | None, strawberry.argument(description=KEYS_DESCRIPTION)] = None,
        since: Annotated[str | None, strawberry.argument(description=SINCE_DESCRIPTION)] = None,
    ) -> AsyncGenerator[LicenseEvent, None]:
        return await feed.license_events(info.context, keys=keys, since=since, convert=_license_event)

    @strawberry.subscription(
        description="The partner's standing each time it changes. Without `since`, the current "
        "standing comes first (action null), so no separate query is needed."
    )
    async def standing_changed(
        self,
        info: Info,
        since: Annotated[str | None, strawberry.argument(description=SINCE_DESCRIPTION)] = None,
    ) -> AsyncGenerator[StandingChange, None]:
        return await feed.standing_changes(info.context, since=since, convert=StandingChange.from_domain)

    @strawberry.subscription(
        description="The partner's invoices each time one changes: finalized at month close, paid, "
        "charge failed, past due, voided."
    )
    async def invoice_updated(
        self,
        info: Info,
        since: Annotated[str | None, strawberry.argument(description=SINCE_DESCRIPTION)] = None,
    ) -> AsyncGenerator[InvoiceUpdate, None]:
        return await feed.invoice_updates(info.context, since=since, convert=InvoiceUpdate.from_domain)
