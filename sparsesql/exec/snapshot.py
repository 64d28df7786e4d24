"""One search's snapshot: a REPEATABLE READ, READ ONLY transaction that costs no round trip.

A search reads the catalog, then runs its candidate and fetch statements; all of them must see
the same committed state (a document replaced by a concurrent writer is wholly old or wholly new,
and the catalog's statistics match the postings they score). Opening and closing that
transaction as statements of their own cost two of a sparse search's five round trips. Here
BEGIN travels in one pipeline with the first statement and COMMIT with the last, so a search
costs one round trip per statement it needs, and nothing for its transaction.

On a connection already inside a transaction (an ORM session's), statements run in it as they
are: its owner chose the isolation and ends it. An asyncio connection (seen through the ORM's
blocking view) has no pipeline here, so its BEGIN and COMMIT go as statements of their own.
"""

from __future__ import annotations

import psycopg
from psycopg import pq

BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"


class Snapshot:
    """Executes a search's statements; use as a context manager around the whole search."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.owned = conn.info.transaction_status == pq.TransactionStatus.IDLE
        self.in_callers_transaction = not self.owned
        self.begun = not self.owned  # a caller's transaction is already open

    def execute(self, query, params: object = None, *, binary: bool = False, last: bool = False,
                prelude: list[tuple[object, object]] | None = None) -> psycopg.Cursor:
        """Run one statement; `last` commits the snapshot in the same round trip, and `prelude`
        (statements and their parameters, such as transaction-local settings) goes just before it."""
        before = ([(BEGIN, None)] if not self.begun else []) + list(prelude or [])
        commit = last and self.owned
        self.begun = True  # even if this round trip fails: __exit__ then rolls back what it opened
        if (before or commit) and isinstance(self.conn, psycopg.Connection):
            cursor = self.conn.cursor(binary=binary)
            with self.conn.pipeline():
                for statement, values in before:
                    self.conn.execute(statement, values)
                cursor.execute(query, params)
                if commit:
                    self.conn.execute("COMMIT")
        else:
            for statement, values in before:
                self.conn.execute(statement, values)
            cursor = self.conn.execute(query, params, binary=binary)
            if commit:
                self.conn.execute("COMMIT")
        if commit:
            self.owned = False
        return cursor

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Commit what is still open, or roll back after an error (a lost connection rolls back
        on the server by itself)."""
        if not (self.owned and self.begun):
            return
        self.owned = False
        if self.conn.info.transaction_status == pq.TransactionStatus.IDLE:
            return
        try:
            self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
        except psycopg.Error:
            if kind is None:
                raise
