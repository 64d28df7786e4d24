"""Every write to a collection's documents, with the upkeep of what is built over them.

Storage (db/ingest.py) writes rows, postings, vectors and statistics; the kNN graph
(graph/build.py) is a retrieval structure over those rows. This module sits above both, in exec/
beside run.py (which executes reads), because a write is execution too: `Collection.add` and
`.delete`, the ORM and the dialect's INSERT and DELETE all come through here, so storage never
imports retrieval and no door can write without keeping the graph current. Ingest runs the
graph's hooks inside each batch's transaction, so a batch and its edges stay all or nothing.
"""

from __future__ import annotations

from typing import Iterable

import psycopg

from sparsesql.db import ingest, ingest_remove
from sparsesql.db.catalog import CollectionInfo
from sparsesql.db.ingest_report import IngestReport, Upkeep
from sparsesql.errors import IngestError
from sparsesql.exec import remote
from sparsesql.graph import build as graph
from sparsesql.lang import ast
from sparsesql.plan.sql import where_sql


GRAPH_UPKEEP = Upkeep(added=graph.connect, removed=graph.forget)


def add(
    conn: psycopg.Connection, info: CollectionInfo, docs: Iterable[dict], *, batch_size: int | None = None, progress: bool = False,
    **options
) -> IngestReport:
    """Add or update documents; each batch is its own transaction (a savepoint inside the caller's).
    On a sparsesql server's connection they travel as the dialect's INSERT, for the server to write.
    `options` are ingest.add's (on_error, total, numbered, bulk)."""
    if remote.is_server(conn):
        if options.get("bulk"):
            raise IngestError("a bulk load writes through a connection to PostgreSQL itself; a sparsesql server's "
                              "connection takes documents as INSERT statements (connect with the database's DSN)")
        if options.get("numbered"):
            docs = (doc for _, doc in docs)
        return remote.insert(conn, info, docs, batch_size=batch_size or ingest.DEFAULT_BATCH)
    return ingest.add(conn, info, docs, upkeep=GRAPH_UPKEEP, batch_size=batch_size, progress=progress, **options)


def insert(conn: psycopg.Connection, info: CollectionInfo, docs: list[dict]) -> IngestReport:
    """Add or update documents all or none: one statement's rows, one transaction around every batch."""
    with conn.transaction():
        return add(conn, info, docs)


def delete(conn: psycopg.Connection, info: CollectionInfo, ids: Iterable[str]) -> int:
    """Delete documents by external id in one transaction; returns how many existed."""
    if remote.is_server(conn):
        return remote.delete(conn, info, ids)
    return ingest_remove.delete(conn, info, ids, upkeep=GRAPH_UPKEEP)


def delete_where(conn: psycopg.Connection, info: CollectionInfo, where: ast.Predicate | None, params: dict,
                 kinds: dict[ast.Operand, str]) -> int:
    """Delete the documents a checked WHERE matches (every document without one), compiled as
    SELECT's filter is (`kinds`: its operands' kinds, as the checker found them); returns how many went."""
    condition, bound = where_sql(info, where, params, kinds)
    return ingest_remove.delete_where(conn, info, condition, bound, upkeep=GRAPH_UPKEEP)
