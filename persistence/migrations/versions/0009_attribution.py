"""Attribution: every event records its actor, a token (id, label, partner) or a system job; indexes
for the audit log. Events recorded before keep their token id, and get its label and partner from
`api_tokens`; those without a token stay without an actor (the API shows them as UNKNOWN).

Revision ID: 0009_attribution
Revises: 0008_access
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_attribution"
down_revision = "0008_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("actor_label", sa.String(200), nullable=True))
        batch.add_column(sa.Column("actor_partner_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("actor_job", sa.String(32), nullable=True))
    events = sa.table(
        "events",
        sa.column("actor_token_id", sa.String),
        sa.column("actor_label", sa.String),
        sa.column("actor_partner_id", sa.String),
    )
    tokens = sa.table(
        "api_tokens",
        sa.column("id", sa.String),
        sa.column("label", sa.String),
        sa.column("partner_id", sa.String),
    )
    of_actor = tokens.c.id == events.c.actor_token_id
    op.execute(
        events.update()
        .where(events.c.actor_token_id.is_not(None))
        .values(
            actor_label=sa.select(tokens.c.label).where(of_actor).scalar_subquery(),
            actor_partner_id=sa.select(tokens.c.partner_id).where(of_actor).scalar_subquery(),
        )
    )
    op.create_index("ix_events_partner_id", "events", ["partner_id", "id"])
    op.create_index("ix_events_actor_token", "events", ["actor_token_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_actor_token", table_name="events")
    op.drop_index("ix_events_partner_id", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("actor_job")
        batch.drop_column("actor_partner_id")
        batch.drop_column("actor_label")
