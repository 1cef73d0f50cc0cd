"""Billed-day spans: each holding stores its first and last billed local day in its partner's zone, as
day numbers (date.toordinal()), so that a month's estimate is a SQL sum of spans clipped to the month.

Existing holdings are backfilled with the day rule itself (domain.billing.billable_span), in batches.

Revision ID: 0010_billable_spans
Revises: 0008_access
"""

import sqlalchemy as sa
from alembic import op

from domain.billing import billable_span
from persistence.types import UTCDateTime

revision = "0010_billable_spans"
down_revision = "0009_attribution"
branch_labels = None
depends_on = None

BATCH = 5_000


def upgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.add_column(sa.Column("first_billed_day", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("last_billed_day", sa.Integer(), nullable=True))
    backfill_spans(op.get_bind())
    with op.batch_alter_table("licenses") as batch:
        batch.alter_column("first_billed_day", existing_type=sa.Integer(), nullable=False)
    op.create_index(
        "ix_licenses_partner_id_billed_days",
        "licenses",
        ["partner_id", "first_billed_day", "last_billed_day", "product_slug", "state", "site", "key", "id"],
    )


def backfill_spans(connection: sa.Connection) -> None:
    """Compute every holding's span in its partner's zone with the domain's day rule."""
    holdings = sa.table(
        "licenses",
        sa.column("id", sa.String),
        sa.column("partner_id", sa.String),
        sa.column("state", sa.String),
        sa.column("held_from", UTCDateTime()),
        sa.column("held_until", UTCDateTime()),
        sa.column("first_billed_day", sa.Integer),
        sa.column("last_billed_day", sa.Integer),
    )
    partners = sa.table("partners", sa.column("id", sa.String), sa.column("billing_zone", sa.String))
    rows = connection.execute(
        sa.select(
            holdings.c.id,
            holdings.c.held_from,
            holdings.c.held_until,
            holdings.c.state,
            partners.c.billing_zone,
        ).join_from(holdings, partners, partners.c.id == holdings.c.partner_id)
    ).all()
    update = (
        holdings.update()
        .where(holdings.c.id == sa.bindparam("holding_id"))
        .values(first_billed_day=sa.bindparam("span_first"), last_billed_day=sa.bindparam("span_last"))
    )
    for start in range(0, len(rows), BATCH):
        spans = []
        for holding_id, held_from, held_until, state, zone in rows[start : start + BATCH]:
            first, last = billable_span(held_from, held_until, state == "transferred", zone)
            spans.append({"holding_id": holding_id, "span_first": first, "span_last": last})
        connection.execute(update, spans)


def downgrade() -> None:
    op.drop_index("ix_licenses_partner_id_billed_days", table_name="licenses")
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("last_billed_day")
        batch.drop_column("first_billed_day")
