"""Imports every feature's tables so the metadata is complete (for Alembic and schema checks)."""

import persistence.billing  # noqa: F401  (the estimate's indexes on licenses)
from persistence.billing_runs import billing_run_partners, billing_runs
from persistence.dunning import invoice_dunning
from persistence.events import events
from persistence.idempotency import idempotency_keys
from persistence.invoice_adjustments import invoice_refunds
from persistence.invoices import invoice_day_lines, invoice_lines, invoice_number_counters, invoices
from persistence.licenses import license_transfers, licenses
from persistence.partners import partners
from persistence.payment_attempts import invoice_payments, payment_attempts
from persistence.payment_methods import payment_methods, stripe_customers
from persistence.products import product_prices, products
from persistence.tokens import api_tokens
from persistence.webhook_events import webhook_events
from persistence.webhooks import webhook_attempts, webhook_deliveries, webhook_endpoints

__all__ = [
    "api_tokens",
    "billing_run_partners",
    "billing_runs",
    "events",
    "idempotency_keys",
    "invoice_day_lines",
    "invoice_dunning",
    "invoice_lines",
    "invoice_number_counters",
    "invoice_payments",
    "invoice_refunds",
    "invoices",
    "license_transfers",
    "licenses",
    "partners",
    "payment_attempts",
    "payment_methods",
    "product_prices",
    "products",
    "stripe_customers",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_events",
]
