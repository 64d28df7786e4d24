"""Roles that may read, or read and write, sparsesql's collections.

`reader` gets USAGE on schema sparsesql and SELECT on its tables, now and for tables created
later (ALTER DEFAULT PRIVILEGES, for tables the granting role creates): it can run every query
and EXPLAIN, and nothing else. `writer` also gets INSERT, UPDATE, DELETE and the identity
sequences, which ingest, delete and the graph's upkeep need; creating and dropping collections
stays with the tables' owner. The role must exist (CREATE ROLE is the administrator's choice of
login, password and inheritance, not ours).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from sparsesql.errors import CheckError

_PRIVILEGES = {"reader": "SELECT", "writer": "SELECT, INSERT, UPDATE, DELETE"}


def grant(conn: psycopg.Connection, role: str, access: str) -> None:
    if access not in _PRIVILEGES:
        raise CheckError(f"access {access!r} is not one of: {', '.join(_PRIVILEGES)}")
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        raise CheckError(f"role {role!r} does not exist; create it first (CREATE ROLE {role} LOGIN PASSWORD '...')")
    who, what = sql.Identifier(role), sql.SQL(_PRIVILEGES[access])
    with conn.transaction():
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA sparsesql TO {}").format(who))
        conn.execute(sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA sparsesql TO {}").format(what, who))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA sparsesql GRANT {} ON TABLES TO {}").format(what, who))
        if access == "writer":
            conn.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA sparsesql TO {}").format(who))
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA sparsesql GRANT USAGE, SELECT ON SEQUENCES TO {}").format(who))
