"""More like this: a LIKE query made, in the search's snapshot, into what its signal searches with.

`DENSE(LIKE ...)` searches with the mean of the liked documents' unit vectors; with UNLIKE, with
that mean moved away from the unliked ones' as far again (2 * liked - unliked: Qdrant's
average_vector strategy). One liked document searches with its own vector's direction, so its
cosine ranking is that of `DENSE(<its vector>)`.

`SPARSE(LIKE ...)` searches with the liked documents' top `terms` terms (25 by default, Lucene's
maxQueryTerms), ranked as Lucene's MoreLikeThis ranks them by tf-idf, here by each term's BM25
weight in the document (summed over the liked documents, less the unliked ones' weights), each
searched with weight 1 (MoreLikeThis' default, no boost); a learned field's terms by their
stored weights, searched with those weights. A term no other document holds (df 1) is left out:
it could find only the example itself.

The examples, liked and unliked, are left out of the results unless `include_liked => true`:
the search keeps that many more candidates so that a page still fills.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.errors import CheckError
from sparsesql.exec.snapshot import Snapshot
from sparsesql.lang.check_search import DenseSignal
from sparsesql.lang.check_select import CheckedSelect
from sparsesql.lang.check_like import Liked
from sparsesql.retrieval import sparse


def resolve(snap: Snapshot, q: CheckedSelect, text: str) -> CheckedSelect:
    """`q` with each LIKE query replaced by its vector or terms, and the examples to leave out
    (`exclude`, doc ids); raises CheckError at an id that names no document."""
    if q.search is None or not any(isinstance(s.query, Liked) for s in q.search.signals):
        return q
    info = q.collection
    found, vectors = _examples(snap, info, q.search.signals)
    signals, exclude, likes = [], set(q.exclude), []
    for signal in q.search.signals:
        like = signal.query
        if not isinstance(like, Liked):
            signals.append(signal)
            continue
        missing = next((i for i in (*like.ids, *like.unlike) if i not in found), None)
        if missing is not None:
            pos = like.positions[missing]
            raise CheckError(f"LIKE names document {missing!r}, and collection {info.name!r} has no document with that id",
                             line=pos.line, column=pos.column, query=text)
        if not like.include:
            exclude.update(found.values())
        liked, unliked = [found[i] for i in like.ids], [found[i] for i in like.unlike]
        examples = f"LIKE {', '.join(like.ids)}" + (f" UNLIKE {', '.join(like.unlike)}" if like.unlike else "")
        if isinstance(signal, DenseSignal):
            signals.append(replace(signal, query=_vector(vectors, liked, unliked, like, text)))
            how = "the stored vector" if len(liked) == 1 and not unliked else "2 x the liked unit vectors' mean - the unliked ones'" if unliked else "the liked unit vectors' mean"
            likes.append(f"DENSE {examples}: searches with {how}")
        else:
            signals.append(replace(signal, query=_terms(snap, info, signal.field, liked, unliked, like.terms)))
            likes.append(f"SPARSE {examples}: searches with {', '.join(signals[-1].query) or 'no term (none is held by another document)'} "
                         f"(their top {like.terms} by {'BM25 weight' if signal.field.bm25 else 'stored weight'})")
    more = len(exclude) - len(q.exclude)
    search = replace(q.search, signals=tuple(signals), candidates=q.search.candidates + more)
    return replace(q, search=search, limit=q.limit + more, exclude=frozenset(exclude), likes=tuple(likes))


def _examples(snap: Snapshot, info: CollectionInfo, signals: tuple) -> tuple[dict[str, int], dict[int, list[float]]]:
    """Every example's doc id by its id, and (when a DENSE signal takes LIKE) its stored vector,
    in one statement for all the search's LIKE queries."""
    likes = [s.query for s in signals if isinstance(s.query, Liked)]
    ids = list(dict.fromkeys(i for like in likes for i in (*like.ids, *like.unlike)))
    if any(isinstance(s, DenseSignal) and isinstance(s.query, Liked) for s in signals):
        statement = sql.SQL("SELECT d.id, d.doc_id, e.embedding::float4[] FROM {} AS d LEFT JOIN {} AS e ON e.doc_id = d.doc_id "
                            "WHERE d.id = ANY(%s)").format(info.table("docs"), info.table("dense"))
    else:
        statement = sql.SQL("SELECT d.id, d.doc_id, NULL FROM {} AS d WHERE d.id = ANY(%s)").format(info.table("docs"))
    rows = snap.execute(statement, (ids,)).fetchall()
    return {i: d for i, d, _ in rows}, {d: v for _, d, v in rows if v is not None}


