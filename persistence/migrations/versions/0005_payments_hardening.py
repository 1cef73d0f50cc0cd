"""Payments hardening: when an attempt was last sent and why it failed, which PaymentIntent paid each
invoice, and what was done with each webhook.

Revision ID: 0005_payments_hardening
Revises: 0004_payments
"""

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0005_payments_hardening"
down_revision = "0004_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_attempts") as batch:
        batch.add_column(sa.Column("sent_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("decline_code", sa.String(64), nullable=True))
        batch.add_column(sa.Column("failure_message", sa.String(500), nullable=True))
    # Attempts made before this revision were sent when they were created.
    op.execute("UPDATE payment_attempts SET sent_at = created_at")
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("outcome", sa.String(32), nullable=True))
        batch.add_column(sa.Column("detail", sa.String(500), nullable=True))
    op.create_table(
        "invoice_payments",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("payment_intent_id", sa.String(64), nullable=True),
        sa.Column("attempt_id", sa.String(32), nullable=True),
        sa.Column("paid_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_invoice_payments_invoice_id_invoices"
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["payment_attempts.id"], name="fk_invoice_payments_attempt_id_payment_attempts"
        ),
        sa.PrimaryKeyConstraint("invoice_id", name="pk_invoice_payments"),
    )
    # Invoices paid before this revision: the succeeded attempt names the PaymentIntent.
    op.execute(
        "INSERT INTO invoice_payments (invoice_id, payment_intent_id, attempt_id, paid_at) "
        "SELECT i.id, a.payment_intent_id, a.id, i.paid_at FROM invoices i "
        "LEFT JOIN payment_attempts a ON a.invoice_id = i.id AND a.status = 'succeeded' "
        "WHERE i.status = 'paid' AND i.paid_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("invoice_payments")
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("detail")
        batch.drop_column("outcome")
    with op.batch_alter_table("payment_attempts") as batch:
        batch.drop_column("failure_message")
        batch.drop_column("decline_code")
        batch.drop_column("sent_at")
