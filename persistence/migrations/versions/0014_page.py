"""Each partner's number of license holdings, kept by the database: `licenses(first:) { totalCount }` of
an unfiltered list reads it instead of counting the partner's rows (persistence/licenses.py).

Triggers keep it, so every insert and delete counts, whichever code path sends it (use cases, seeds,
COPY); an increment updates the partner's row, so concurrent writers of one partner take turns on its
row lock (PostgreSQL) or the database's write lock (SQLite) and none is lost. On PostgreSQL the
insert and delete triggers run once per statement over its transition table (a bulk insert is one
update per partner); SQLite has row triggers only.

Revision ID: 0014_page
Revises: 0013_estimate
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_page"
down_revision = "0013_estimate"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER licenses_counted_on_insert AFTER INSERT ON licenses BEGIN
        UPDATE partners SET license_count = license_count + 1 WHERE id = NEW.partner_id;
    END""",
    """CREATE TRIGGER licenses_counted_on_delete AFTER DELETE ON licenses BEGIN
        UPDATE partners SET license_count = license_count - 1 WHERE id = OLD.partner_id;
    END""",
    """CREATE TRIGGER licenses_counted_on_move AFTER UPDATE OF partner_id ON licenses
    WHEN NEW.partner_id <> OLD.partner_id BEGIN
        UPDATE partners SET license_count = license_count - 1 WHERE id = OLD.partner_id;
        UPDATE partners SET license_count = license_count + 1 WHERE id = NEW.partner_id;
    END""",
]

# Per statement: the rows it inserted (or deleted) counted per partner, one update per partner.
_POSTGRESQL_FUNCTIONS = [
    """CREATE FUNCTION licenses_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE partners SET license_count = partners.license_count + added.holdings
        FROM (SELECT partner_id, count(*) AS holdings FROM new_rows GROUP BY partner_id) AS added
        WHERE partners.id = added.partner_id;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION licenses_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE partners SET license_count = partners.license_count - removed.holdings
        FROM (SELECT partner_id, count(*) AS holdings FROM old_rows GROUP BY partner_id) AS removed
        WHERE partners.id = removed.partner_id;
        RETURN NULL;
    END $$""",
    # Per row, and only for a row whose partner changed (none does today: a transfer is a new holding).
    """CREATE FUNCTION licenses_count_moved() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE partners SET license_count = license_count - 1 WHERE id = OLD.partner_id;
        UPDATE partners SET license_count = license_count + 1 WHERE id = NEW.partner_id;
        RETURN NULL;
    END $$""",
]
_POSTGRESQL_TRIGGERS = [
    """CREATE TRIGGER licenses_counted_on_insert AFTER INSERT ON licenses
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION licenses_count_inserted()""",
    """CREATE TRIGGER licenses_counted_on_delete AFTER DELETE ON licenses
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION licenses_count_deleted()""",
    """CREATE TRIGGER licenses_counted_on_move AFTER UPDATE OF partner_id ON licenses FOR EACH ROW
    WHEN (OLD.partner_id IS DISTINCT FROM NEW.partner_id) EXECUTE FUNCTION licenses_count_moved()""",
]


def upgrade() -> None:
    op.add_column("partners", sa.Column("license_count", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE partners SET license_count = "
        "(SELECT count(*) FROM licenses WHERE licenses.partner_id = partners.id)"
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in [*_POSTGRESQL_FUNCTIONS, *_POSTGRESQL_TRIGGERS]:
            op.execute(statement)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in ("licenses_counted_on_insert", "licenses_counted_on_delete", "licenses_counted_on_move"):
        op.execute(f"DROP TRIGGER {name}" + (" ON licenses" if postgresql else ""))
    if postgresql:
        for function in ("licenses_count_inserted", "licenses_count_deleted", "licenses_count_moved"):
            op.execute(f"DROP FUNCTION {function}()")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("license_count")
