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


def server_problem(server: int, default: str | None, installed: str | None, host: str) -> str | None:
    """What keeps this server from hosting sparsesql, as an instruction; None when nothing does."""
    if server < MIN_SERVER:
        return f"PostgreSQL {server // 10000} at {host} is too old: sparsesql needs PostgreSQL 14 or newer"
    if default is None:
        return (
            f"the PostgreSQL server at {host} does not have pgvector: install pgvector >= 0.7 "
            f"(for example `apt install postgresql-{server // 10000}-pgvector`), "
            "or leave SPARSESQL_DSN unset to use the embedded server"
        )
    if installed is not None and _version(installed) < MIN_PGVECTOR:
        return (
            f"pgvector {installed} is installed in this database; sparsesql needs >= 0.7 (sparsevec): "
            "upgrade the package, then run `ALTER EXTENSION vector UPDATE`"
        )
    if installed is None and _version(default) < MIN_PGVECTOR:
        return f"the server at {host} offers pgvector {default}; sparsesql needs >= 0.7 (sparsevec): upgrade the pgvector package"
    return None


def check_server(conn: psycopg.Connection) -> None:
    """Fail with a ConfigError naming what to install when the server cannot host sparsesql."""
    row = conn.execute(
        "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    default, installed = row if row else (None, None)
    problem = server_problem(conn.info.server_version, default, installed, conn.info.host or "localhost")
    if problem:
        raise ConfigError(problem)


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
