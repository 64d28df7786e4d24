"""Removing documents: their rows, their postings, the statistics they counted, and the change log
the memory tiers follow, in the writer's transaction under the collection's lock."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import psycopg
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.db.ingest_report import Upkeep
from sparsesql.errors import IngestError


def lock_collection(conn: psycopg.Connection, info: CollectionInfo) -> CollectionInfo:
    """Take the collection's catalog row lock (writers serialize on it) and return the row as
    it is now: a migration may have moved the collection to the other layout (distributed or
    not) since `info` was read."""
    row = conn.execute("SELECT extra FROM sparsesql.collections WHERE name = %s FOR UPDATE", (info.name,)).fetchone()
    if row is None:
        raise IngestError(f"collection {info.name!r} was dropped while writing to it")
    return info if (row[0] or {}) == info.extra else replace(info, extra=row[0] or {})


def log_changes(conn: psycopg.Connection, info: CollectionInfo, doc_ids: list[int], *, added: bool) -> None:
    """Record added or removed documents in the collection's change log (same transaction)."""
    if info.buckets:
        conn.execute(
            sql.SQL("INSERT INTO {} (doc_id, added, shard) SELECT unnest(%s::bigint[]), %s, unnest(%s::int[])").format(info.table("changes")),
            (doc_ids, added, info.shard_of(doc_ids)),
        )
        return
    conn.execute(
        sql.SQL("INSERT INTO {} (doc_id, added) SELECT unnest(%s::bigint[]), %s").format(info.table("changes")),
        (doc_ids, added),
    )


def _remove_postings(conn: psycopg.Connection, info: CollectionInfo, field: SparseField, doc_ids: list[int]) -> None:
    """Take documents out of one sparse field's blocks and df (before their rows go).

    Each (term, document) pair, read from the document's own term array, finds its block as the
    term's last block keyed at or below the document; the block is rewritten without the
    removed documents, or deleted once empty, and df drops by the pairs counted. On a
    distributed collection a term's blocks cover increasing ranges within each shard, so the
    statement runs once per shard value, filtered to it (Citus routes it to that one shard),
    and df, in a reference table, drops by counts taken on the coordinator.
    """
    if not info.buckets:
        conn.execute(_remove_sql(info, field, sharded=False), {"ids": doc_ids})
        return
    by_shard: dict[int, list[int]] = {}
    for doc_id, shard in zip(doc_ids, info.shard_of(doc_ids)):
        by_shard.setdefault(shard, []).append(doc_id)
    statement = _remove_sql(info, field, sharded=True)
    for shard, ids in by_shard.items():
        conn.execute(statement, {"ids": ids, "shard": shard})
    terms = conn.execute(
        sql.SQL("SELECT t, count(*) FROM {} AS d CROSS JOIN LATERAL unnest(d.{}) AS t WHERE d.doc_id = ANY(%s) GROUP BY t").format(
            info.table("docs"), field.column("term_ids")),
        (doc_ids,),
    ).fetchall()
    conn.execute(
        sql.SQL("UPDATE {} AS v SET df = v.df - x.n FROM unnest(%s::int[], %s::int[]) AS x(term_id, n) WHERE v.term_id = x.term_id").format(
            info.field_table(field, "vocab")),
        ([t for t, _ in terms], [n for _, n in terms]),
    )


def _remove_sql(info: CollectionInfo, field: SparseField, *, sharded: bool) -> sql.Composed:
    """The statement of _remove_postings (binds %(ids)s, and %(shard)s when sharded)."""
    on = sql.SQL(" AND {}.shard = %(shard)s")
    d, p = (on.format(sql.Identifier(a)) if sharded else sql.SQL("") for a in ("d", "p"))
    last = sql.SQL(" SELECT count(*) FROM shrunk") if sharded else sql.SQL(
        ", counts AS (SELECT term_id, count(*) AS n FROM gone GROUP BY term_id) "
        "UPDATE {v} AS v SET df = v.df - counts.n FROM counts WHERE v.term_id = counts.term_id"
    ).format(v=info.field_table(field, "vocab"))
    return sql.SQL(
        "WITH gone AS (SELECT t.term_id, d.doc_id FROM {docs} AS d CROSS JOIN LATERAL unnest(d.{terms}) AS t(term_id) "
        "WHERE d.doc_id = ANY(%(ids)s){d}), "
        "hit AS (SELECT g.term_id, b.block, array_agg(g.doc_id) AS ids FROM gone AS g CROSS JOIN LATERAL "
        "(SELECT p.block FROM {postings} AS p WHERE p.term_id = g.term_id AND p.block <= g.doc_id{p} ORDER BY p.block DESC LIMIT 1) AS b "
        "GROUP BY g.term_id, b.block), "
        "kept AS (SELECT hit.term_id, hit.block, k.doc_ids, k.tfs FROM hit JOIN {postings} AS p "
        "ON p.term_id = hit.term_id AND p.block = hit.block{p} "
        "CROSS JOIN LATERAL (SELECT array_agg(u.doc_id ORDER BY u.o) AS doc_ids, array_agg(u.tf ORDER BY u.o) AS tfs "
        "FROM unnest(p.doc_ids, p.tfs) WITH ORDINALITY AS u(doc_id, tf, o) WHERE u.doc_id <> ALL(hit.ids)) AS k), "
        "shrunk AS (UPDATE {postings} AS p SET doc_ids = kept.doc_ids, tfs = kept.tfs FROM kept "
        "WHERE p.term_id = kept.term_id AND p.block = kept.block AND kept.doc_ids IS NOT NULL{p} RETURNING 1), "
        "emptied AS (DELETE FROM {postings} AS p USING kept "
        "WHERE p.term_id = kept.term_id AND p.block = kept.block AND kept.doc_ids IS NULL{p}){last}"
    ).format(docs=info.table("docs"), postings=info.field_table(field, "postings"), terms=field.column("term_ids"), d=d, p=p, last=last)


