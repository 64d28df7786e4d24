"""SQL-side dense retrieval through pgvector: cosine similarity, exact unless an index exists.

`<=>` is pgvector's cosine distance, so `1 - (a <=> b)` is the cosine similarity whether or not
the stored vectors are unit length (the model's are; supplied ones are stored as given).
The filter is applied in the same statement as the ordering, so a selective WHERE still yields
k rows whenever k matching documents exist (no post-filter truncation).

The exact path orders by the similarity expression, not by `embedding <=> q`: PostgreSQL would
otherwise walk an HNSW index on the vectors (an incremental sort adds the doc_id tie-break on top),
silently making the search approximate and capping it at hnsw.ef_search rows. Only
`DENSE(..., ef_search => n)` asks for the index.
"""

from __future__ import annotations

import numpy as np
from pgvector import Vector
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo


def candidates_sql(
    info: CollectionInfo,
    where: sql.Composable,
    prefix: str,
    *,
    ctes: sql.Composable = sql.SQL(""),
    query: sql.Composable | None = None,
    approximate: bool = False,
) -> sql.Composed:
    """Top-k documents by cosine similarity; binds %(<prefix>vector)s and %(<prefix>k)s.

    `query` replaces the bound vector with an expression over `ctes` (pseudo-relevance feedback).
    `approximate` lets an HNSW index on the vectors answer (see `ann_settings`).
    """
    vector, k = query or sql.Placeholder(prefix + "vector"), sql.Placeholder(prefix + "k")
    docs = sql.SQL("{} AS d ON d.doc_id = e.doc_id{}").format(info.table("docs"), sql.SQL(" AND d.shard = e.shard" if info.buckets else ""))
    if approximate:
        # Ordered by distance alone, so PostgreSQL can walk the HNSW index; the outer ORDER BY
        # restores the exact path's order (score, then doc_id) over the rows it found.
        return sql.SQL(
            "{ctes}SELECT doc_id, score FROM (SELECT d.doc_id, 1 - (e.embedding <=> {vector}) AS score FROM {dense} AS e "
            "JOIN {docs} WHERE {where} ORDER BY e.embedding <=> {vector} LIMIT {k}) AS ann "
            "ORDER BY score DESC, doc_id"
        ).format(ctes=ctes, vector=vector, k=k, dense=info.table("dense"), docs=docs, where=where)
    return sql.SQL(
        "{ctes}SELECT d.doc_id, 1 - (e.embedding <=> {vector}) AS score FROM {dense} AS e "
        "JOIN {docs} WHERE {where} "
        "ORDER BY 1 - (e.embedding <=> {vector}) DESC, d.doc_id LIMIT {k}"
    ).format(ctes=ctes, vector=vector, k=k, dense=info.table("dense"), docs=docs, where=where)


def query_vector(info: CollectionInfo, query: str | np.ndarray) -> np.ndarray:
    """The query's unit vector: embedded with the collection's model, or the one supplied."""
    if isinstance(query, str):
        from sparsesql.encoders.dense import encode_query

        return encode_query(query, info.settings.dense)
    norm = float(np.linalg.norm(query))
    return query / norm if norm > 0 else query


def bind(vector: np.ndarray, k: int, prefix: str) -> dict:
    return {prefix + "vector": Vector(vector.astype(np.float32)), prefix + "k": k}


def ann_settings(ef_search: int, filtered: bool) -> dict[str, str]:
    """Transaction-local settings for an approximate (HNSW) scan. With a filter, pgvector >= 0.8
    keeps scanning the graph until k rows pass it (iterative scan), instead of filtering the
    ef_search nearest and returning fewer."""
    settings = {"hnsw.ef_search": str(ef_search)}
    if filtered:
        settings["hnsw.iterative_scan"] = "relaxed_order"
    return settings
