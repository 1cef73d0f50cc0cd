"""The estimate's indexes: the month's transferred holdings (to find the keys a partner held twice in a
month without a pass over the month) and each product's holdings in key order (to rank a line's
contested cents by walking the index instead of sorting the month); persistence/billing.py.

Revision ID: 0013_estimate
Revises: 0012_partner_webhooks
"""

from alembic import op

revision = "0013_estimate"
down_revision = "0012_partner_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_licenses_partner_id_transferred_days",
        "licenses",
        ["partner_id", "state", "last_billed_day", "first_billed_day", "product_slug", "key"],
    )
    # Bytewise on PostgreSQL, as the estimate ranks keys (Python's order; SQLite's default already is).
    op.create_index(
        "ix_licenses_partner_id_product_key",
        "licenses",
        ["partner_id", "product_slug", "key", "id", "first_billed_day", "last_billed_day", "site"],
        postgresql_ops={"key": 'COLLATE "C"', "id": 'COLLATE "C"'},
    )


def downgrade() -> None:
    op.drop_index("ix_licenses_partner_id_product_key", table_name="licenses")
    op.drop_index("ix_licenses_partner_id_transferred_days", table_name="licenses")
