"""Where the kNN graph lives and the SQL that reads it.

A collection's graph is the table `sparsesql."<name>__graph"` (src, dst, similarity): for every
document, its k most similar documents by dense cosine similarity, ties broken by the lower
doc_id. The build parameters are in the catalog row (`extra->'graph'`). The table exists only
once a graph was built; dropping the collection drops it.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo


def create_table(conn: psycopg.Connection, info: CollectionInfo) -> None:
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (src bigint NOT NULL, dst bigint NOT NULL, similarity real NOT NULL, "
            "PRIMARY KEY (src, dst))"
        ).format(info.table("graph"))
    )


def vectors_sql(info: CollectionInfo) -> sql.Composed:
    """The dense vectors of a pool (binds %(pool_ids)s); run it in binary format, where pgvector's
    loader reads a vector ten times faster than from text."""
    return sql.SQL("SELECT doc_id, embedding FROM {} WHERE doc_id = ANY(%(pool_ids)s)").format(info.table("dense"))


def expand_sql(info: CollectionInfo, where: sql.Composable) -> sql.Composed:
    """Documents within %(hops)s graph hops of %(pool_ids)s, outside the pool, that pass the filter.

    The walk deduplicates (document, hop) pairs, so it visits at most hops x |collection| rows.
    On a distributed collection this is the walk alone, over the coordinator's graph (Citus
    plans no recursive query beside a distributed table), and `walked_filter_sql` applies the
    filter to what it found in a second statement.
    """
    walk = sql.SQL(
        "WITH RECURSIVE walk(doc_id, hop) AS ("
        "SELECT unnest(%(pool_ids)s::bigint[]), 0 "
        "UNION SELECT g.dst, w.hop + 1 FROM walk AS w JOIN {graph} AS g ON g.src = w.doc_id WHERE w.hop < %(hops)s) "
    ).format(graph=info.table("graph"))
    if info.buckets:
        return walk + sql.SQL("SELECT DISTINCT doc_id FROM walk WHERE NOT (doc_id = ANY(%(pool_ids)s)) ORDER BY doc_id")
    return walk + sql.SQL(
        "SELECT DISTINCT d.doc_id FROM walk JOIN {docs} AS d ON d.doc_id = walk.doc_id "
        "WHERE NOT (d.doc_id = ANY(%(pool_ids)s)) AND ({where}) ORDER BY d.doc_id"
    ).format(docs=info.table("docs"), where=where)


def walked_filter_sql(info: CollectionInfo, where: sql.Composable) -> sql.Composed:
    """The documents of %(walked)s that exist and pass the filter, by id (distributed collections)."""
    return sql.SQL("SELECT d.doc_id FROM {docs} AS d WHERE d.doc_id = ANY(%(walked)s) AND ({where}) ORDER BY d.doc_id").format(
        docs=info.table("docs"), where=where)