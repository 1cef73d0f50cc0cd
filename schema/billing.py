"""Billing in the API: `billingEstimate`, the shared money and line types, and staff's `closeBillingMonth`
(which starts a billing run: schema/billing_runs.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import strawberry

from domain.billing import Costs as DomainCosts
from domain.billing import DayLine as DomainDayLine
from domain.billing import LicenseCounts as DomainLicenseCounts
from domain.billing import LinePlan, MonthSums, Statement, StatementParts
from domain.billing import ProductLine as DomainProductLine
from domain.billing_runs import BillingRun as DomainBillingRun
from domain.billing_runs import RunCounts
from domain.money import format_micros, format_minor_units
from domain.partners import SUPPORTED_CURRENCIES
from resolvers import billing, billing_runs, licenses
from resolvers.products import products_by_slug
from schema.billing_runs import BillingRun
from schema.context import Info, request_loader
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt
from schema.licenses import License
from schema.pagination import After, Connection, First, child_fields, connection, selects_total_count
from schema.products import Product


@strawberry.type(description="An amount of money: an integer in the currency's minor unit (cents).")
class Money:
    amount: int = strawberry.field(description="Integer amount in minor units (1234 = 12.34 USD).")
    currency: str = strawberry.field(description="ISO 4217 code, lower case.")
    formatted: str = strawberry.field(description="Exact decimal text in major units, e.g. '12.34'.")

    @classmethod
    def of(cls, amount: int, currency: str) -> Money:
        return cls(
            amount=amount,
            currency=currency,
            formatted=format_minor_units(amount, SUPPORTED_CURRENCIES[currency]),
        )


@strawberry.type(description="Licenses billed in a month (distinct keys), by whether they are on a site.")
class BilledLicenseCounts:
    assigned: int = strawberry.field(description="Licenses on a site.")
    unassigned: int = strawberry.field(description="Licenses issued but not on a site (still billed).")
    total: int = strawberry.field(description="All licenses billed in the month.")

    @classmethod
    def from_domain(cls, counts: DomainLicenseCounts) -> BilledLicenseCounts:
        return cls(assigned=counts.assigned, unassigned=counts.unassigned, total=counts.total)


@strawberry.type(
    description="What a month costs, split by assigned and unassigned licenses; adds up exactly."
)
class Costs:
    currency: strawberry.Private[str]
    # Read only when `assigned` or `unassigned` is selected: an open month's split costs a statement.
    split: strawberry.Private[Callable[[], DomainCosts]]
    total_amount: strawberry.Private[int]

    @strawberry.field(description="Cost of licenses on a site.")
    def assigned(self) -> Money:
        return Money.of(self.split().assigned, self.currency)

    @strawberry.field(description="Cost of licenses not on a site.")
    def unassigned(self) -> Money:
        return Money.of(self.split().unassigned, self.currency)

    @strawberry.field(description="assigned + unassigned.")
    def total(self) -> Money:
        return Money.of(self.total_amount, self.currency)

    @classmethod
    def from_domain(cls, costs: DomainCosts, currency: str) -> Costs:
        return cls(currency=currency, split=lambda: costs, total_amount=costs.total)

    @classmethod
    def of_bill(cls, bill: Statement | MonthSums, currency: str) -> Costs:
        """A statement's costs, or an open month's (its split read when selected)."""
        return cls(currency=currency, split=lambda: bill.costs, total_amount=bill.total)


@strawberry.type(description="One product's line: its license-days at its daily price, rounded half up.")
class BillingProductLine:
    line: strawberry.Private[DomainProductLine | LinePlan]  # a plan's counts are read only when selected
    license_days: int = strawberry.field(description="Days licenses of this product were active, summed.")
    daily_price_micros: int = strawberry.field(description="Price per license per day, in micro-units.")
    amount: Money = strawberry.field(description="round_half_up(licenseDays * daily price) in minor units.")

    @strawberry.field(description="Licenses of this product billed.")
    def counts(self) -> BilledLicenseCounts:
        return BilledLicenseCounts.from_domain(self.line.counts)

    @strawberry.field(description="The daily price as exact decimal text.")
    def daily_price(self) -> str:
        return format_micros(self.daily_price_micros)

    @strawberry.field(description="The product.")
    async def product(self, info: Info) -> Product:
        return await product_of(info, self.line.product_slug)

    @classmethod
    def from_domain(cls, line: DomainProductLine | LinePlan, currency: str) -> BillingProductLine:
        return cls(
            line=line,
            license_days=line.license_days,
            daily_price_micros=line.daily_price_micros,
            amount=Money.of(line.amount, currency),
        )


@strawberry.type(
    description="One license's share of its product line: the days it was billed and its amount."
)
class DayLine:
    product_slug: strawberry.Private[str]
    holding_id: strawberry.ID = strawberry.field(
        description="The holding billed (License.id): a key held twice in a month has two day-lines."
    )
    license_key: str = strawberry.field(description="The license key.")
    site: str | None = strawberry.field(description="The site the license is on, if any.")
    days: int = strawberry.field(description="Days billed in the month.")
    amount: Money = strawberry.field(
        description="Allocated amount; the day-lines add up to their product line."
    )
    daily_price_micros: int = strawberry.field(
        description="The daily price of these days, in micro-units (a price change splits a holding's days)."
    )

    @strawberry.field(description="The product of the license.")
    async def product(self, info: Info) -> Product:
        return await product_of(info, self.product_slug)

    @strawberry.field(description="The license (this partner's holding of the key) the days were billed for.")
    async def license(self, info: Info) -> License | None:
        holding = await request_loader(info, "licenses_by_id", licenses.licenses_by_ids).load(
            str(self.holding_id)
        )
        return None if holding is None else License.from_domain(holding)

    @classmethod
    def from_domain(cls, line: DomainDayLine, currency: str) -> DayLine:
        return cls(
            product_slug=line.product_slug,
            holding_id=strawberry.ID(line.holding_id),
            license_key=line.key,
            site=line.site,
            days=line.days,
            amount=Money.of(line.amount, currency),
            daily_price_micros=line.daily_price_micros,
        )


async def product_of(info: Info, slug: str) -> Product:
    """A product through the request's batching loader (one statement for a whole page of lines)."""
    found = await request_loader(info, "products", products_by_slug).load(slug)
    return Product.from_domain(found)


