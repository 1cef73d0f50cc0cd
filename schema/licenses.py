"""Licenses in the API: the lifecycle mutations, `license`, `licenses`, `licenseCounts`, history.

A license's product and events are read through per-request loaders, so a page of 100 licenses costs
the same number of SQL statements as a page of 10.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, cast

import strawberry

from domain.actors import Actor as RecordedActor
from domain.licenses import (
    IssueItem,
    LicenseFilter,
    LicenseOrder,
    LicenseOrderField,
    LicenseState,
    TransferStatus,
)
from domain.licenses import License as DomainLicense
from domain.licenses import Transfer as DomainTransfer
from domain.products import Product as DomainProduct
from persistence.events import RecordedEvent
from persistence.pagination import page_nodes
from resolvers import licenses
from resolvers.feed import encode_feed_cursor
from resolvers.products import products_by_slug
from schema.actors import Actor, actor_for
from schema.context import Info, request_loader
from schema.enums import described_enum
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt
from schema.pagination import After, Connection, First, connection, selected_field_names, selects_total_count
from schema.products import PRICE_FIELDS, Product, page_products
from schema.ready_fields import NOT_READY, ReadyField
from schema.relay import Node

described_enum(
    LicenseState,
    name="LicenseState",
    description="ISSUED (billed, on no site), ASSIGNED (on a site), REVOKED or TRANSFERRED (both final).",
    values={
        LicenseState.ISSUED: "Held and billed, on no site.",
        LicenseState.ASSIGNED: "Held, billed and assigned to a site.",
        LicenseState.REVOKED: "Final: revoked; billing stopped after the revoke day.",
        LicenseState.TRANSFERRED: "Final: handed to another partner, who holds the same key from then on.",
    },
)
described_enum(
    LicenseOrderField,
    name="LicenseOrderField",
    description="The instant licenses are listed by.",
    values={
        LicenseOrderField.ISSUED_AT: "When the holding began (issued or received).",
        LicenseOrderField.ASSIGNED_AT: "When it was put on its current site.",
        LicenseOrderField.REVOKED_AT: "When it was revoked.",
    },
)
described_enum(
    TransferStatus,
    name="LicenseTransferStatus",
    description="PENDING, ACCEPTED or CANCELLED.",
    values={
        TransferStatus.PENDING: "Offered; the code works until it expires.",
        TransferStatus.ACCEPTED: "The receiver accepted the code and holds the license.",
        TransferStatus.CANCELLED: "The holder cancelled it; the code no longer works.",
    },
)


@strawberry.enum(description="Sort direction.")
class OrderDirection(Enum):
    ASC = strawberry.enum_value("asc", description="Oldest first.")
    DESC = strawberry.enum_value("desc", description="Newest first.")


@strawberry.type(description="One entry in a license's history: a transition, or a transfer offer.")
class LicenseEvent:
    cursor: str = strawberry.field(
        description="Where this event sits in the partner's feed: `licenseEvents(since:)` resumes after it."
    )
    key: str = strawberry.field(description="The license key the event is about.")
    seq: int = strawberry.field(description="The partner's event sequence number (orders its history).")
    action: str = strawberry.field(
        description="issue, receive, assign, move, unassign, revoke, transfer, "
        "transfer_started or transfer_cancelled."
    )
    from_state: LicenseState | None = strawberry.field(description="State before (none when created).")
    to_state: LicenseState | None = strawberry.field(description="State after.")
    at: datetime = strawberry.field(description="When it happened.")
    site: str | None = strawberry.field(description="The site the license was on afterwards.")
    previous_site: str | None = strawberry.field(description="The site before, when it changed.")
    request_id: str | None = strawberry.field(description="The request that made the change.")
    recorded_actor: strawberry.Private[RecordedActor]

    @strawberry.field(description="Who made the change: an API token or a system job.")
    def actor(self, info: Info) -> Actor:
        return actor_for(info, self.recorded_actor)

    @strawberry.field(description="The API token that made the change (as `actor.tokenId`).")
    def actor_token_id(self, info: Info) -> str | None:
        return actor_for(info, self.recorded_actor).token_id

    # The recorded event's id (unique across partners): what subscribers share (schema.fanout).
    event_id: strawberry.Private[int | None] = None

    @classmethod
    def from_recorded(cls, event: RecordedEvent) -> LicenseEvent:
        return cls(
            cursor=encode_feed_cursor(event.seq),
            key=event.subject,
            seq=event.seq,
            action=event.action,
            from_state=None if event.from_state is None else LicenseState(event.from_state),
            to_state=None if event.to_state is None else LicenseState(event.to_state),
            at=event.at,
            site=event.payload.get("site"),
            previous_site=event.payload.get("previous_site"),
            request_id=event.request_id,
            recorded_actor=event.actor,
            event_id=event.id,
        )

    def fanout_key(self) -> object:
        """Subscribers share the execution of one recorded event (schema.fanout); None: not shared."""
        return self.event_id


@strawberry.type(description="A transfer of a license waiting for the receiver to accept its code.")
class PendingTransfer:
    created_at: datetime = strawberry.field(description="When the holder started it.")
    expires_at: datetime = strawberry.field(description="The code stops working at this instant.")


@strawberry.type(description="What a transfer code offers, shown to the receiver before accepting.")
class TransferPreview:
    product_slug: strawberry.Private[str]
    expires_at: datetime = strawberry.field(description="The code stops working at this instant.")

    @strawberry.field(description="The product of the license offered.")
    async def product(self, info: Info) -> Product:
        found = await request_loader(info, "products", products_by_slug).load(self.product_slug)
        return Product.from_domain(cast(DomainProduct, found))


@strawberry.type(description="A license: one partner's holding of a key, billed per day while held.")
class License(Node):
    id: strawberry.ID = strawberry.field(
        description="Id of this holding of the key; also its global id (`node(id:)`)."
    )
    key: str = strawberry.field(description="The license key, `<product-slug>_<random>`.")
    state: LicenseState = strawberry.field(description="Where the license is in its lifecycle.")
    site: str | None = strawberry.field(description="The normalized URL of the site it is assigned to.")
    issued_at: datetime = strawberry.field(
        description="When this holding began: issued, or received by transfer. Billing starts here."
    )
    assigned_at: datetime | None = strawberry.field(description="When it was put on its current site.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked.")
    transferred_at: datetime | None = strawberry.field(description="When it was transferred away.")
    held_from: datetime = strawberry.field(description="Start of the billed holding.")
    held_until: datetime | None = strawberry.field(description="End of the billed holding, if it ended.")
    partner_id: strawberry.Private[str]
    product_slug: strawberry.Private[str]
    # Its product as read for the whole page it is listed on (LicenseQuery.licenses); None elsewhere.
    listed_product: strawberry.Private[Product | None] = None

    @strawberry.field(description="The licensed product.", graphql_type=Product)
    def product(self, info: Info) -> Product | Awaitable[Product]:
        if self.listed_product is not None:
            return self.listed_product
        return self._product(info)

    async def _product(self, info: Info) -> Product:
        found = await request_loader(info, "products", products_by_slug).load(self.product_slug)
        return Product.from_domain(cast(DomainProduct, found))

    @strawberry.field(description="The transfer offered and not yet accepted, if there is one.")
    async def pending_transfer(self, info: Info) -> PendingTransfer | None:
        transfer = await request_loader(info, "pending_transfers", licenses.pending_transfers).load(
            str(self.id)
        )
        return (
            None
            if transfer is None
            else PendingTransfer(created_at=transfer.created_at, expires_at=transfer.expires_at)
        )

    @strawberry.field(description="This partner's history of the key, oldest first.")
    async def events(self, info: Info) -> list[LicenseEvent]:
        recorded = await request_loader(info, "license_events", licenses.license_histories).load(
            (self.partner_id, self.key)
        )
        return [LicenseEvent.from_recorded(event) for event in recorded]

    @classmethod
    def from_domain(cls, holding: DomainLicense, products: Mapping[str, Product] | None = None) -> License:
        return cls(
            id=strawberry.ID(holding.id),
            key=holding.key,
            state=_STATES[holding.state],
            site=holding.site,
            issued_at=cast(datetime, holding.issued_at),
            assigned_at=holding.assigned_at,
            revoked_at=holding.revoked_at,
            transferred_at=holding.transferred_at,
            held_from=cast(datetime, holding.held_from),
            held_until=holding.held_until,
            partner_id=holding.partner_id,
            product_slug=holding.product_slug,
            listed_product=None if products is None else products.get(holding.product_slug),
        )


# A stored state (text, or already a member) to its member: a dictionary lookup, where calling the
# enum costs 1 µs (100 times a page).
_STATES: dict[str | None, LicenseState] = {state.value: state for state in LicenseState}

# A license listed with its page's products answers `product` without a resolver call.
LICENSE_READY_FIELDS = [
    ReadyField("License", "product", lambda holding: holding.listed_product or NOT_READY),
]


@strawberry.type(description="An offer to hand a license to another partner, redeemed with a one-time code.")
class LicenseTransfer:
    id: strawberry.ID = strawberry.field(description="Transfer id.")
    status: TransferStatus = strawberry.field(description="Whether it is pending, accepted or cancelled.")
    created_at: datetime = strawberry.field(description="When the transfer was started.")
    expires_at: datetime = strawberry.field(description="The code stops working at this instant (7 days).")
    accepted_at: datetime | None = strawberry.field(description="When the receiver accepted it.")
    license: License = strawberry.field(description="The sender's license being transferred.")

    @classmethod
    def from_domain(cls, transfer: DomainTransfer, holding: DomainLicense) -> LicenseTransfer:
        return cls(
            id=strawberry.ID(transfer.id),
            status=TransferStatus(transfer.status),
            created_at=transfer.created_at,
            expires_at=transfer.expires_at,
            accepted_at=transfer.accepted_at,
            license=License.from_domain(holding),
        )


@strawberry.type(description="How many of the partner's licenses are in each state.")
class LicenseCounts:
    issued: int = strawberry.field(description="Issued and on no site.")
    assigned: int = strawberry.field(description="Assigned to a site.")
    revoked: int = strawberry.field(description="Revoked.")
    transferred: int = strawberry.field(description="Transferred to another partner.")
    not_revoked: int = strawberry.field(description="All except revoked.")
    all: int = strawberry.field(description="Every license the partner holds or held.")


# -- inputs -------------------------------------------------------------------------------------


@strawberry.input(description="Which licenses to list; every given condition must hold.")
class LicenseFilterInput:
    states: list[LicenseState] | None = strawberry.field(default=None, description="Any of these states.")
    product_slugs: list[str] | None = strawberry.field(default=None, description="Any of these products.")
    search: str | None = strawberry.field(
        default=None, description="Text found in the key, the product name or the site (any case)."
    )


@strawberry.input(description="How to order licenses.")
class LicenseOrderInput:
    field: LicenseOrderField = strawberry.field(
        default=LicenseOrderField.ISSUED_AT,
        description="The instant to order by; licenses without it go last.",
    )
    direction: OrderDirection = strawberry.field(default=OrderDirection.DESC, description="ASC or DESC.")


@strawberry.input(description="How many licenses of one product to issue.")
class IssueLicensesItemInput:
    product_slug: str = strawberry.field(description="The product to license.")
    quantity: int = strawberry.field(description="How many licenses, 1 to 100.")


@strawberry.input(description="Licenses to issue, all or none.")
class IssueLicensesInput:
    items: list[IssueLicensesItemInput] = strawberry.field(description="Each product once, with a quantity.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.input(description="A license and the site to put it on.")
class AssignLicenseInput:
    key: str = strawberry.field(description="The license key.")
    site: str = strawberry.field(description="The site URL, e.g. https://client.example.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.input(description="The license to act on.")
class LicenseKeyInput:
    key: str = strawberry.field(description="The license key.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.input(description="A transfer code received from the license's holder.")
class AcceptLicenseTransferInput:
    code: str = strawberry.field(description="The one-time code the holder shared.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


# -- payloads -----------------------------------------------------------------------------------


@strawberry.type(description="The result of issueLicenses.")
class IssueLicensesPayload:
    licenses: list[License] = strawberry.field(description="The new licenses (empty when refused).")
    errors: list[UserError] = strawberry.field(description="Why nothing was issued, if it was not.")


@strawberry.type(description="The result of a mutation that changes one license.")
class LicensePayload:
    license: License | None = strawberry.field(description="The license after the change.")
    errors: list[UserError] = strawberry.field(description="Why nothing changed, if it did not.")


@strawberry.type(description="The result of startLicenseTransfer.")
class StartLicenseTransferPayload:
    transfer: LicenseTransfer | None = strawberry.field(description="The pending transfer.")
    code: str | None = strawberry.field(
        description="The one-time code to give the receiver. Shown once: a replay returns null."
    )
    errors: list[UserError] = strawberry.field(description="Why no transfer was started, if it was not.")


@strawberry.type(description="The result of cancelLicenseTransfer.")
class CancelLicenseTransferPayload:
    transfer: LicenseTransfer | None = strawberry.field(description="The cancelled transfer.")
    errors: list[UserError] = strawberry.field(description="Why nothing was cancelled, if it was not.")


# -- root fields --------------------------------------------------------------------------------


@strawberry.type
class LicenseQuery:
    @strawberry.field(description="One of the partner's licenses by key.")
    async def license(
        self, info: Info, key: Annotated[str, strawberry.argument(description="The license key.")]
    ) -> License:
        return License.from_domain(await licenses.get_license(info.context, key=key))

    @strawberry.field(description="The partner's licenses, filtered and ordered, a page at a time.")
    async def licenses(
        self,
        info: Info,
        filter: Annotated[
            LicenseFilterInput | None,
            strawberry.argument(description="States, products and a search; all licenses if omitted."),
        ] = None,
        order_by: Annotated[
            LicenseOrderInput | None,
            strawberry.argument(description="Sort field and direction (default: newest issued first)."),
        ] = None,
        first: First = None,
        after: After = None,
    ) -> Connection[License]:
        wanted = filter or LicenseFilterInput()
        order = order_by or LicenseOrderInput()
        page = await licenses.list_licenses(
            info.context,
            where=LicenseFilter(
                states=tuple(wanted.states or ()),
                product_slugs=tuple(wanted.product_slugs or ()),
                search=wanted.search,
            ),
            order=LicenseOrder(field=order.field, descending=order.direction is OrderDirection.DESC),
            first=first,
            after=after,
            count_total=selects_total_count(info),
        )
        # The page's products (and their prices, when asked) in one read for the whole page.
        selected = selected_field_names(info)
        slugs = {holding.product_slug for holding in page_nodes(page)}
        priced = bool(selected & PRICE_FIELDS)
        products = await page_products(info, slugs, priced=priced) if "product" in selected else None
        return connection(page, lambda holding: License.from_domain(holding, products))

    @strawberry.field(description="How many of the partner's licenses are in each state.")
    async def license_counts(self, info: Info) -> LicenseCounts:
        counts = await licenses.license_counts(info.context)
        return LicenseCounts(**counts.__dict__)

    @strawberry.field(
        description="For the receiver: what a transfer code offers (product, expiry) before accepting it; "
        "fails like acceptLicenseTransfer would for a bad, used, expired or own code."
    )
    async def transfer_preview(
        self,
        info: Info,
        code: Annotated[str, strawberry.argument(description="The transfer code the holder sent you.")],
    ) -> TransferPreview:
        preview = await licenses.transfer_preview(info.context, code=code)
        return TransferPreview(product_slug=preview.product_slug, expires_at=preview.expires_at)


@strawberry.type
class LicenseMutation:
    @strawberry.mutation(description="Issue licenses; all or none. Needs good standing.")
    async def issue_licenses(
        self, info: Info, input: Annotated[IssueLicensesInput, MUTATION_INPUT]
    ) -> IssueLicensesPayload:
        items = [IssueItem(item.product_slug, item.quantity) for item in input.items]
        issued, errors = await attempt(
            licenses.issue_licenses(info.context, items=items, idempotency_key=input.idempotency_key)
        )
        return IssueLicensesPayload(licenses=[License.from_domain(h) for h in issued or []], errors=errors)

    @strawberry.mutation(description="Put a license on a site, or move it there. Needs good standing.")
    async def assign_license(
        self, info: Info, input: Annotated[AssignLicenseInput, MUTATION_INPUT]
    ) -> LicensePayload:
        return await _license_payload(
            licenses.assign_license(
                info.context, key=input.key, site=input.site, idempotency_key=input.idempotency_key
            )
        )

    @strawberry.mutation(description="Take a license off its site; it stays issued and billed.")
    async def unassign_license(
        self, info: Info, input: Annotated[LicenseKeyInput, MUTATION_INPUT]
    ) -> LicensePayload:
        return await _license_payload(
            licenses.unassign_license(info.context, key=input.key, idempotency_key=input.idempotency_key)
        )

    @strawberry.mutation(description="Revoke a license for good; billing stops (the revoke day is billed).")
    async def revoke_license(
        self, info: Info, input: Annotated[LicenseKeyInput, MUTATION_INPUT]
    ) -> LicensePayload:
        return await _license_payload(
            licenses.revoke_license(info.context, key=input.key, idempotency_key=input.idempotency_key)
        )

    @strawberry.mutation(description="Offer a license to another partner: returns a code valid 7 days.")
    async def start_license_transfer(
        self, info: Info, input: Annotated[LicenseKeyInput, MUTATION_INPUT]
    ) -> StartLicenseTransferPayload:
        started, errors = await attempt(
            licenses.start_license_transfer(
                info.context, key=input.key, idempotency_key=input.idempotency_key
            )
        )
        if started is None:
            return StartLicenseTransferPayload(transfer=None, code=None, errors=errors)
        return StartLicenseTransferPayload(
            transfer=LicenseTransfer.from_domain(started.transfer, started.license),
            code=started.code,
            errors=errors,
        )

    @strawberry.mutation(description="Receive a license with the holder's code. Needs good standing.")
    async def accept_license_transfer(
        self, info: Info, input: Annotated[AcceptLicenseTransferInput, MUTATION_INPUT]
    ) -> LicensePayload:
        return await _license_payload(
            licenses.accept_license_transfer(
                info.context, code=input.code, idempotency_key=input.idempotency_key
            )
        )

    @strawberry.mutation(description="Withdraw a license's pending transfer; its code stops working.")
    async def cancel_license_transfer(
        self, info: Info, input: Annotated[LicenseKeyInput, MUTATION_INPUT]
    ) -> CancelLicenseTransferPayload:
        cancelled, errors = await attempt(
            licenses.cancel_license_transfer(
                info.context, key=input.key, idempotency_key=input.idempotency_key
            )
        )
        transfer = (
            None if cancelled is None else LicenseTransfer.from_domain(cancelled.transfer, cancelled.license)
        )
        return CancelLicenseTransferPayload(transfer=transfer, errors=errors)


async def _license_payload(call: Any) -> LicensePayload:
    holding, errors = await attempt(call)
    return LicensePayload(license=None if holding is None else License.from_domain(holding), errors=errors)
