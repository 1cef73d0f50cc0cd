"""Payments: Stripe customers, mirrored cards, charge attempts, received webhooks, dunning.

Revision ID: 0004_payments
Revises: 0003_billing
"""

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0004_payments"
down_revision = "0003_billing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_customers",
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_stripe_customers_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("partner_id", name="pk_stripe_customers"),
        sa.UniqueConstraint("customer_id", name="uq_stripe_customers_customer_id"),
    )
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("stripe_payment_method_id", sa.String(64), nullable=False),
        sa.Column("brand", sa.String(32), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_payment_methods_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_methods"),
        sa.UniqueConstraint("stripe_payment_method_id", name="uq_payment_methods_stripe_payment_method_id"),
        sa.UniqueConstraint("partner_id", "position", name="uq_payment_methods_partner_position"),
    )
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("payment_method_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_intent_id", sa.String(64), nullable=True),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_payment_attempts_invoice_id_invoices"
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_payment_attempts_partner_id_partners"
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name="fk_payment_attempts_payment_method_id_payment_methods",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_attempts"),
        sa.UniqueConstraint("idempotency_key", name="uq_payment_attempts_idempotency_key"),
        sa.UniqueConstraint("invoice_id", "number", name="uq_payment_attempts_invoice_number"),
    )
    op.create_index("ix_payment_attempts_payment_intent", "payment_attempts", ["payment_intent_id"])
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_events"),
    )
    op.create_table(
        "invoice_dunning",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("past_due_since", UTCDateTime(), nullable=False),
        sa.Column("retries_done", sa.Integer(), nullable=False),
        sa.Column("licenses_revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_invoice_dunning_invoice_id_invoices"
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_invoice_dunning_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("invoice_id", name="pk_invoice_dunning"),
    )


def downgrade() -> None:
    op.drop_table("invoice_dunning")
    op.drop_table("webhook_events")
    op.drop_index("ix_payment_attempts_payment_intent", table_name="payment_attempts")
    op.drop_table("payment_attempts")
    op.drop_table("payment_methods")
    op.drop_table("stripe_customers")
