"""Writes through a SQLAlchemy session: collections from mapped classes, documents from instances.

Both run on the session's connection inside its transaction (a savepoint each), so they commit or
roll back with the rest of the unit of work. Documents go through sparsesql's write path
(exec/write.py), which keeps postings, vectors, statistics and the kNN graph in step; that path
streams rows with COPY, which only a sync Session offers.
"""

from __future__ import annotations

from typing import Iterable

import psycopg
from sqlalchemy.orm import Session

from sparsesql.db import schema
from sparsesql.db.ingest_report import IngestReport
from sparsesql.errors import CheckError
from sparsesql.exec import write
from sparsesql.exec.run import database_error
from sparsesql.orm.connection import AwaitingConnection, session_connection
from sparsesql.orm.model import Document, collection_spec, mapped_collection


def create_collection(session: Session, entity: type, *, if_not_exists: bool = False) -> None:
    """CREATE COLLECTION from a mapped class: its columns are the fields, `__collection_options__` the options."""
    name, fields, options = collection_spec(entity)
    schema.create_collection(session_connection(session, install=True), name, fields, options, if_not_exists=if_not_exists)


def drop_collection(session: Session, entity: type, *, if_exists: bool = False) -> bool:
    return schema.drop_collection(session_connection(session, install=True), mapped_collection(entity), if_exists=if_exists)


def add(
    session: Session,
    documents: Iterable[Document],
    *,
    vectors: dict[str, list[float]] | None = None,
    sparse: dict[str, dict] | None = None,
) -> IngestReport:
    """Add or replace documents given as (transient) instances of one mapped class.

    `vectors` maps ids to dense vectors for collections without a model (dense => 'none');
    `sparse` maps ids to the learned sparse vectors a document brings (its `sparse` key in
    Collection.add: {token: weight}, or {field: {token: weight}}).
    """
    docs = list(documents)
    if not docs:
        return IngestReport()
    entity = type(docs[0])
    if any(type(d) is not entity for d in docs):
        raise CheckError("add() takes instances of one mapped class at a time")
    conn = session_connection(session)
    if isinstance(conn, AwaitingConnection):
        raise CheckError("add() needs a sync Session (ingest streams with COPY); use sparsesql.Collection.add from async code")
    name, fields, _ = collection_spec(entity)
    rows = []
    for d in docs:
        row = {"id": d.id, "metadata": d.meta or {}, **{f: getattr(d, f) for f in fields}}
        if vectors and d.id in vectors:
            row["vector"] = vectors[d.id]
        if sparse and d.id in sparse:
            row["sparse"] = sparse[d.id]
        rows.append(row)
    try:
        return write.add(conn, schema.require_collection(conn, name), rows)
    except psycopg.Error as exc:
        raise database_error(exc, "ingest") from exc