def remove(conn: psycopg.Connection, info: CollectionInfo, doc_ids: list[int], *, upkeep: Upkeep) -> int:
    """Delete documents by internal id inside the caller's transaction, keeping statistics exact."""
    if not doc_ids:
        return 0
    docs = info.table("docs")
    for f in info.sparse_fields:
        _remove_postings(conn, info, f, doc_ids)
    fields = info.settings.field_stats
    row = conn.execute(
        sql.SQL(
            "WITH gone AS (DELETE FROM {d} WHERE doc_id = ANY(%(ids)s) RETURNING doc_len{lens}) "
            "SELECT count(*), coalesce(sum(doc_len), 0), {sums} FROM gone"
        ).format(d=docs, lens=sql.SQL(", field_lens" if fields else ""),
                 sums=sql.SQL("ARRAY(SELECT sum(g.field_lens[i]) FROM gone AS g CROSS JOIN generate_series(1, {}) AS i GROUP BY i ORDER BY i)").format(
                     sql.Literal(len(info.settings.text_fields))) if fields else sql.SQL("ARRAY[]::bigint[]")),
        {"ids": doc_ids},
    ).fetchone()
    count, length, field_lens = row
    log_changes(conn, info, doc_ids, added=False)
    upkeep.removed(conn, info, doc_ids)
    move_statistics(conn, info, -count, -length, [-n for n in field_lens])
    return count


def move_statistics(conn: psycopg.Connection, info: CollectionInfo, docs: int, length: int, field_lens: list[int]) -> None:
    """Move the catalog's exact statistics by a write (negative numbers for documents removed):
    N, the sum of lengths, each text field's sum of lengths, and the write counter."""
    conn.execute(
        "UPDATE sparsesql.collections SET n_docs = n_docs + %s, sum_len = sum_len + %s, version = version + 1, "
        "field_len = ARRAY(SELECT coalesce(field_len[i], 0) + coalesce((%s::bigint[])[i], 0) "
        "FROM generate_series(1, greatest(cardinality(field_len), cardinality(%s::bigint[]))) AS i ORDER BY i) WHERE name = %s",
        (docs, length, field_lens, field_lens, info.name),
    )


def delete_where(
    conn: psycopg.Connection, info: CollectionInfo, condition: sql.Composable, params: dict, *, upkeep: Upkeep
) -> int:
    """Delete the documents matching `condition` (SQL over the documents table as alias `d`,
    binding named `params`) in one transaction; the rows are chosen under the collection's lock,
    so a concurrent writer cannot slip one in between. Returns how many went."""
    with conn.transaction():
        info = lock_collection(conn, info)
        rows = conn.execute(
            sql.SQL("SELECT d.doc_id FROM {} AS d WHERE {}").format(info.table("docs"), condition), params
        ).fetchall()
        return remove(conn, info, [r[0] for r in rows], upkeep=upkeep)


def delete(conn: psycopg.Connection, info: CollectionInfo, ids: Iterable[str], *, upkeep: Upkeep) -> int:
    """Delete documents by external id in one transaction; returns how many existed."""
    wanted = [ids] if isinstance(ids, (str, int)) else [str(i) for i in ids]
    wanted = [str(i) for i in wanted]
    return delete_where(conn, info, sql.SQL("d.id = ANY(%(ids)s)"), {"ids": wanted}, upkeep=upkeep)
