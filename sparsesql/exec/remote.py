"""Dialect statements and writes sent to a `sparsesql serve`, instead of compiled here.

A connection whose server reports the `sparsesql_version` parameter is a sparsesql server: the
Python API and the ORM then send it the dialect's text with bound parameters, so the server's
encoders and memory tier answer (one copy for every client process) and the rows and scores
are the ones it gives every other client. `:name` placeholders become positional parameters;
an error comes back as the sparsesql error it was on the server, its position mapped back to
the text the caller wrote. Documents are written with the dialect's INSERT (the server has no
COPY), deletions with its DELETE.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Iterable

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from sparsesql import errors
from sparsesql.db.catalog import CollectionInfo
from sparsesql.db.ingest_report import IngestReport
from sparsesql.exec.row import Row
from sparsesql.lang.statements import tokens

BATCH_ROWS = 200
_CHECK_STATES = {"42P01", "42703", "22023", "42P02", "42804"}


def is_server(conn: psycopg.Connection) -> bool:
    info = getattr(conn, "info", None)
    return info is not None and info.parameter_status("sparsesql_version") is not None


def _positional(text: str) -> tuple[str, list[str], list[int]]:
    """(psycopg query, parameter names in order, server offset -> caller offset)."""
    marks = {}
    toks = list(tokens(text))
    for prev, colon, word in zip([None, *toks], toks, toks[1:] + [None]):
        if colon.text == ":" and word is not None and word.at == colon.at + 1 and not word.quoted and word.text[:1] != "$":
            if prev is None or not (prev.text == ":" and prev.at == colon.at - 1):
                marks[colon.at] = text[word.at:word.at + len(word.text)]
    query, names, back = [], [], []
    i = 0
    while i < len(text):
        if i in marks:
            name = marks[i]
            names.append(name)
            placeholder = f"${len(names)}"
            query.append("%s")
            back.extend([i] * len(placeholder))
            i += 1 + len(name)
            continue
        query.append("%%" if text[i] == "%" else text[i])
        back.append(i)
        i += 1
    return "".join(query), names, back


def _value(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.astype(float).tolist()
    if isinstance(value, dict):
        return Jsonb(value)
    return value


def _error(exc: psycopg.Error, text: str, back: list[int]) -> errors.Error:
    diag = exc.diag
    message = diag.message_primary or str(exc)
    state = exc.sqlstate or ""
    kind: type[errors.Error]
    if state == "42601":
        kind = errors.QuerySyntaxError
    elif state == "22P02" or message.startswith("parameter "):
        kind = errors.ParameterError
    elif state in _CHECK_STATES:
        kind = errors.CheckError
    else:
        return errors.DatabaseError(f"the sparsesql server refused the statement: {message} (SQLSTATE {state})")
    if diag.statement_position:
        server_at = int(diag.statement_position) - 1
        at = back[server_at] if 0 <= server_at < len(back) else len(text)
        line, column = errors.position(text, at)
        return kind(message, line=line, column=column, query=text)
    return kind(message)


def run(conn: psycopg.Connection, text: str, params: dict) -> list[Row]:
    """One dialect statement on the server; its rows, as `Database.query` returns them."""
    query, names, back = _positional(text)
    missing = [n for n in names if n not in params]
    if missing:
        given = ", ".join(f":{k}" for k in sorted(params)) or "none"
        raise errors.ParameterError(f"parameter :{missing[0]} is not bound (bound: {given})")
    try:
        cursor = conn.execute(query, [_value(params[n]) for n in names] if names else None)
    except psycopg.Error as exc:
        raise _error(exc, text, back) from None
    if cursor.description is None:
        return []
    columns = [c.name for c in cursor.description]
    if columns == ["QUERY PLAN"]:
        return [Row({"plan": r[0]}) for r in cursor.fetchall()]
    return [Row(dict(zip(columns, r))) for r in cursor.fetchall()]


def insert(conn: psycopg.Connection, info: CollectionInfo, docs: Iterable[dict], *, batch_size: int = 500) -> IngestReport:
    """Documents as the dialect's INSERT, rows grouped by the keys they carry. Each `batch_size`
    documents are one transaction, as ingest's batches are, however many statements their keys
    split them into: a refused document leaves none of its batch written."""
    if batch_size < 1:
        raise errors.IngestError(f"batch_size must be at least 1, got {batch_size}")
    report = IngestReport()
    fields = [f.name for f in info.fields]
    numbered = enumerate(docs, 1)
    while batch := list(islice(numbered, batch_size)):
        pending: dict[tuple[str, ...], list[tuple[int, dict]]] = {}
        for position, doc in batch:
            if not isinstance(doc, dict):
                raise errors.IngestError(f"document {position}: a document must be a dict, got {type(doc).__name__}")
            keys = tuple(k for k in ("id", *fields, "metadata", "vector", "sparse") if k in doc)
            pending.setdefault(keys, []).append((position, doc))
        with conn.transaction():
            for keys, rows in pending.items():
                for start in range(0, len(rows), BATCH_ROWS):
                    report += _insert_batch(conn, info, keys, rows[start : start + BATCH_ROWS])
    return report


# The server names a refused row by its place in one INSERT; the caller knows it by its place in add().
_ROW = re.compile(r"^row (\d+)\b")


def _insert_batch(conn: psycopg.Connection, info: CollectionInfo, keys: tuple[str, ...], rows: list[tuple[int, dict]]) -> IngestReport:
    batch = [doc for _, doc in rows]
    row = sql.SQL("({})").format(sql.SQL(", ").join([sql.Placeholder()] * len(keys)))
    query = sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
        sql.Identifier(info.name),
        sql.SQL(", ").join(sql.Identifier("embedding" if k == "vector" else k) for k in keys),
        sql.SQL(", ").join([row] * len(batch)),
    )
    values = [_value(str(d[k]) if k == "id" else d[k]) for d in batch for k in keys]
    ids = list({str(d.get("id")) for d in batch})
    try:
        with conn.transaction():
            known = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE id = ANY(%s)").format(info.table("docs")), (ids,)
            ).fetchone()[0]
            cursor = conn.execute(query, values)
    except psycopg.Error as exc:
        positions = [position for position, _ in rows]
        message = _ROW.sub(
            lambda m: f"document {positions[int(m[1]) - 1]}" if int(m[1]) <= len(positions) else m[0],
            exc.diag.message_primary or str(exc),
        )
        raise errors.IngestError(f"the sparsesql server refused the documents: {message}") from None
    changed = cursor.rowcount
    added = len(ids) - known
    return IngestReport(added=added, updated=max(changed - added, 0), unchanged=len(batch) - changed)


def delete(conn: psycopg.Connection, info: CollectionInfo, ids: Iterable[str]) -> int:
    wanted = [ids] if isinstance(ids, (str, int)) else list(ids)
    if not wanted:
        return 0
    query = sql.SQL("DELETE FROM {} WHERE id IN ({})").format(
        sql.Identifier(info.name), sql.SQL(", ").join([sql.Placeholder()] * len(wanted)))
    try:
        return conn.execute(query, [str(i) for i in wanted]).rowcount
    except psycopg.Error as exc:
        raise errors.DatabaseError(f"the sparsesql server refused the delete: {exc.diag.message_primary or exc}") from None
