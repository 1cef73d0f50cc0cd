"""The demo: a catalog modelled on the partner program's products, a staff token and one partner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from app.catalog import packaged_catalog
from domain.access import Role
from domain.actors import DEMO_SEED, Actor
from domain.clock import Clock
from domain.errors import DomainError, ErrorCode
from domain.partners import Partner
from domain.principals import Principal
from domain.products import CatalogEntry
from domain.support import SupportContact
from payments.gateway import GatewayRefused, PaymentGateway
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.partners import new_partner_id
from resolvers.payments import add_payment_method, forget_customer
from resolvers.products import import_catalog
from resolvers.tokens import mint_token

# Stripe's test token for a Visa that always succeeds (4242 4242 4242 4242).
DEMO_CARD = "pm_card_visa"

# The demo sells the catalog shipped in the package, as `licensing catalog import app/catalog.toml` would.
DEMO_CATALOG: tuple[CatalogEntry, ...] = tuple(packaged_catalog())


@dataclass(frozen=True)
class DemoAccess:
    staff_token: str
    partner_id: str
    partner_token: str


async def seed_demo(
    database: Database, clock: Clock, access_file: Path, gateway: PaymentGateway, support: SupportContact
) -> DemoAccess:
    """Create the demo once (later runs keep the data and the tokens) and make sure the demo partner has
    a working test card, so it is in good standing."""
    access = await _seed_data(database, clock, access_file)
    ctx = RequestContext(
        database=database,
        clock=clock,
        principal=Principal("demo-seed", access.partner_id, False),
        request_id="demo-seed",
        support=support,
        gateway=gateway,
        system_job=DEMO_SEED,  # its events (the demo card) are the seed's, not a token's
    )
    await ensure_demo_card(ctx, access.partner_id)
    return access


async def ensure_demo_card(ctx: RequestContext, partner_id: str) -> None:
    """Keep the demo's card if Stripe still knows it; localstripe forgets everything when it restarts, so
    then the stale mirror is dropped and a fresh test card is attached."""
    async with ctx.reader() as uow:
        customer = await uow.customers.get(partner_id)
        on_file = await uow.payment_methods.active(partner_id)
    primary = next((method for method in on_file if method.is_primary), None)
    if customer is not None and primary is not None:
        try:
            await ctx.payments().set_default_payment_method(customer, primary.stripe_id)
            return
        except (DomainError, GatewayRefused) as error:
            if isinstance(error, DomainError) and error.code is not ErrorCode.PAYMENT_METHOD_NOT_FOUND:
                raise
        await forget_customer(ctx.database, partner_id, ctx.clock.now(), Actor.system(DEMO_SEED))
    elif customer is not None:
        await forget_customer(ctx.database, partner_id, ctx.clock.now(), Actor.system(DEMO_SEED))
    await add_payment_method(ctx, payment_method_id=DEMO_CARD, make_primary=True)


async def seed_demo_without_card(database: Database, clock: Clock, access_file: Path) -> DemoAccess:
    """The demo's data when Stripe cannot be reached: the partner stays without a payment method."""
    return await _seed_data(database, clock, access_file)


async def _seed_data(database: Database, clock: Clock, access_file: Path) -> DemoAccess:
    async with UnitOfWork(database) as uow:
        await import_catalog(uow, DEMO_CATALOG)
        if access_file.exists():
            saved = DemoAccess(**json.loads(access_file.read_text()))
            if await uow.partners.get(saved.partner_id) is not None:
                return saved
        now = clock.now()
        partner = Partner(new_partner_id(), "Demo Agency", "America/New_York", "usd", now)
        await uow.partners.add(partner)
        staff = await mint_token(uow, partner_id=None, role=Role.STAFF_ADMIN, label="demo staff", at=now)
        agency = await mint_token(uow, partner_id=partner.id, role=Role.ADMIN, label="demo partner", at=now)
        access = DemoAccess(staff.secret, partner.id, agency.secret)
        # Secrets are stored hashed, so the demo keeps its own copy to print them on every run.
        access_file.write_text(json.dumps(access.__dict__, indent=2))
        access_file.chmod(0o600)
        return access
