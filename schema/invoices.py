"""Invoices in the API: `invoices`, `invoice(id)` and their day-lines."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from domain.invoice_adjustments import Refund as DomainRefund
from domain.invoice_adjustments import RefundStatus, refunded_amount
from domain.invoices import Invoice as DomainInvoice
from domain.invoices import InvoiceStatus
from resolvers import invoice_adjustments, invoice_payments, invoices
from schema.billing import BilledLicenseCounts, BillingProductLine, Costs, DayLine, Money
from schema.context import Info
from schema.enums import described_enum
from schema.pagination import After, Connection, First, connection
from schema.payment_attempts import PaymentAttempt
from schema.relay import Node

described_enum(
    InvoiceStatus,
    name="InvoiceStatus",
    description="Where an invoice is in its life cycle.",
    values={
        InvoiceStatus.DRAFT: "The current month, computed live (see billingEstimate); never stored.",
        InvoiceStatus.OPEN: "Finalized at month close, numbered, waiting for its charge.",
        InvoiceStatus.PAID: "Paid in full.",
        InvoiceStatus.PAST_DUE: "A charge failed or the due date passed; standing is past due.",
        InvoiceStatus.VOID: "Staff cancelled it; nothing is owed.",
        InvoiceStatus.UNCOLLECTIBLE: "Staff wrote it off as not collectable.",
    },
)
described_enum(
    RefundStatus,
    name="RefundStatus",
    description="pending (Stripe's answer is not known yet), succeeded, or failed (Stripe refused it).",
    values={
        RefundStatus.PENDING: "Sent to Stripe; its answer is not known yet.",
        RefundStatus.SUCCEEDED: "Stripe refunded the amount.",
        RefundStatus.FAILED: "Stripe refused it; nothing was refunded.",
    },
)

# The `status` argument of both invoice lists (`invoices`, `Partner.invoices`).
StatusFilter = Annotated[
    list[InvoiceStatus] | None,
    strawberry.argument(description="Only invoices in these statuses (default: all)."),
]


@strawberry.type(description="A refund staff made of a paid invoice, through Stripe.")
class InvoiceRefund:
    id: strawberry.ID = strawberry.field(description="Refund id (ours).")
    amount: Money = strawberry.field(description="How much was (or is being) given back.")
    reason: str = strawberry.field(description="Why staff refunded it.")
    status: RefundStatus = strawberry.field(description="Whether Stripe refunded it.")
    at: datetime = strawberry.field(description="When staff asked for it.")
    stripe_refund_id: str | None = strawberry.field(description="Stripe's refund id, once it succeeded.")
    failure_message: str | None = strawberry.field(description="Stripe's reason, if it refused.")

    @classmethod
    def from_domain(cls, refund: DomainRefund, currency: str) -> InvoiceRefund:
        return cls(
            id=strawberry.ID(refund.id),
            amount=Money.of(refund.amount, currency),
            reason=refund.reason,
            status=refund.status,
            at=refund.created_at,
            stripe_refund_id=refund.provider_refund_id,
            failure_message=refund.failure_message,
        )


@strawberry.type(description="A closed month's invoice: product lines and per-license day-lines.")
class Invoice(Node):
    id: strawberry.ID = strawberry.field(description="Invoice id; also its global id (`node(id:)`).")
    number: str = strawberry.field(description="Human-readable number, unique per partner and month.")
    month: str = strawberry.field(description="The billed month, YYYY-MM, in `zone`.")
    status: InvoiceStatus = strawberry.field(description="open, paid, past_due, void or uncollectible.")
    zone: str = strawberry.field(description="IANA zone whose calendar days were billed.")
    currency: str = strawberry.field(description="ISO 4217 code, lower case.")
    period_start: datetime = strawberry.field(description="First instant of the month in `zone`.")
    period_end: datetime = strawberry.field(description="First instant after the month in `zone`.")
    finalized_at: datetime = strawberry.field(description="When the month was closed.")
    due_at: datetime = strawberry.field(description="When payment is due.")
    paid_at: datetime | None = strawberry.field(description="When it was paid, if it was.")
    total: Money = strawberry.field(description="Sum of the product lines (and of the day-lines).")
    license_days: int = strawberry.field(description="All license-days billed.")
    license_counts: BilledLicenseCounts = strawberry.field(description="Licenses billed, assigned or not.")
    costs: Costs = strawberry.field(description="The total split by assigned and unassigned licenses.")
    lines: list[BillingProductLine] = strawberry.field(description="One line per product.")
    status_reason: str | None = strawberry.field(
        description="Why staff voided the invoice or marked it uncollectible (null otherwise)."
    )

    @strawberry.field(description="Per-license day-lines, in product then key order.")
    async def day_lines(self, info: Info, first: First = None, after: After = None) -> Connection[DayLine]:
        page = await invoices.invoice_day_lines(
            info.context, invoice_id=str(self.id), first=first, after=after
        )
        return connection(page, lambda line: DayLine.from_domain(line, self.currency))

    @strawberry.field(description="Every charge of this invoice, oldest first: card, outcome and reason.")
    async def payment_attempts(self, info: Info) -> list[PaymentAttempt]:
        charges = await invoice_payments.invoice_payment_attempts(info.context, invoice_id=str(self.id))
        return [PaymentAttempt.from_domain(charge) for charge in charges]

    @strawberry.field(description="Every refund of this invoice, oldest first (staff make them).")
    async def refunds(self, info: Info) -> list[InvoiceRefund]:
        found = await invoice_adjustments.invoice_refunds(info.context, invoice_id=str(self.id))
        return [InvoiceRefund.from_domain(refund, self.currency) for refund in found]

    @strawberry.field(description="How much of the total has been refunded (succeeded refunds only).")
    async def refunded_amount(self, info: Info) -> Money:
        found = await invoice_adjustments.invoice_refunds(info.context, invoice_id=str(self.id))
        return Money.of(refunded_amount(found), self.currency)

    @strawberry.field(description="Where to download every day-line as CSV (send the same Bearer token).")
    def day_lines_csv_path(self) -> str:
        return f"/invoices/{self.id}/day-lines.csv"

    @strawberry.field(description="Where to download the invoice as a PDF (send the same Bearer token).")
    def pdf_url(self) -> str:
        return f"/invoices/{self.id}.pdf"

    @classmethod
    def from_domain(cls, invoice: DomainInvoice) -> Invoice:
        currency = invoice.currency
        return cls(
            id=strawberry.ID(invoice.id),
            number=invoice.number,
            month=str(invoice.month),
            status=invoice.status,
            zone=invoice.zone,
            currency=currency,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            finalized_at=invoice.finalized_at,
            due_at=invoice.due_at,
            paid_at=invoice.paid_at,
            total=Money.of(invoice.total, currency),
            license_days=invoice.license_days,
            license_counts=BilledLicenseCounts.from_domain(invoice.counts),
            costs=Costs.from_domain(invoice.costs, currency),
            lines=[BillingProductLine.from_domain(line, currency) for line in invoice.lines],
            status_reason=invoice.status_reason,
        )


async def invoice_connection(
    info: Info,
    status: list[InvoiceStatus] | None,
    first: int | None,
    after: str | None,
    partner_id: str | None = None,
) -> Connection[Invoice]:
    """A page of invoices, newest first: the caller's own, or (staff) the partner named."""
    page = await invoices.list_invoices(
        info.context, statuses=status or [], first=first, after=after, partner_id=partner_id
    )
    return connection(page, Invoice.from_domain)


@strawberry.type
class InvoiceQuery:
    @strawberry.field(description="The partner's invoices, newest first.")
    async def invoices(
        self,
        info: Info,
        status: StatusFilter = None,
        first: First = None,
        after: After = None,
    ) -> Connection[Invoice]:
        return await invoice_connection(info, status, first, after)

    @strawberry.field(description="One of the partner's invoices (staff: any partner's).")
    async def invoice(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The invoice's `id`.")]
    ) -> Invoice:
        return Invoice.from_domain(await invoices.get_invoice(info.context, invoice_id=str(id)))
