"""Bearer tokens for the HTTP API, each standing for one PostgreSQL role.

A token is 32 random bytes shown once, when created; the table `sparsesql.http_tokens` keeps
only its SHA-256, so a copy of the database does not leak usable tokens. Only the server's own
(superuser) role reads the table: PUBLIC's rights are revoked when it is created. A request
with a token runs as the token's role (SET SESSION AUTHORIZATION on the server's connection), so
that role's GRANTs, `sparsesql grant` level and row-level security apply as on the wire.
"""

from __future__ import annotations

import hashlib
import secrets

import psycopg
from psycopg import sql

from sparsesql.errors import ConfigError

PREFIX = "ssq_"  # tokens say what they are (secret scanners match on it)
_TABLE = sql.SQL("sparsesql.http_tokens")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ensure(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, role name NOT NULL, sha256 text NOT NULL UNIQUE, "
                "created timestamptz NOT NULL DEFAULT now())"
            ).format(_TABLE)
        )
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(_TABLE))


def create(conn: psycopg.Connection, role: str, name: str | None = None) -> tuple[str, str]:
    """A new token for `role` (which must exist): (its name, the token itself)."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        raise ConfigError(f"role {role!r} does not exist: create it first (CREATE ROLE {role}; sparsesql grant {role})")
    _ensure(conn)
    token = PREFIX + secrets.token_urlsafe(32)
    name = name or f"{role}-{secrets.token_hex(3)}"
    try:
        with conn.transaction():
            conn.execute(sql.SQL("INSERT INTO {} (name, role, sha256) VALUES (%s, %s, %s)").format(_TABLE), (name, role, digest(token)))
    except psycopg.errors.UniqueViolation:
        raise ConfigError(f"a token named {name!r} exists already: revoke it or choose another --name") from None
    return name, token


def listed(conn: psycopg.Connection) -> list[tuple[str, str, object]]:
    """(name, role, created) of every token."""
    if conn.execute("SELECT to_regclass('sparsesql.http_tokens')").fetchone()[0] is None:
        return []
    return conn.execute(sql.SQL("SELECT name, role, created FROM {} ORDER BY created").format(_TABLE)).fetchall()


def revoke(conn: psycopg.Connection, name: str) -> bool:
    if conn.execute("SELECT to_regclass('sparsesql.http_tokens')").fetchone()[0] is None:
        return False
    with conn.transaction():
        return conn.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(_TABLE), (name,)).rowcount > 0


def role_of(conn: psycopg.Connection, token: str) -> str | None:
    """The role a token stands for, or None (unknown, revoked, or no token table yet)."""
    if not token.startswith(PREFIX) or conn.execute("SELECT to_regclass('sparsesql.http_tokens')").fetchone()[0] is None:
        return None
    row = conn.execute(sql.SQL("SELECT role FROM {} WHERE sha256 = %s").format(_TABLE), (digest(token),)).fetchone()
    return row[0] if row else None
