"""The change log as the tiers read it: whether they may, and what changed past a position.

Every write appends (seq, doc_id, added) rows to the collection's change log in commit order,
under the collection's lock; a tier applies the rows past the last seq it applied, inside the
search's own snapshot, so it and the search's statements see the same committed state.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo


class TierRefused(Exception):
    """A tier cannot serve this search (over its budget once loaded, or ahead of the search's
    snapshot): the search runs in SQL."""


class TierAhead(TierRefused):
    """The tier already follows a newer snapshot than this search's (another session's search
    moved it there): serving it would score documents this snapshot cannot see. The search
    starts again in a new snapshot, which sees at least the tier's version."""


def change_log_refusal(conn: psycopg.Connection, info: CollectionInfo) -> str | None:
    """Why the tier cannot follow the collection's change log (it has none, or this role may not
    read it), or None. Asked before reading it: a refused read would abort the search's snapshot."""
    table = f'sparsesql."{info.name}__changes"'
    present, readable = conn.execute(
        "SELECT c.oid IS NOT NULL, c.oid IS NOT NULL AND has_table_privilege(c.oid, 'SELECT') FROM (SELECT to_regclass(%s) AS oid) AS c",
        (table,),
    ).fetchone()
    if not present:
        return "the collection has no change log (created before it existed); re-create it to use the memory tier"
    if not readable:
        return f"this role may not read the change log {table} (db.grant(role, 'reader') grants it)"
    return None


def changes_since(conn: psycopg.Connection, info: CollectionInfo, seq: int) -> tuple[np.ndarray, list[int], int] | None:
    """The change log past `seq`, in the caller's snapshot: (removed doc ids, added doc ids still
    present, the last seq), or None when nothing changed."""
    rows = conn.execute(
        sql.SQL("SELECT seq, doc_id, added FROM {} WHERE seq > %s ORDER BY seq").format(info.table("changes")), (seq,)
    ).fetchall()
    if not rows:
        return None
    removed = np.array([d for _, d, added in rows if not added], dtype=np.int64)
    added = sorted({d for _, d, a in rows if a} - set(removed.tolist()))
    return removed, added, rows[-1][0]
