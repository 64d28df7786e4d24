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


def upgrade_in_subprocess(dsn: str) -> None:
    """Bring the catalog to head from a separate process.

    Alembic keeps its `context`/`op` proxies in module globals, so its commands cannot nest: a
    user's migration that needs the catalog (the first `op.create_collection` in a new database)
    runs ours in a child process, which commits on its own connection. The DSN travels in the
    environment, not on the command line, so a password never shows in the process list.
    """
    import os
    import subprocess
    import sys

    from sparsesql.errors import ConfigError

    done = subprocess.run(
        [sys.executable, "-m", "sparsesql.db.migrate"],
        env={**os.environ, "SPARSESQL_DSN": dsn},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ConfigError(f"could not install sparsesql's catalog: {done.stderr.strip().splitlines()[-1:] or done.returncode}")


if __name__ == "__main__":
    import os

    upgrade(os.environ["SPARSESQL_DSN"])
