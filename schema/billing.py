"""Billing in the API: `billingEstimate`, the shared money and line types, and staff's `closeBillingMonth`."""

from __future__ import annotations

from typing import Annotated

import strawberry

from domain.billing import Costs as DomainCosts
from domain.billing import DayLine as DomainDayLine
from domain.billing import LicenseCounts as DomainLicenseCounts
from domain.billing import ProductLine as DomainProductLine
from domain.money import format_micros, format_minor_units
from domain.partners import SUPPORTED_CURRENCIES
from resolvers import billing, licenses
from resolvers.products import products_by_slug
from schema.context import Info, request_loader
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt
from schema.licenses import License
from schema.pagination import After, Connection, First, connection, selects_total_count
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
    assigned: Money = strawberry.field(description="Cost of licenses on a site.")
    unassigned: Money = strawberry.field(description="Cost of licenses not on a site.")
    total: Money = strawberry.field(description="assigned + unassigned.")

    @classmethod
    def from_domain(cls, costs: DomainCosts, currency: str) -> Costs:
        return cls(
            assigned=Money.of(costs.assigned, currency),
            unassigned=Money.of(costs.unassigned, currency),
            total=Money.of(costs.total, currency),
        )


@strawberry.type(description="One product's line: its license-days at its daily price, rounded half up.")
class BillingProductLine:
    product_slug: strawberry.Private[str]
    license_days: int = strawberry.field(description="Days licenses of this product were active, summed.")
    daily_price_micros: int = strawberry.field(description="Price per license per day, in micro-units.")
    amount: Money = strawberry.field(description="round_half_up(licenseDays * daily price) in minor units.")
    counts: BilledLicenseCounts = strawberry.field(description="Licenses of this product billed.")

    @strawberry.field(description="The daily price as exact decimal text.")
    def daily_price(self) -> str:
        return format_micros(self.daily_price_micros)

    @strawberry.field(description="The product.")
    async def product(self, info: Info) -> Product:
        return await product_of(info, self.product_slug)

    @classmethod
    def from_domain(cls, line: DomainProductLine, currency: str) -> BillingProductLine:
        return cls(
            product_slug=line.product_slug,
            license_days=line.license_days,
            daily_price_micros=line.daily_price_micros,
            amount=Money.of(line.amount, currency),
            counts=BilledLicenseCounts.from_domain(line.counts),
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
    license_counts: BilledLicenseCounts = strawberry.field(description="Licenses billed, assigned or not.")
    costs: Costs = strawberry.field(description="The month's cost, split by assigned and unassigned.")
    products: list[BillingProductLine] = strawberry.field(description="One line per product.")

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


@strawberry.type(description="The result of closeBillingMonth; re-running it closes only what is left.")
class CloseBillingMonthPayload:
    month: str | None = strawberry.field(description="The month closed.")
    closed: int = strawberry.field(description="Invoices finalized by this call.")
    already_closed: int = strawberry.field(description="Partners whose month was already invoiced.")
    pending: int = strawberry.field(description="Partners whose month has not ended yet in their zone.")
    paid: int = strawberry.field(description="Invoices of the month charged successfully by this call.")
    past_due: int = strawberry.field(
        description="Invoices whose every card failed (or with no card): now PAST_DUE, in dunning."
    )
    uncollected: int = strawberry.field(
        description="Invoices left OPEN because Stripe was unreachable; a re-run or dunning charges them."
    )
    errors: list[UserError] = strawberry.field(description="Why nothing was closed, if it was not.")


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
        estimate = await billing.billing_estimate(info.context, month=month)
        statement, currency = estimate.statement, estimate.currency
        return BillingEstimate(
            estimate=estimate,
            month=str(estimate.month),
            zone=estimate.zone,
            currency=currency,
            invoiced=estimate.invoice is not None,
            license_days=statement.license_days,
            license_counts=BilledLicenseCounts.from_domain(statement.counts),
            costs=Costs.from_domain(statement.costs, currency),
            products=[BillingProductLine.from_domain(line, currency) for line in statement.product_lines],
        )


@strawberry.type
class BillingMutation:
    @strawberry.mutation(
        description="Staff: close a month into invoices and charge them. Idempotent per partner and month."
    )
    async def close_billing_month(
        self, info: Info, input: Annotated[CloseBillingMonthInput, MUTATION_INPUT]
    ) -> CloseBillingMonthPayload:
        report, errors = await attempt(
            billing.close_billing_month(
                info.context, month=input.month, idempotency_key=input.idempotency_key
            )
        )
        if report is None:
            return CloseBillingMonthPayload(
                month=None,
                closed=0,
                already_closed=0,
                pending=0,
                paid=0,
                past_due=0,
                uncollected=0,
                errors=errors,
            )
        return CloseBillingMonthPayload(
            month=str(report.month),
            closed=report.closed,
            already_closed=report.already_closed,
            pending=report.pending,
            paid=report.collection.paid,
            past_due=report.collection.past_due,
            uncollected=report.collection.uncollected,
            errors=[],
        )