@strawberry.type(description="A month's bill: live while the month is open, as invoiced once it is closed.")
class BillingEstimate:
    estimate: strawberry.Private[billing.Estimate]
    month: str = strawberry.field(description="The month, YYYY-MM, in the partner's billing zone.")
    zone: str = strawberry.field(description="IANA zone whose calendar days were counted.")
    currency: str = strawberry.field(description="ISO 4217 code, lower case.")
    invoiced: bool = strawberry.field(description="True when the month is closed and this is its invoice.")
    license_days: int = strawberry.field(description="All license-days of the month.")

    @strawberry.field(description="Licenses billed, assigned or not.")
    def license_counts(self) -> BilledLicenseCounts:
        return BilledLicenseCounts.from_domain(self.estimate.bill.counts)

    @strawberry.field(description="The month's cost, split by assigned and unassigned.")
    def costs(self) -> Costs:
        return Costs.of_bill(self.estimate.bill, self.currency)

    @strawberry.field(description="One line per product.")
    def products(self) -> list[BillingProductLine]:
        return [BillingProductLine.from_domain(line, self.currency) for line in self.estimate.lines]

    @strawberry.field(description="Per-license day-lines, in product then key order.")
    async def day_lines(self, info: Info, first: First = None, after: After = None) -> Connection[DayLine]:
        page = await billing.day_lines_page(
            info.context, self.estimate, first=first, after=after, count_total=selects_total_count(info)
        )
        return connection(page, lambda line: DayLine.from_domain(line, self.currency))


