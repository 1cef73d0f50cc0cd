"""Billing: invoices with product lines and per-license day-lines; one invoice per partner and month.

Revision ID: 0003_billing
Revises: 0002_licenses
"""

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0003_billing"
down_revision = "0002_licenses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("finalized_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("license_days", sa.BigInteger(), nullable=False),
        sa.Column("assigned_amount", sa.BigInteger(), nullable=False),
        sa.Column("unassigned_amount", sa.BigInteger(), nullable=False),
        sa.Column("licenses_assigned", sa.Integer(), nullable=False),
        sa.Column("licenses_unassigned", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_invoices_partner_id_partners"),
        sa.PrimaryKeyConstraint("id", name="pk_invoices"),
        sa.UniqueConstraint("number", name="uq_invoices_number"),
        sa.UniqueConstraint("partner_id", "month", name="uq_invoices_partner_month"),
    )
    op.create_index("ix_invoices_partner_finalized", "invoices", ["partner_id", "finalized_at"])
    op.create_table(
        "invoice_lines",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("product_slug", sa.String(64), nullable=False),
        sa.Column("license_days", sa.BigInteger(), nullable=False),
        sa.Column("daily_price_micros", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("licenses_assigned", sa.Integer(), nullable=False),
        sa.Column("licenses_unassigned", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name="fk_invoice_lines_invoice_id_invoices"),
        sa.PrimaryKeyConstraint("invoice_id", "product_slug", name="pk_invoice_lines"),
    )
    op.create_table(
        "invoice_day_lines",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("holding_id", sa.String(32), nullable=False),
        sa.Column("license_key", sa.String(128), nullable=False),
        sa.Column("product_slug", sa.String(64), nullable=False),
        sa.Column("site", sa.String(255), nullable=True),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_invoice_day_lines_invoice_id_invoices"
        ),
        sa.PrimaryKeyConstraint("invoice_id", "position", name="pk_invoice_day_lines"),
    )


def downgrade() -> None:
    op.drop_table("invoice_day_lines")
    op.drop_table("invoice_lines")
    op.drop_index("ix_invoices_partner_finalized", table_name="invoices")
    op.drop_table("invoices")
