"""Storage: SQLAlchemy 2 (async, Core) tables, repositories, the unit of work and Alembic migrations."""
