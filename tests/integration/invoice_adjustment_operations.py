"""Staff's invoice operations as the back-office sends them, and what they leave in an invoice's history."""

from __future__ import annotations

from typing import Any

from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from tests.integration.conftest import Api

ERRORS = "errors { code message field }"
ADJUSTED = f"""invoice {{
  id status statusReason total {{ amount }} refundedAmount {{ amount currency }}
  refunds {{ id amount {{ amount }} reason status at stripeRefundId failureMessage }}
}} {ERRORS}"""
VOID = f"mutation($input: InvoiceWriteOffInput!) {{ voidInvoice(input: $input) {{ {ADJUSTED} }} }}"
UNCOLLECTIBLE = f"""
mutation($input: InvoiceWriteOffInput!) {{ markInvoiceUncollectible(input: $input) {{ {ADJUSTED} }} }}"""
REFUND = f"mutation($input: RefundInvoiceInput!) {{ refundInvoice(input: $input) {{ {ADJUSTED} }} }}"


async def staff_does(api: Api, staff_token: str, operation: str, **input: Any) -> dict[str, Any]:
    """Run one staff invoice operation and return its payload."""
    body = await api.data(operation, {"input": input}, staff_token)
    result: dict[str, Any] = next(iter(body.values()))
    return result


async def invoice_history(database: Database, partner_id: str, invoice_id: str) -> list[tuple[str, str, str]]:
    """(action, from, to) of every event of the invoice, in order (what invoiceUpdated delivers)."""
    async with UnitOfWork(database, read_only=True) as uow:
        events = await uow.events.for_subjects(partner_id, "invoice", [invoice_id])
    return [(e.action, e.from_state or "", e.to_state or "") for e in events]


async def invoice_events(database: Database, partner_id: str, invoice_id: str, action: str) -> list[Any]:
    async with UnitOfWork(database, read_only=True) as uow:
        events = await uow.events.for_subjects(partner_id, "invoice", [invoice_id])
    return [e.payload for e in events if e.action == action]
