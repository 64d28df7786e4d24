"""Alembic environment for sparsesql's catalog history.

Runs online only, under an advisory lock so two processes starting together do not race to
create the catalog. The version table lives in the `sparsesql` schema.
"""

from alembic import context
from sqlalchemy import text

from sparsesql.db.connect import resolve_dsn
from sparsesql.db.migrate import engine_for

config = context.config


def run_migrations_online() -> None:
    dsn = config.attributes.get("dsn") or resolve_dsn(config.get_main_option("sqlalchemy.url") or None)
    engine = engine_for(dsn)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            version_table="alembic_version",
            version_table_schema="sparsesql",
            transactional_ddl=True,
        )
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('sparsesql.catalog'))"))
            connection.execute(text("CREATE SCHEMA IF NOT EXISTS sparsesql"))
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("sparsesql's catalog migrations run online only (they need the server's pgvector)")
run_migrations_online()
