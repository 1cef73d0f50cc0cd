"""Payments in the API: `viewer.paymentMethods`, the card mutations and `payInvoice`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from domain.payments import PaymentMethod as DomainPaymentMethod
from resolvers import invoice_payments, payments
from schema.context import Info
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt
from schema.invoices import Invoice
from schema.pagination import After, Connection, First, connection
from schema.relay import Node


@strawberry.type(description="A card on file, as Stripe knows it (the number itself never reaches us).")
class PaymentMethod(Node):
    id: strawberry.ID = strawberry.field(
        description="The Stripe PaymentMethod id (pm_…): the id every payment mutation takes; also its "
        "global id (`node(id:)`)."
    )
    brand: str = strawberry.field(description="Card brand, e.g. visa, mastercard, amex.")
    last4: str = strawberry.field(description="The last four digits of the card number.")
    exp_month: int = strawberry.field(description="Expiry month, 1 to 12.")
    exp_year: int = strawberry.field(description="Expiry year, four digits.")
    primary: bool = strawberry.field(
        description="Charged first at month close; also the Stripe customer's invoice default."
    )
    created_at: datetime = strawberry.field(description="When the card was added.")
    removed_at: datetime | None = strawberry.field(description="When it was removed (removePaymentMethod).")

    @classmethod
    def from_domain(cls, method: DomainPaymentMethod) -> PaymentMethod:
        return cls(
            id=strawberry.ID(method.stripe_id),
            brand=method.brand,
            last4=method.last4,
            exp_month=method.exp_month,
            exp_year=method.exp_year,
            primary=method.is_primary,
            created_at=method.created_at,
            removed_at=method.removed_at,
        )


async def payment_methods_of(
    info: Info, first: First = None, after: After = None
) -> Connection[PaymentMethod]:
    page = await payments.list_payment_methods(info.context, first=first, after=after)
    return connection(page, PaymentMethod.from_domain)


@strawberry.input(description="Start collecting a card.")
class CreatePaymentMethodSetupInput:
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.type(description="What the browser needs to collect a card with Stripe.js (confirmCardSetup).")
class CreatePaymentMethodSetupPayload:
    setup_intent_id: str | None = strawberry.field(description="The Stripe SetupIntent id.")
    client_secret: str | None = strawberry.field(
        description="Hand to Stripe.js; the browser confirms the card with it, then calls addPaymentMethod."
    )
    errors: list[UserError] = strawberry.field(description="Why no setup was started, if it was not.")


@strawberry.input(description="A card the browser collected, to keep on file.")
class AddPaymentMethodInput:
    payment_method_id: str = strawberry.field(description="The Stripe PaymentMethod id Stripe.js returned.")
    make_primary: bool = strawberry.field(
        default=False, description="Charge this card first from now on (the first card always is)."
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.input(description="One of the partner's cards.")
class PaymentMethodInput:
    payment_method_id: str = strawberry.field(description="The card's id (pm_…).")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.type(description="The result of a payment method mutation.")
class PaymentMethodPayload:
    payment_method: PaymentMethod | None = strawberry.field(
        description="The card as it is now, unless there were errors."
    )
    errors: list[UserError] = strawberry.field(description="Why nothing changed, if it did not.")


@strawberry.input(description="Pay an open or past-due invoice now.")
class PayInvoiceInput:
    invoice_id: strawberry.ID = strawberry.field(description="The invoice to pay.")
    payment_method_id: str | None = strawberry.field(
        default=None, description="The card to charge; default: the primary card, then the others."
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.type(description="The result of payInvoice.")
class PayInvoicePayload:
    invoice: Invoice | None = strawberry.field(description="The paid invoice, unless there were errors.")
    errors: list[UserError] = strawberry.field(
        description="Why the invoice was not paid. A declined card (PAYMENT_FAILED) leaves the invoice as "
        "it was; the attempt is kept on record."
    )


def _method_payload(method: DomainPaymentMethod | None, errors: list[UserError]) -> PaymentMethodPayload:
    return PaymentMethodPayload(
        payment_method=None if method is None else PaymentMethod.from_domain(method), errors=errors
    )


@strawberry.type
class PaymentMutation:
    @strawberry.mutation(description="Start adding a card: a Stripe SetupIntent and its client secret.")
    async def create_payment_method_setup(
        self, info: Info, input: Annotated[CreatePaymentMethodSetupInput | None, MUTATION_INPUT] = None
    ) -> CreatePaymentMethodSetupPayload:
        key = input.idempotency_key if input else None
        setup, errors = await attempt(payments.create_payment_method_setup(info.context, idempotency_key=key))
        return CreatePaymentMethodSetupPayload(
            setup_intent_id=None if setup is None else setup.id,
            client_secret=None if setup is None else setup.client_secret,
            errors=errors,
        )

    @strawberry.mutation(
        description="Keep a card on file: Stripe attaches and verifies it. The first card lifts the "
        "NO_PAYMENT_METHOD pause."
    )
    async def add_payment_method(
        self, info: Info, input: Annotated[AddPaymentMethodInput, MUTATION_INPUT]
    ) -> PaymentMethodPayload:
        method, errors = await attempt(
            payments.add_payment_method(
                info.context,
                payment_method_id=input.payment_method_id,
                make_primary=input.make_primary,
                idempotency_key=input.idempotency_key,
            )
        )
        return _method_payload(method, errors)

    @strawberry.mutation(description="Charge this card first; it also becomes Stripe's invoice default.")
    async def set_primary_payment_method(
        self, info: Info, input: Annotated[PaymentMethodInput, MUTATION_INPUT]
    ) -> PaymentMethodPayload:
        method, errors = await attempt(
            payments.set_primary_payment_method(
                info.context, payment_method_id=input.payment_method_id, idempotency_key=input.idempotency_key
            )
        )
        return _method_payload(method, errors)

    @strawberry.mutation(
        description="Remove a card. The next card becomes primary; removing the last pauses issuing."
    )
    async def remove_payment_method(
        self, info: Info, input: Annotated[PaymentMethodInput, MUTATION_INPUT]
    ) -> PaymentMethodPayload:
        method, errors = await attempt(
            payments.remove_payment_method(
                info.context, payment_method_id=input.payment_method_id, idempotency_key=input.idempotency_key
            )
        )
        return _method_payload(method, errors)

    @strawberry.mutation(
        description="Pay an open or past-due invoice now; paying the past-due one restores good standing."
    )
    async def pay_invoice(
        self, info: Info, input: Annotated[PayInvoiceInput, MUTATION_INPUT]
    ) -> PayInvoicePayload:
        invoice, errors = await attempt(
            invoice_payments.pay_invoice(
                info.context,
                invoice_id=str(input.invoice_id),
                payment_method_id=input.payment_method_id,
                idempotency_key=input.idempotency_key,
            )
        )
        return PayInvoicePayload(
            invoice=None if invoice is None else Invoice.from_domain(invoice), errors=errors
        )
