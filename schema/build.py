"""Assembles the Schema from each feature's root fields, with the limits and error masking on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from schema.access import describe_access
from schema.audit_log import AuditLogQuery
from schema.billing import BillingMutation, BillingQuery
from schema.billing_runs import BillingRunQuery, BillingRunSubscription
from schema.fanout import FanoutExecutor
from schema.feed import FeedQuery, FeedSubscription
from schema.invoice_adjustments import InvoiceAdjustmentMutation
from schema.invoices import InvoiceQuery
from schema.license_checks import LicenseCheckQuery, LicenseCheckSubscription
from schema.licenses import LICENSE_READY_FIELDS, LicenseMutation, LicenseQuery
from schema.limits import DocumentGate, QueryLimits
from schema.nodes import NodeQuery
from schema.partners import PartnerMutation, PartnerQuery
from schema.payments import PaymentMutation
from schema.pipeline import RequestPipeline
from schema.products import PRODUCT_READY_FIELDS, ProductMutation, ProductQuery
from schema.ready_fields import install as install_ready_fields
from schema.sandbox import SandboxMutation
from schema.support import SupportQuery
from schema.tokens import TokenMutation, TokenQuery
from schema.webhooks import WebhookMutation, WebhookQuery

SDL_PATH = Path(__file__).with_name("schema.graphql")


@strawberry.type(description="Read the partner's account, catalog, licenses and billing.")
class Query(
    PartnerQuery,
    ProductQuery,
    LicenseQuery,
    BillingQuery,
    BillingRunQuery,
    InvoiceQuery,
    SupportQuery,
    FeedQuery,
    TokenQuery,
    LicenseCheckQuery,
    NodeQuery,
    WebhookQuery,
    AuditLogQuery,
):
    pass


@strawberry.type(description="Change licenses, payment methods and (staff) the system.")
class Mutation(
    PartnerMutation,
    TokenMutation,
    LicenseMutation,
    PaymentMutation,
    BillingMutation,
    SandboxMutation,
    ProductMutation,
    InvoiceAdjustmentMutation,
    WebhookMutation,
):
    pass


@strawberry.type(
    description="Live updates over graphql-transport-ws on /graphql (connection_params.authorization; "
    "licenseStatus needs no token)."
)
class Subscription(FeedSubscription, LicenseCheckSubscription, BillingRunSubscription):
    pass


for root in (Query, Mutation, Subscription):
    describe_access(root)


class LicensingSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # schema.errors.mask_errors logs what needs logging, with the request id.
        return None


def build_schema(limits: QueryLimits | None = None, observers: Sequence[Any] = ()) -> strawberry.Schema:
    """The schema; every document is bounded by `limits` before it is validated (see schema.limits).

    `observers` (the app's logging and metrics extensions) run outermost: they see masked errors."""
    gate = DocumentGate(limits or QueryLimits())
    # The observers' hooks run first; then the pipeline bounds, parses and validates each document
    # (measured before it is validated; parse and verdict cached per text), looks the caller up and
    # masks errors (schema.pipeline).
    extensions: list[Any] = [*observers, lambda: RequestPipeline(gate)]
    # FanoutExecutor: subscribers asking the same of the same event share one execution (schema.fanout).
    schema = LicensingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=FanoutExecutor,
    )
    install_ready_fields(schema, [*LICENSE_READY_FIELDS, *PRODUCT_READY_FIELDS])
    return schema


def export_sdl() -> str:
    return build_schema().as_str() + "\n"
