"""Runs sparsesql's own Alembic history (the catalog) against a DSN.

Our history keeps its version table in the `sparsesql` schema, so a user's own Alembic project
in the same database (with its `public.alembic_version`) is never confused with ours.
"""

from __future__ import annotations

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config

from sparsesql.resources import resource_path


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resource_path("migrations")))
    config.attributes["dsn"] = dsn
    return config


def engine_for(dsn: str) -> sqlalchemy.Engine:
    """A SQLAlchemy engine over psycopg 3 that accepts any libpq DSN, Unix sockets included."""
    return sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=sqlalchemy.pool.NullPool
    )


def upgrade(dsn: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(dsn), revision)


def downgrade(dsn: str, revision: str) -> None:
    command.downgrade(alembic_config(dsn), revision)
