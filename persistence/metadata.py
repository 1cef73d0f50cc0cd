"""The one MetaData every table registers on; Alembic migrations are checked against it."""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def managed_here(name: str | None, type_: str, parent_names: object) -> bool:
    """Whether Alembic compares this object with the metadata: the job engine's own tables
    (procrastinate_*, created by migration 0011 on PostgreSQL) are its, not ours."""
    return not (type_ == "table" and (name or "").startswith("procrastinate_"))
