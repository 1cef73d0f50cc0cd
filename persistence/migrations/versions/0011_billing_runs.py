"""Billing runs (a month close carried out by background jobs, counted per partner) and, on PostgreSQL,
the job engine's own tables: procrastinate's schema, as the installed procrastinate ships it.

Revision ID: 0011_billing_runs
Revises: 0008_access
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.util import await_only

from persistence.types import UTCDateTime

revision = "0011_billing_runs"
down_revision = "0010_billable_spans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("started_by", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_billing_runs"),
    )
    # One unfinished run per month: a second start finds the running one.
    op.create_index(
        "uq_billing_runs_running_month",
        "billing_runs",
        ["month"],
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index("ix_billing_runs_started_at", "billing_runs", ["started_at"])
    op.create_table(
        "billing_run_partners",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("close_result", sa.String(16), nullable=True),
        sa.Column("charge_result", sa.String(16), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["billing_runs.id"], name="fk_billing_run_partners_run_id_billing_runs"
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_billing_run_partners_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("run_id", "partner_id", name="pk_billing_run_partners"),
    )
    op.create_index("ix_billing_run_partners_run_state", "billing_run_partners", ["run_id", "state"])
    if op.get_bind().dialect.name == "postgresql":
        _run_script(_procrastinate_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _run_script(DROP_PROCRASTINATE)
    op.drop_index("ix_billing_run_partners_run_state", table_name="billing_run_partners")
    op.drop_table("billing_run_partners")
    op.drop_index("ix_billing_runs_started_at", table_name="billing_runs")
    op.drop_index("uq_billing_runs_running_month", table_name="billing_runs")
    op.drop_table("billing_runs")


def _procrastinate_schema() -> str:
    from procrastinate.schema import SchemaManager

    return SchemaManager.get_schema()


def _run_script(script: str) -> None:
    """A multi-statement script (functions with `;` in their bodies) through asyncpg's simple query
    protocol, inside the migration's transaction."""
    raw = op.get_bind().connection.dbapi_connection
    await_only(raw.driver_connection.execute(script))


DROP_PROCRASTINATE = """
DO $$
DECLARE item record;
BEGIN
    FOR item IN SELECT tablename FROM pg_tables
                WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate\\_%' LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', item.tablename);
    END LOOP;
    FOR item IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%' LOOP
        EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', item.signature);
    END LOOP;
    FOR item IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%'
                  AND t.typtype IN ('e', 'c') LOOP
        EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', item.typname);
    END LOOP;
END
$$;
"""
