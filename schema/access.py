"""Which permission each root field of the API needs, and the sentence saying so in its description.

The use cases enforce the policy (domain.access); this table names, per GraphQL field, the permission
its use case asks for, so every field's description says which roles may call it. A root field missing
here fails the schema build: nothing reaches the API without a documented policy.
"""

from __future__ import annotations

from typing import Any

from domain.access import Permission, roles_sentence

P = Permission
ROOT_FIELD_PERMISSIONS: dict[str, dict[str, Permission]] = {
    "Query": {
        "viewer": P.PARTNER_READ,
        "partners": P.PARTNERS_LIST,
        "partner": P.RECORDS_READ,
        "products": P.RECORDS_READ,
        "license": P.PARTNER_READ,
        "licenses": P.PARTNER_READ,
        "licenseCounts": P.RECORDS_READ,
        "transferPreview": P.PARTNER_READ,
        "billingEstimate": P.PARTNER_READ,
        "invoices": P.RECORDS_READ,
        "invoice": P.RECORDS_READ,
        "support": P.PUBLIC,
        "eventCursor": P.PARTNER_READ,
        "apiTokens": P.TOKENS_READ,
        "validateLicense": P.PUBLIC,
        # Relay refetching by global id: each object's own read rule applies too (resolvers/nodes.py).
        "node": P.NODES_READ,
        "nodes": P.NODES_READ,
        "webhookEndpoints": P.WEBHOOKS_READ,
        "webhookDeliveries": P.WEBHOOKS_READ,
        "auditLog": P.AUDIT_READ,
        # Billing runs (closeBillingMonth starts one): staff follow them.
        "billingRun": P.BILLING_RUNS_READ,
        "billingRuns": P.BILLING_RUNS_READ,
    },
    "Mutation": {
        "createPartner": P.PARTNERS_MANAGE,
        "setPartnerCurrency": P.PARTNERS_MANAGE,
        "createApiToken": P.TOKENS_MANAGE,
        "revokeApiToken": P.TOKENS_MANAGE,
        "rotateApiToken": P.TOKENS_MANAGE,
        "issueLicenses": P.LICENSES_WRITE,
        "assignLicense": P.LICENSES_WRITE,
        "unassignLicense": P.LICENSES_WRITE,
        "revokeLicense": P.LICENSES_WRITE,
        "startLicenseTransfer": P.LICENSES_WRITE,
        "acceptLicenseTransfer": P.LICENSES_WRITE,
        "cancelLicenseTransfer": P.LICENSES_WRITE,
        "createPaymentMethodSetup": P.PAYMENTS_WRITE,
        "addPaymentMethod": P.PAYMENTS_WRITE,
        "setPrimaryPaymentMethod": P.PAYMENTS_WRITE,
        "removePaymentMethod": P.PAYMENTS_WRITE,
        "payInvoice": P.PAYMENTS_WRITE,
        "closeBillingMonth": P.MONTH_CLOSE,
        "advanceSandboxClock": P.SANDBOX_CLOCK,
        "createProduct": P.CATALOG_MANAGE,
        "setProductPrice": P.CATALOG_MANAGE,
        "retireProduct": P.CATALOG_MANAGE,
        # Staff money movement on invoices (added alongside this table; staff_admin only).
        "voidInvoice": P.INVOICE_ADJUST,
        "markInvoiceUncollectible": P.INVOICE_ADJUST,
        "refundInvoice": P.INVOICE_ADJUST,
        # Partner webhooks (partner admins; the endpoint's partner only).
        "createWebhookEndpoint": P.WEBHOOKS_MANAGE,
        "disableWebhookEndpoint": P.WEBHOOKS_MANAGE,
        "deleteWebhookEndpoint": P.WEBHOOKS_MANAGE,
        "rotateWebhookSecret": P.WEBHOOKS_MANAGE,
        "redeliverWebhook": P.WEBHOOKS_MANAGE,
    },
    "Subscription": {
        "licenseEvents": P.PARTNER_READ,
        "standingChanged": P.PARTNER_READ,
        "invoiceUpdated": P.PARTNER_READ,
        "licenseStatus": P.PUBLIC,
        "billingRunProgress": P.BILLING_RUNS_READ,
    },
}


class MissingPolicy(Exception):
    """A root field without an entry in ROOT_FIELD_PERMISSIONS."""


def describe_access(root: Any) -> None:
    """End the description of each of `root`'s fields with the roles that may call it (idempotent)."""
    definition = root.__strawberry_definition__
    table = ROOT_FIELD_PERMISSIONS[definition.name]
    for field in definition.fields:
        name = field.graphql_name or _camel(field.python_name)
        if name not in table:
            raise MissingPolicy(f"{definition.name}.{name} has no entry in schema/access.py")
        sentence = roles_sentence(table[name])
        if not (field.description or "").endswith(sentence):
            field.description = f"{field.description or ''} {sentence}".strip()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
