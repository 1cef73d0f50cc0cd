"""Access: every API token carries a role, may expire, and remembers when it was last used (to the
minute). Tokens made before roles existed become `admin` (partner) or `staff_admin` (staff).

Revision ID: 0008_access
Revises: 0006_catalog_prices
"""

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0008_access"
down_revision = "0007_invoice_adjustments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=True))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("last_used_at", UTCDateTime(), nullable=True))
    tokens = sa.table("api_tokens", sa.column("role", sa.String), sa.column("is_staff", sa.Boolean))
    op.execute(tokens.update().where(tokens.c.is_staff.is_(True)).values(role="staff_admin"))
    op.execute(tokens.update().where(tokens.c.is_staff.is_(False)).values(role="admin"))
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("role", existing_type=sa.String(20), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
        batch.drop_column("role")
