"""Partners in the API: `viewer`, and staff's `createPartner`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from domain.partners import Partner as DomainPartner
from domain.standing import Standing as DomainStanding
from domain.standing import StandingState
from resolvers import licenses, partners
from schema.context import Info
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt
from schema.invoices import Invoice, StatusFilter, invoice_connection
from schema.licenses import LicenseCounts
from schema.pagination import After, Connection, First, connection
from schema.payments import PaymentMethod, payment_methods_of
from schema.relay import Node
from schema.standing import Standing, standing_of


@strawberry.type(description="A card on file as the back-office shows it: no expiry, no provider ids.")
class CardSummary:
    brand: str = strawberry.field(description="Card brand, e.g. visa.")
    last4: str = strawberry.field(description="Last four digits.")
    primary: bool = strawberry.field(description="Whether it is charged first.")


@strawberry.type(description="An agency in the partner program: it issues licenses and is billed per day.")
class Partner(Node):
    id: strawberry.ID = strawberry.field(description="Stable partner id; also its global id (`node(id:)`).")
    name: str = strawberry.field(description="The agency's name.")
    billing_zone: str = strawberry.field(
        description="IANA time zone whose calendar days and months the partner is billed in."
    )
    currency: str = strawberry.field(description="ISO 4217 currency code (lower case) of its invoices.")
    created_at: datetime = strawberry.field(description="When the partner was enrolled.")
    # Its standing when it was read with the partner (`viewer`): answered without another read.
    read_standing: strawberry.Private[DomainStanding | None] = None

    @strawberry.field(description="Whether the partner may issue and assign licenses now, and why.")
    async def standing(self, info: Info) -> Standing:
        if self.read_standing is not None:
            return Standing.from_domain(self.read_standing, str(self.id))
        return await standing_of(info, str(self.id))

    @strawberry.field(description="Licenses in each state (staff: any partner's; a partner: its own).")
    async def license_counts(self, info: Info) -> LicenseCounts:
        counts = await licenses.license_counts(info.context, str(self.id))
        return LicenseCounts(**counts.__dict__)

    @strawberry.field(description="Its invoices, newest first (staff: any partner's; a partner: its own).")
    async def invoices(
        self,
        info: Info,
        status: StatusFilter = None,
        first: First = None,
        after: After = None,
    ) -> Connection[Invoice]:
        return await invoice_connection(info, status, first, after, partner_id=str(self.id))

    @strawberry.field(description="The cards on file as support sees them: brand and last 4 digits only.")
    async def cards(self, info: Info) -> list[CardSummary]:
        cards = await partners.partner_cards(info.context, partner_id=str(self.id))
        return [CardSummary(brand=card.brand, last4=card.last4, primary=card.is_primary) for card in cards]

    @strawberry.field(description="The cards on file, in the order they were added; one is primary.")
    async def payment_methods(
        self, info: Info, first: First = None, after: After = None
    ) -> Connection[PaymentMethod]:
        return await payment_methods_of(info, first, after)

    @classmethod
    def from_domain(cls, partner: DomainPartner, standing: DomainStanding | None = None) -> Partner:
        return cls(
            id=strawberry.ID(partner.id),
            name=partner.name,
            billing_zone=partner.billing_zone,
            currency=partner.currency,
            created_at=partner.created_at,
            read_standing=standing,
        )


@strawberry.input(description="A new partner.")
class CreatePartnerInput:
    name: str = strawberry.field(description="The agency's name.")
    billing_zone: str = strawberry.field(default="UTC", description="IANA time zone name for billing days.")
    currency: str = strawberry.field(default="usd", description="ISO 4217 code the partner is billed in.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.type(description="The result of createPartner.")
class CreatePartnerPayload:
    partner: Partner | None = strawberry.field(description="The new partner, unless there were errors.")
    errors: list[UserError] = strawberry.field(description="Why nothing was created, if it was not.")


@strawberry.input(description="Change the currency a partner is billed in (before it holds any license).")
class SetPartnerCurrencyInput:
    partner_id: strawberry.ID = strawberry.field(description="The partner.")
    currency: str = strawberry.field(description="ISO 4217 code: usd, eur, gbp, cad, aud or jpy.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.type(description="The result of setPartnerCurrency.")
class SetPartnerCurrencyPayload:
    partner: Partner | None = strawberry.field(description="The partner, unless there were errors.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (CURRENCY_LOCKED once it has held a license)."
    )


@strawberry.type
class PartnerQuery:
    @strawberry.field(description="The partner the token belongs to.")
    async def viewer(self, info: Info) -> Partner:
        return Partner.from_domain(*await partners.viewer(info.context))

    @strawberry.field(
        description="Staff: partners by name; `search` matches name or id (any case), `standing` filters."
    )
    async def partners(
        self,
        info: Info,
        search: Annotated[
            str | None, strawberry.argument(description="Part of the name or id, in any case.")
        ] = None,
        standing: Annotated[
            StandingState | None, strawberry.argument(description="Only partners in this standing.")
        ] = None,
        first: First = None,
        after: After = None,
    ) -> Connection[Partner]:
        page = await partners.list_partners(
            info.context, search=search, standing=standing, first=first, after=after
        )
        return connection(page, Partner.from_domain)

    @strawberry.field(description="A partner by id: staff read any, a partner token only its own.")
    async def partner(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The partner's `id`.")]
    ) -> Partner:
        return Partner.from_domain(await partners.partner(info.context, partner_id=str(id)))


@strawberry.type
class PartnerMutation:
    @strawberry.mutation(description="Staff: enrol a partner. It starts with no payment method.")
    async def create_partner(
        self, info: Info, input: Annotated[CreatePartnerInput, MUTATION_INPUT]
    ) -> CreatePartnerPayload:
        partner, errors = await attempt(
            partners.create_partner(
                info.context,
                name=input.name,
                billing_zone=input.billing_zone,
                currency=input.currency,
                idempotency_key=input.idempotency_key,
            )
        )
        return CreatePartnerPayload(
            partner=None if partner is None else Partner.from_domain(partner), errors=errors
        )

    @strawberry.mutation(
        description="Staff: change a partner's billing currency; refused (CURRENCY_LOCKED) once the partner "
        "has held a license."
    )
    async def set_partner_currency(
        self, info: Info, input: Annotated[SetPartnerCurrencyInput, MUTATION_INPUT]
    ) -> SetPartnerCurrencyPayload:
        partner, errors = await attempt(
            partners.set_partner_currency(
                info.context,
                partner_id=str(input.partner_id),
                currency=input.currency,
                idempotency_key=input.idempotency_key,
            )
        )
        return SetPartnerCurrencyPayload(
            partner=None if partner is None else Partner.from_domain(partner), errors=errors
        )
