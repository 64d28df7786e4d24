"""What a page's rows get besides their columns: HIGHLIGHT's snippets, and the key their cursors
are signed with."""

from __future__ import annotations

import weakref

import psycopg

from sparsesql.errors import CheckError, DatabaseError
from sparsesql.exec.snapshot import Snapshot
from sparsesql.lang import cursor_token
from sparsesql.lang.check_page import CheckedCursor
from sparsesql.plan import stages as st
from sparsesql.retrieval import highlight


def highlight_rows(h: st.Highlighting, rows: list[dict], expansion: frozenset[str]) -> None:
    """Each row's HIGHLIGHT columns: lexical when the search has terms (PRF's expansion marked
    apart), else semantic."""
    for item in h.items:
        texts = [row[item.field] or "" for row in rows]
        if h.terms or h.dense is None or h.collection.settings.dense == "none":
            # no model to embed passages with (vectors supplied by the user): the text's beginning
            snippets = [highlight.lexical(t, h.terms, item.style, expansion) for t in texts]
        else:
            from sparsesql.encoders.dense import load_dense_encoder
            from sparsesql.retrieval.dense import query_vector

            vector = query_vector(h.collection, h.dense.query)
            snippets = highlight.semantic(texts, vector, load_dense_encoder(h.collection.settings.dense).encode, item.style)
        for row, snippet in zip(rows, snippets):
            row[item.column] = snippet


_KEYS: weakref.WeakKeyDictionary[psycopg.Connection, bytes] = weakref.WeakKeyDictionary()


def cursor_key(snap: Snapshot, cursor: CheckedCursor) -> bytes:
    """The database's cursor key (read once per connection: it never changes), and the page's
    cursor checked against it; a cursor the kept key refuses is checked against a fresh read."""
    key = _KEYS.get(snap.conn)
    for _ in range(2):
        if key is None:
            row = snap.conn.execute("SELECT key FROM sparsesql.cursor_key").fetchone()
            if row is None:
                raise DatabaseError("sparsesql.cursor_key holds no key: run `sparsesql migrate` to make one")
            key = _KEYS[snap.conn] = bytes(row[0])
        if cursor.after is None or cursor_token.genuine(key, cursor.signed, cursor.mac):
            return key
        key = None
    raise CheckError("the cursor was altered, or made by another database: take it from a row's cursor column")
