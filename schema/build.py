"""Assembles the Schema from each feature's root fields, with the limits and error masking on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxTokensLimiter
from strawberry.types import ExecutionContext

from schema.access import describe_access
from schema.billing import BillingMutation, BillingQuery
from schema.errors import MaskUnexpectedErrors
from schema.fanout import FanoutExecutor
from schema.feed import FeedQuery, FeedSubscription
from schema.invoice_adjustments import InvoiceAdjustmentMutation
from schema.invoices import InvoiceQuery
from schema.license_checks import LicenseCheckQuery
from schema.licenses import LicenseMutation, LicenseQuery
from schema.limits import DocumentVerdicts, GatedParserCache, GatedValidationCache, QueryGate, QueryLimits
from schema.partners import PartnerMutation, PartnerQuery
from schema.payments import PaymentMutation
from schema.products import ProductMutation, ProductQuery
from schema.sandbox import SandboxMutation
from schema.support import SupportQuery
from schema.tokens import IdentifyCaller, TokenMutation, TokenQuery

SDL_PATH = Path(__file__).with_name("schema.graphql")


@strawberry.type(description="Read the partner's account, catalog, licenses and billing.")
class Query(
    PartnerQuery,
    ProductQuery,
    LicenseQuery,
    BillingQuery,
    InvoiceQuery,
    SupportQuery,
    FeedQuery,
    TokenQuery,
    LicenseCheckQuery,
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
):
    pass


@strawberry.type(
    description="Live updates over graphql-transport-ws on /graphql (connection_params.authorization)."
)
class Subscription(FeedSubscription):
    pass


for root in (Query, Mutation, Subscription):
    describe_access(root)


class LicensingSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # MaskUnexpectedErrors logs what needs logging, with the request id.
        return None


def build_schema(limits: QueryLimits | None = None, observers: Sequence[Any] = ()) -> strawberry.Schema:
    """The schema; every document is bounded by `limits` before it is validated (see schema.limits).

    `observers` (the app's logging and metrics extensions) run outermost: they see masked errors."""
    limits = limits or QueryLimits()
    verdicts = DocumentVerdicts()
    # Order matters: each hook runs in this order. The gate measures the text before the parser
    # cache parses it and the document before the validation cache validates it.
    extensions: list[Any] = [
        *observers,
        # The parser stops after this many tokens: parsing is bounded before anything else runs.
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: QueryGate(limits, verdicts),
        GatedParserCache,
        GatedValidationCache,
        IdentifyCaller,
        MaskUnexpectedErrors,
    ]
    # FanoutExecutor: subscribers asking the same of the same event share one execution (schema.fanout).
    return LicensingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=FanoutExecutor,
    )


def export_sdl() -> str:
    return build_schema().as_str() + "\n"