@strawberry.input(description="Close a month: finalize every partner's invoice for it, then charge it.")
class CloseBillingMonthInput:
    month: str = strawberry.field(description="YYYY-MM; it must have ended.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


LEGACY_COUNT = "The run's count when this answer was made (read `run`, which keeps counting)."


@strawberry.type(
    description="The billing run closing the month (started now, or the one already running it); it "
    "goes on in the background: follow it with `billingRun(id)` or `billingRunProgress(id)`."
)
class CloseBillingMonthPayload:
    run: BillingRun | None = strawberry.field(description="The run closing the month.")
    month: str | None = strawberry.field(description="The month being closed.")
    closed: int = strawberry.field(
        description="Invoices finalized. " + LEGACY_COUNT, deprecation_reason="Use run.closed."
    )
    already_closed: int = strawberry.field(
        description="Partners already invoiced. " + LEGACY_COUNT, deprecation_reason="Use run.alreadyClosed."
    )
    pending: int = strawberry.field(
        description="Partners whose month has not ended in their zone. " + LEGACY_COUNT,
        deprecation_reason="Use run.notOver (run.pending counts partners still to do).",
    )
    paid: int = strawberry.field(
        description="Invoices charged. " + LEGACY_COUNT, deprecation_reason="Use run.paid."
    )
    past_due: int = strawberry.field(
        description="Invoices now past due. " + LEGACY_COUNT, deprecation_reason="Use run.pastDue."
    )
    uncollected: int = strawberry.field(
        description="Invoices left open. " + LEGACY_COUNT, deprecation_reason="Use run.uncollected."
    )
    errors: list[UserError] = strawberry.field(description="Why no run was started, if none was.")

    @classmethod
    def of(cls, run: DomainBillingRun | None, errors: list[UserError]) -> CloseBillingMonthPayload:
        counts = RunCounts() if run is None else run.counts
        return cls(
            run=None if run is None else BillingRun.from_domain(run),
            month=None if run is None else run.month,
            closed=counts.closed,
            already_closed=counts.already_closed,
            pending=counts.not_over,
            paid=counts.paid,
            past_due=counts.past_due,
            uncollected=counts.uncollected,
            errors=errors,
        )


@strawberry.type
class BillingQuery:
    @strawberry.field(description="A month's bill (default: the current month, counted to its end).")
    async def billing_estimate(
        self,
        info: Info,
        month: Annotated[
            str | None,
            strawberry.argument(description="YYYY-MM in the partner's zone (default: the current month)."),
        ] = None,
    ) -> BillingEstimate:
        estimate = await billing.billing_estimate(info.context, month=month, parts=estimate_parts(info))
        return BillingEstimate(
            estimate=estimate,
            month=str(estimate.month),
            zone=estimate.zone,
            currency=estimate.currency,
            invoiced=estimate.invoice is not None,
            license_days=estimate.bill.license_days,
        )


def estimate_parts(info: Info) -> StatementParts:
    """The parts of an open month's estimate the query selects (fragments included): the license
    counts, and the cost's assigned/unassigned split."""
    parts = StatementParts.LINES
    for field in child_fields(info.selected_fields):
        below = {child.name for child in child_fields([field])}
        if field.name == "licenseCounts" or (field.name == "products" and "counts" in below):
            parts |= StatementParts.COUNTS
        elif field.name == "costs" and below & {"assigned", "unassigned"}:
            parts |= StatementParts.COST_SPLIT
    return parts


@strawberry.type
class BillingMutation:
    @strawberry.mutation(
        description="Staff: close a month into invoices and charge them, in the background: answers the "
        "billing run at once (the one already running for the month, if any). Idempotent per partner and "
        "month."
    )
    async def close_billing_month(
        self, info: Info, input: Annotated[CloseBillingMonthInput, MUTATION_INPUT]
    ) -> CloseBillingMonthPayload:
        run, errors = await attempt(
            billing_runs.close_billing_month(
                info.context, month=input.month, idempotency_key=input.idempotency_key
            )
        )
        return CloseBillingMonthPayload.of(run, errors)
