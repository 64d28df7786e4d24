"""Connections: where the DSN comes from, what the server must have, and psycopg's set-up.

The server needs PostgreSQL >= 14 and pgvector >= 0.7 (the first with `sparsevec`); a server
that lacks either gets an error that names what is missing and how to add it, before any
collection table is touched.
"""

from __future__ import annotations

import os

import psycopg
from pgvector.psycopg import register_vector

from sparsesql.errors import ConfigError

MIN_SERVER = 140000
MIN_PGVECTOR = (0, 7)


def resolve_dsn(dsn: str | None = None) -> str:
    """An explicit DSN, else `SPARSESQL_DSN`, else the embedded server (started on demand)."""
    if dsn:
        return dsn
    if os.environ.get("SPARSESQL_DSN"):
        return os.environ["SPARSESQL_DSN"]
    from sparsesql.db import embedded

    return embedded.start()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def check_server(conn: psycopg.Connection) -> None:
    """Fail with a ConfigError naming what to install when the server cannot host sparsesql."""
    server = conn.info.server_version
    if server < MIN_SERVER:
        raise ConfigError(
            f"PostgreSQL {server // 10000} is too old: sparsesql needs PostgreSQL 14 or newer"
        )
    row = conn.execute(
        "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    host = conn.info.host or "localhost"
    if row is None:
        raise ConfigError(
            f"the PostgreSQL server at {host} does not have pgvector: install pgvector >= 0.7 "
            f"(for example `apt install postgresql-{server // 10000}-pgvector`), "
            "or use the embedded server by leaving SPARSESQL_DSN unset"
        )
    default, installed = row
    if installed is not None and _version(installed) < MIN_PGVECTOR:
        raise ConfigError(
            f"pgvector {installed} is installed in this database; sparsesql needs >= 0.7 "
            "(sparsevec): run `ALTER EXTENSION vector UPDATE` after upgrading the package"
        )
    if installed is None and _version(default) < MIN_PGVECTOR:
        raise ConfigError(
            f"the server's pgvector is {default}; sparsesql needs >= 0.7 (sparsevec): upgrade the pgvector package"
        )


def open_connection(dsn: str) -> psycopg.Connection:
    """Connect in autocommit mode (writes use explicit transactions) with pgvector's types."""
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot connect to PostgreSQL ({exc})".strip()) from exc
    try:
        check_server(conn)
        from sparsesql.db.catalog import ensure_catalog

        ensure_catalog(conn, dsn)
        register_vector(conn)
    except BaseException:
        conn.close()
        raise
    return conn
