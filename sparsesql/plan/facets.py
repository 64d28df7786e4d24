"""Facets as SQL: the GROUP BY of a search's hits, in one statement.

Which documents are the hits: without a SEARCH, every document the WHERE keeps; for one SPARSE
signal (without PRF), every document that holds a query term and passes the WHERE, the set the
search would return with no LIMIT (every other document scores 0); for DENSE, HYBRID and WITH
PRF, whose lists have no such end, the top `candidates` of the ranking (200 unless HYBRID's
`candidates` says more), which the search computes as usual and hands over as ids. PostgreSQL
then groups and aggregates the documents' own columns: the counts are a plain GROUP BY over that
set of documents, by construction.
"""

from __future__ import annotations

from psycopg import sql

from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.lang.check_facets import CheckedFacets


def _key(info: CollectionInfo, facets: CheckedFacets) -> sql.Composable:
    key = facets.key
    column = sql.SQL("d.{}").format(sql.Identifier(key.field))
    if key.function == "width_bucket":
        low, high, count = key.args
        if info.field_type(key.field) == "numeric":  # exact decimals keep numeric's width_bucket
            return sql.SQL("width_bucket({}, {}, {}, {})").format(column, sql.Literal(low), sql.Literal(high), sql.Literal(count))
        # Every other number in float8, whatever the bounds look like (PostgreSQL would pick
        # numeric's for an integer column and a bound written 0.5): one rule, the memory tier's.
        return sql.SQL("width_bucket({}::float8, {}::float8, {}::float8, {})").format(
            column, sql.Literal(low), sql.Literal(high), sql.Literal(count))
    if key.function == "date_trunc":
        return sql.SQL("date_trunc({}, {})").format(sql.Literal(key.args[0]), column)
    return column


def _aggregate(function: str, field: str | None) -> sql.Composable:
    if field is None:
        return sql.SQL("count(*)")
    return sql.SQL("{}(d.{})").format(sql.SQL(function), sql.Identifier(field))


def facet_sql(info: CollectionInfo, facets: CheckedFacets, hits: sql.Composable) -> sql.Composed:
    """The facet's rows over the documents `hits` keeps (a condition on alias `d`); binds
    %(facet_limit)s and %(facet_offset)s. Groups with equal sort values come in key order."""
    parts = {facets.key.column: _key(info, facets)}
    parts.update({column: _aggregate(function, field) for function, field, column in facets.aggregates})
    select = sql.SQL(", ").join(parts[c] for c in facets.columns)
    key_at = facets.columns.index(facets.key.column) + 1
    order = [sql.SQL("{} {}").format(sql.Literal(i + 1), sql.SQL("DESC" if desc else "ASC")) for i, desc in facets.order]
    order.append(sql.SQL("{} ASC").format(sql.Literal(key_at)))
    return sql.SQL("SELECT {} FROM {} AS d WHERE {} GROUP BY {} ORDER BY {} LIMIT %(facet_limit)s OFFSET %(facet_offset)s").format(
        select, info.table("docs"), hits, _key(info, facets), sql.SQL(", ").join(order)
    )


def matching_sql(info: CollectionInfo, field: SparseField, where: sql.Composable) -> sql.Composed:
    """Documents holding any of the query's terms (binds %(facet_terms)s) that pass the filter:
    from the terms' posting blocks (measured at 100k documents, 40k matches: 71 ms, where testing
    each document's term array took 139 ms), or on a distributed collection from each document's
    own term array, which needs no join across shards."""
    terms = sql.SQL("SELECT v.term_id FROM {} AS v WHERE v.term = ANY(%(facet_terms)s::text[])").format(info.field_table(field, "vocab"))
    if info.extra.get("distributed"):
        return sql.SQL("{} AND d.{} && ARRAY({})").format(where, field.column("term_ids"), terms)
    return sql.SQL("{} AND d.doc_id IN (SELECT p.doc_id FROM {} AS b CROSS JOIN LATERAL unnest(b.doc_ids) AS p(doc_id) WHERE b.term_id IN ({}))").format(
        where, info.field_table(field, "postings"), terms
    )