def _vector(rows: dict[int, list[float]], liked: list[int], unliked: list[int], like: Liked, text: str) -> np.ndarray:
    units = {d: np.asarray(v, dtype=np.float64) / (np.linalg.norm(v) or 1.0) for d, v in rows.items()}
    lacking = next((d for d in liked + unliked if d not in units or not np.any(units[d])), None)
    if lacking is not None:
        raise CheckError("DENSE(LIKE ...) names a document without a vector to compare", line=like.pos.line, column=like.pos.column, query=text)
    if len(liked) == 1 and not unliked:  # the document's own vector, as stored: DENSE(<its vector>) exactly
        return np.asarray(rows[liked[0]], dtype=np.float32)
    mean = np.mean([units[d] for d in liked], axis=0)
    if unliked:
        mean = 2 * mean - np.mean([units[d] for d in unliked], axis=0)
    if not np.any(mean.astype(np.float32)):
        raise CheckError("DENSE(LIKE ... UNLIKE ...) cancels out: the liked and unliked documents' vectors leave no direction",
                         line=like.pos.line, column=like.pos.column, query=text)
    return mean.astype(np.float32)


def _terms(snap: Snapshot, info: CollectionInfo, field: SparseField, liked: list[int], unliked: list[int], top: int) -> dict[str, float]:
    """The examples' top terms: {term: 1.0} for BM25, {term: summed weight} for a learned field."""
    if field.bm25:
        length = sql.SQL("d.doc_len") if field.slot == 0 else sql.SQL("cardinality(d.{})").format(field.column("term_ids"))
        weight = sql.SQL("{idf} * p.tf * ({k1} + 1) / (p.tf + {k1} * (1 - {b} + {b} * {length} / s.avgdl))").format(
            idf=sparse.idf_sql(field, sql.SQL("v.df"), sql.SQL("s.n")), k1=sql.Literal(info.settings.k1), b=sql.Literal(info.settings.b),
            length=length)
    else:
        weight = sql.SQL("p.tf")
    statement = sql.SQL(
        "WITH s AS (SELECT n_docs::float8 AS n, greatest(sum_len::float8 / greatest(n_docs, 1), 1e-9) AS avgdl "
        "FROM sparsesql.collections WHERE name = {name}) "
        "SELECT v.term, sum(CASE WHEN d.doc_id = ANY(%(liked)s) THEN 1 ELSE -1 END * {weight}) AS w "
        "FROM {docs} AS d CROSS JOIN LATERAL unnest(d.{terms}, d.{weights}) AS p(term_id, tf) "
        "JOIN {vocab} AS v ON v.term_id = p.term_id CROSS JOIN s "
        "WHERE d.doc_id = ANY(%(examples)s) AND v.df > 1 "
        "GROUP BY v.term HAVING sum(CASE WHEN d.doc_id = ANY(%(liked)s) THEN 1 ELSE -1 END * {weight}) > 0 "
        "ORDER BY w DESC, v.term LIMIT %(top)s"
    ).format(name=sql.Literal(info.name), weight=weight, docs=info.table("docs"), terms=field.column("term_ids"),
             weights=field.column("weights"), vocab=info.field_table(field, "vocab"))
    rows = snap.execute(statement, {"liked": liked, "examples": liked + unliked, "top": top}).fetchall()
    return {term: 1.0 if field.bm25 else float(w) for term, w in rows}
