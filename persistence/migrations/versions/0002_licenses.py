"""Licenses: account standing on partners, license holdings and transfers.

Revision ID: 0002_licenses
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0002_licenses"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

LIVE = "state IN ('issued', 'assigned')"
ASSIGNED = "state = 'assigned'"
PENDING = "status = 'pending'"


def upgrade() -> None:
    op.add_column(
        "partners",
        sa.Column("standing", sa.String(32), server_default="no_payment_method", nullable=False),
    )
    op.add_column("partners", sa.Column("standing_since", UTCDateTime(), nullable=True))
    op.add_column("partners", sa.Column("standing_reason_invoice_id", sa.String(32), nullable=True))
    op.create_table(
        "licenses",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("product_slug", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("site", sa.String(255), nullable=True),
        sa.Column("held_from", UTCDateTime(), nullable=False),
        sa.Column("held_until", UTCDateTime(), nullable=True),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("assigned_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("transferred_at", UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_licenses_partner_id_partners"),
        sa.ForeignKeyConstraint(
            ["product_slug"], ["products.slug"], name="fk_licenses_product_slug_products"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_licenses"),
    )
    op.create_index(
        "uq_licenses_live_key",
        "licenses",
        ["key"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )
    op.create_index(
        "uq_licenses_product_site",
        "licenses",
        ["product_slug", "site"],
        unique=True,
        sqlite_where=sa.text(ASSIGNED),
        postgresql_where=sa.text(ASSIGNED),
    )
    op.create_index("ix_licenses_partner_id_held_from", "licenses", ["partner_id", "held_from"])
    op.create_index("ix_licenses_partner_id_held_until", "licenses", ["partner_id", "held_until"])
    op.create_index("ix_licenses_partner_id_issued_at", "licenses", ["partner_id", "issued_at", "id"])
    op.create_index("ix_licenses_partner_id_key", "licenses", ["partner_id", "key"])
    op.create_table(
        "license_transfers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("license_id", sa.String(32), nullable=False),
        sa.Column("from_partner_id", sa.String(32), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("accepted_by_partner_id", sa.String(32), nullable=True),
        sa.Column("accepted_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name="fk_license_transfers_license_id_licenses"
        ),
        sa.ForeignKeyConstraint(
            ["from_partner_id"], ["partners.id"], name="fk_license_transfers_from_partner_id_partners"
        ),
        sa.ForeignKeyConstraint(
            ["accepted_by_partner_id"],
            ["partners.id"],
            name="fk_license_transfers_accepted_by_partner_id_partners",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_license_transfers"),
        sa.UniqueConstraint("code_hash", name="uq_license_transfers_code_hash"),
    )
    op.create_index(
        "uq_license_transfers_pending_license",
        "license_transfers",
        ["license_id"],
        unique=True,
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("uq_license_transfers_pending_license", table_name="license_transfers")
    op.drop_table("license_transfers")
    for index in (
        "ix_licenses_partner_id_key",
        "ix_licenses_partner_id_issued_at",
        "ix_licenses_partner_id_held_until",
        "ix_licenses_partner_id_held_from",
        "uq_licenses_product_site",
        "uq_licenses_live_key",
    ):
        op.drop_index(index, table_name="licenses")
    op.drop_table("licenses")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("standing_reason_invoice_id")
        batch.drop_column("standing_since")
        batch.drop_column("standing")
