"""The demo: a catalog modelled on the partner program's products, a staff token and one partner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from domain.clock import Clock
from domain.partners import Partner
from domain.products import Product
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.partners import new_partner_id
from resolvers.tokens import mint_token

# Daily prices in micro-dollars: yearly list price / 365, rounded to the micro.
DEMO_CATALOG: tuple[Product, ...] = (
    Product(
        "jetpack-backup",
        "VaultPress Backup",
        "Real-time cloud backups with one-click restores.",
        328767,
        "usd",
    ),
    Product("jetpack-scan", "Scan", "Malware scanning and one-click fixes.", 164383, "usd"),
    Product("jetpack-anti-spam", "Akismet Anti-spam", "Comment and form spam protection.", 98630, "usd"),
    Product("jetpack-search", "Search", "Instant, relevant site search.", 82192, "usd"),
    Product("jetpack-boost", "Boost", "Core Web Vitals and page speed.", 65753, "usd"),
    Product("jetpack-social", "Social", "Share posts to social networks automatically.", 32876, "usd"),
    Product("jetpack-videopress", "VideoPress", "Ad-free video hosting.", 109589, "usd"),
    Product("jetpack-security", "Security bundle", "Backup, Scan and Anti-spam together.", 493150, "usd"),
    Product("jetpack-complete", "Complete bundle", "Every product in one license.", 1353425, "usd"),
)


@dataclass(frozen=True)
class DemoAccess:
    staff_token: str
    partner_id: str
    partner_token: str


async def seed_demo(database: Database, clock: Clock, access_file: Path) -> DemoAccess:
    """Create the demo once; later runs keep the data and read the saved tokens back."""
    async with UnitOfWork(database) as uow:
        for product in DEMO_CATALOG:
            await uow.products.save(product)
        if access_file.exists():
            saved = DemoAccess(**json.loads(access_file.read_text()))
            if await uow.partners.get(saved.partner_id) is not None:
                return saved
        now = clock.now()
        partner = Partner(new_partner_id(), "Demo Agency", "America/New_York", "usd", now)
        await uow.partners.add(partner)
        staff = await mint_token(uow, partner_id=None, staff=True, label="demo staff", at=now)
        agency = await mint_token(uow, partner_id=partner.id, staff=False, label="demo partner", at=now)
        access = DemoAccess(staff.secret, partner.id, agency.secret)
        # Secrets are stored hashed, so the demo keeps its own copy to print them on every run.
        access_file.write_text(json.dumps(access.__dict__, indent=2))
        access_file.chmod(0o600)
        return access
