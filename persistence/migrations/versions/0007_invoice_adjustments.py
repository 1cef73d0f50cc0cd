"""Invoice adjustments by staff: the reason an invoice was voided or marked uncollectible, and refunds.

Revision ID: 0007_invoice_adjustments
Revises: 0006_catalog_prices
"""

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0007_invoice_adjustments"
down_revision = "0006_catalog_prices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("status_reason", sa.String(500), nullable=True))
    op.create_table(
        "invoice_refunds",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_key", sa.String(128), nullable=False),
        sa.Column("request_key", sa.String(255), nullable=True),
        sa.Column("provider_refund_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("failure_message", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_invoice_refunds_invoice_id_invoices"
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_invoice_refunds_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_invoice_refunds"),
        sa.UniqueConstraint("provider_key", name="uq_invoice_refunds_provider_key"),
        sa.UniqueConstraint("invoice_id", "number", name="uq_invoice_refunds_invoice_number"),
    )


def downgrade() -> None:
    op.drop_table("invoice_refunds")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("status_reason")
