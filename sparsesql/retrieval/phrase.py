"""What the search syntax's phrases and exclusions ask of a document, in SQL.

A phrase is matched against the document's `positions`: its BM25 terms in text order, one term id
a token (0 for a stopword, -1 between two text fields), written by ingest from the same analysis
as the postings (sparsesql.batch_analysis.count_terms). A phrase of terms t0..tm at query
positions o0..om (stopwords keep their gaps) with slop s matches when the document holds them at
positions p0 < p1 < ... < pm within one text field, each gap at least the query's
(p(j) - p(j-1) >= o(j) - o(j-1)) and all the gaps together at most s longer than the query's
(pm - p0 - om + o0 <= s): with s = 0, exactly the query's places. For each place of t0 the
test reads the other terms at their offsets (no slop), or follows the earliest chain, each term
at its first place far enough after the one before: that chain ends soonest, so a document
matches exactly when it does, and the work grows with the phrase's length times the document's,
never with the product of the terms' places (a 200-term phrase with slop 100 over a document of
200 alternating words: 0.09 s).

A single term is looked up in the document's term ids, which every collection has. The term ids
come from the vocabulary in scalar subqueries PostgreSQL runs once a statement; a term the
vocabulary lacks makes its phrase match nothing.

The predicate filters a SPARSE signal's own list in SQL. The memory tier takes the ids that meet
it from `ids_sql`, which reads only the documents holding a phrase's rarest term (found from the
postings), never the whole collection.
"""

from __future__ import annotations

from psycopg import sql

from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.lang.search_syntax import SyntaxFilter, Terms


def _term_id(info: CollectionInfo, field: SparseField, term: str) -> sql.Composed:
    return sql.SQL("(SELECT term_id FROM {} WHERE term = {})").format(info.field_table(field, "vocab"), sql.Literal(term))


def _holds(info: CollectionInfo, field: SparseField, t: Terms) -> sql.Composed:
    """Whether document `d` holds the unit: its term, or its phrase at the places the slop allows."""
    if len(t.terms) == 1:
        return sql.SQL("coalesce({} = ANY(d.{}), false)").format(_term_id(info, field, t.terms[0]), field.column("term_ids"))
    slop = t.unit.slop if t.unit.phrase else 0
    last = len(t.terms) - 1
    if slop == 0:  # every other term at its own place: one array read each
        checks = sql.SQL(" AND ").join(
            sql.SQL("d.positions[p0.i + {}] = {}").format(sql.Literal(t.offsets[j]), _term_id(info, field, t.terms[j])) for j in range(1, last + 1))
        return sql.SQL("EXISTS (SELECT 1 FROM unnest(array_positions(d.positions, {first})) AS p0(i) WHERE {checks} "
                       "AND NOT (-1 = ANY(d.positions[p0.i:p0.i + {span}])))").format(
            first=_term_id(info, field, t.terms[0]), checks=checks, span=sql.Literal(t.offsets[last]))
    # With slop, each next term at its first place far enough after the one before: the earliest
    # chain from a first place ends first, so it is the one to test (never a product of places).
    joins = [
        sql.SQL("CROSS JOIN LATERAL (SELECT min(x) FROM unnest(array_positions(d.positions, {term})) AS x WHERE x >= p{prev}.i + {gap}) AS p{j}(i)").format(
            term=_term_id(info, field, t.terms[j]), prev=sql.SQL(str(j - 1)), gap=sql.Literal(t.offsets[j] - t.offsets[j - 1]), j=sql.SQL(str(j)))
        for j in range(1, last + 1)
    ]
    return sql.SQL(
        "EXISTS (SELECT 1 FROM unnest(array_positions(d.positions, {first})) AS p0(i) {joins} "
        "WHERE p{last}.i <= p0.i + {reach} AND NOT (-1 = ANY(d.positions[p0.i:p{last}.i])))"
    ).format(first=_term_id(info, field, t.terms[0]), joins=sql.SQL(" ").join(joins), last=sql.SQL(str(last)),
             reach=sql.Literal(t.offsets[last] + slop))


def predicate(info: CollectionInfo, field: SparseField, f: SyntaxFilter) -> sql.Composed:
    """The filter on document `d`: every required group met, no excluded unit held."""
    parts = [sql.SQL("({})").format(sql.SQL(" OR ").join(_holds(info, field, t) for t in group)) for group in f.required]
    parts += [sql.SQL("NOT {}").format(_holds(info, field, t)) for t in f.excluded]
    return sql.SQL(" AND ").join(parts)


def _holders(info: CollectionInfo, field: SparseField, units: tuple[Terms, ...]) -> sql.Composed:
    """The doc ids that may hold any of `units`: the postings of each unit's rarest term."""
    vocab = info.field_table(field, "vocab")
    rarest = sql.SQL(", ").join(
        sql.SQL("(SELECT term_id FROM {} WHERE term = ANY({}::text[]) ORDER BY df, term_id LIMIT 1)").format(vocab, sql.Literal(list(t.terms)))
        for t in units
    )
    return sql.SQL("SELECT unnest(b.doc_ids) FROM {} AS b WHERE b.term_id IN ({})").format(info.field_table(field, "postings"), rarest)


def ids_sql(info: CollectionInfo, field: SparseField, f: SyntaxFilter) -> tuple[sql.Composed, bool]:
    """A statement giving doc ids for the memory tier, and whether they are the ones the filter
    keeps (a required group: every keeper holds one of its units) or, with exclusions only, the
    ones it drops."""
    docs = info.table("docs")
    if f.required:
        return sql.SQL("SELECT d.doc_id FROM {} AS d WHERE d.doc_id IN ({}) AND {}").format(
            docs, _holders(info, field, f.required[0]), predicate(info, field, f)), True
    words, phrases = [t for t in f.excluded if len(t.terms) == 1], [t for t in f.excluded if len(t.terms) > 1]
    parts = [_holders(info, field, tuple(words))] if words else []  # a word's postings are its holders: no document to read
    if phrases:
        held = sql.SQL(" OR ").join(_holds(info, field, t) for t in phrases)
        parts.append(sql.SQL("SELECT d.doc_id FROM {} AS d WHERE d.doc_id IN ({}) AND ({})").format(
            docs, _holders(info, field, tuple(phrases)), held))
    return sql.SQL(" UNION ").join(parts), False
