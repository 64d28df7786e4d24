"""The psycopg connection under a SQLAlchemy session, as the engine's executor expects it.

A sync `Session` holds a psycopg `Connection`: it is used as it is. Code run by
`AsyncSession.run_sync` holds a psycopg `AsyncConnection` inside SQLAlchemy's greenlet; the view
below gives it the blocking `execute`/`fetchall`/`transaction` interface by awaiting each call
with SQLAlchemy's `await_only`, so the planner and executor are written once for both.
Either way pgvector's types are registered on first use, and every statement runs in the
session's own transaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg
from pgvector.psycopg import register_vector, register_vector_async
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import URL
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only

from sparsesql.db.catalog import catalog_is_current, conn_dsn
from sparsesql.db.migrate import upgrade
from sparsesql.errors import ConfigError


class _Cursor:
    def __init__(self, cursor: psycopg.AsyncCursor) -> None:
        self._cursor = cursor

    def fetchall(self) -> list[tuple]:
        return await_only(self._cursor.fetchall())

    def fetchone(self) -> tuple | None:
        return await_only(self._cursor.fetchone())


class AwaitingConnection:
    """A blocking face over an `AsyncConnection`, valid only inside `AsyncSession.run_sync`."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self._conn = conn

    def execute(self, query, params=None, *, binary: bool = False) -> _Cursor:
        return _Cursor(await_only(self._conn.execute(query, params, binary=binary)))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        block = self._conn.transaction()
        await_only(block.__aenter__())
        try:
            yield
        except BaseException as exc:
            await_only(block.__aexit__(type(exc), exc, exc.__traceback__))
            raise
        await_only(block.__aexit__(None, None, None))

    def __getattr__(self, name: str) -> object:
        # adapters, info, pgconn, connection: what psycopg's sql.Composable.as_string reads.
        return getattr(self._conn, name)


def _has_vector(conn: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    return conn.adapters.types.get("vector") is not None


def session_connection(session: Session, *, install: bool = False) -> psycopg.Connection | AwaitingConnection:
    """The session's psycopg connection (checked out, in its transaction), pgvector-ready.

    With `install`, a database without sparsesql's catalog gets it first (committed on a
    connection of its own, as `sparsesql migrate` would), so creating a collection from the ORM
    works on a new database.
    """
    raw = session.connection().connection.driver_connection
    if not isinstance(raw, (psycopg.Connection, psycopg.AsyncConnection)):
        raise ConfigError(
            f"sparsesql's ORM needs SQLAlchemy's psycopg driver (postgresql+psycopg://), not {type(raw).__name__}"
        )
    if install and isinstance(raw, psycopg.Connection) and not catalog_is_current(raw):
        upgrade(conn_dsn(raw))
    try:
        if isinstance(raw, psycopg.AsyncConnection):
            if not _has_vector(raw):
                await_only(register_vector_async(raw))
            return AwaitingConnection(raw)
        if not _has_vector(raw):
            register_vector(raw)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"this database has no pgvector types ({exc}): install sparsesql in it first "
            "(`sparsesql migrate`, sparsesql.connect, or op.install_extension() in a migration)"
        ) from exc
    return raw


def database_url(dsn: str | None = None, *, asyncio: bool = False) -> URL:
    """A SQLAlchemy URL (psycopg driver) for `dsn`, else SPARSESQL_DSN, else the embedded server,
    resolved as `sparsesql.connect` does; Unix-socket DSNs included."""
    from sparsesql.db.connect import resolve_dsn

    parts = conninfo_to_dict(resolve_dsn(dsn))
    host = parts.pop("host", None)
    port = parts.pop("port", None)
    query = {k: str(v) for k, v in parts.items() if k not in ("user", "password", "dbname")}
    if host and str(host).startswith("/"):
        query["host"] = str(host)
        host = None
    return URL.create(
        "postgresql+psycopg_async" if asyncio else "postgresql+psycopg",
        username=parts.get("user"),
        password=parts.get("password") or None,
        host=host,
        port=int(port) if port else None,
        database=parts.get("dbname"),
        query=query,
    )
