"""Staff invoice operations in the API: voidInvoice, markInvoiceUncollectible and refundInvoice."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

import strawberry

from domain.invoices import Invoice as DomainInvoice
from resolvers import invoice_adjustments
from schema.context import Info
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt
from schema.invoices import Invoice

REASON_DESCRIPTION = "Why (1 to 500 characters); shown on the invoice and kept in its history."


@strawberry.input(description="An open or past-due invoice to void or mark uncollectible.")
class InvoiceWriteOffInput:
    id: strawberry.ID = strawberry.field(description="The invoice.")
    reason: str = strawberry.field(description=REASON_DESCRIPTION)
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.input(description="A refund of a paid invoice, in full or in part.")
class RefundInvoiceInput:
    id: strawberry.ID = strawberry.field(description="The paid invoice.")
    amount_minor: int | None = strawberry.field(
        default=None,
        description="How much to give back, in minor units; default: all that is left to refund.",
    )
    reason: str = strawberry.field(description=REASON_DESCRIPTION)
    idempotency_key: str | None = strawberry.field(
        default=None,
        description=f"{IDEMPOTENCY_KEY_DESCRIPTION} Send one: if Stripe's answer is lost, the same request "
        "sent again settles that refund instead of making another.",
    )


@strawberry.type(description="The result of a staff invoice operation.")
class InvoiceAdjustmentPayload:
    invoice: Invoice | None = strawberry.field(
        description="The invoice as it is now, unless there were errors."
    )
    errors: list[UserError] = strawberry.field(description="Why nothing changed, if it did not.")


@strawberry.type
class InvoiceAdjustmentMutation:
    @strawberry.mutation(
        description="Staff: void an open or past-due invoice (nothing is owed for it; dunning stops and "
        "standing is recomputed)."
    )
    async def void_invoice(
        self, info: Info, input: Annotated[InvoiceWriteOffInput, MUTATION_INPUT]
    ) -> InvoiceAdjustmentPayload:
        return await _payload(
            invoice_adjustments.void_invoice(
                info.context,
                invoice_id=str(input.id),
                reason=input.reason,
                idempotency_key=input.idempotency_key,
            )
        )

    @strawberry.mutation(
        description="Staff: stop collecting an open or past-due invoice, kept as a bad debt (dunning stops "
        "and standing is recomputed)."
    )
    async def mark_invoice_uncollectible(
        self, info: Info, input: Annotated[InvoiceWriteOffInput, MUTATION_INPUT]
    ) -> InvoiceAdjustmentPayload:
        return await _payload(
            invoice_adjustments.mark_invoice_uncollectible(
                info.context,
                invoice_id=str(input.id),
                reason=input.reason,
                idempotency_key=input.idempotency_key,
            )
        )

    @strawberry.mutation(
        description="Staff: refund a paid invoice through Stripe, in full or in part; the invoice stays "
        "paid and shows `refundedAmount` and `refunds`."
    )
    async def refund_invoice(
        self, info: Info, input: Annotated[RefundInvoiceInput, MUTATION_INPUT]
    ) -> InvoiceAdjustmentPayload:
        return await _payload(
            invoice_adjustments.refund_invoice(
                info.context,
                invoice_id=str(input.id),
                reason=input.reason,
                amount_minor=input.amount_minor,
                idempotency_key=input.idempotency_key,
            )
        )


async def _payload(call: Awaitable[DomainInvoice]) -> InvoiceAdjustmentPayload:
    invoice, errors = await attempt(call)
    return InvoiceAdjustmentPayload(
        invoice=None if invoice is None else Invoice.from_domain(invoice), errors=errors
    )
