"""Checking a SELECT: its columns, search, page, filter, facets, boost and rerank, into the
`CheckedSelect` the planner takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from sparsesql.db.catalog import CollectionInfo
from sparsesql.lang import ast, check_page
from sparsesql.lang.check_boost import CheckedBoost, check_boost
from sparsesql.lang.check_core import Catalog, Checker, named_collection, unknown_field
from sparsesql.lang.check_facets import CheckedFacets, FACET_DEPTH, check_facets
from sparsesql.lang.check_page import CheckedCursor, CheckedHighlight, COLLAPSE_DEPTH, MAX_LIMIT
from sparsesql.lang.check_rerank import CheckedRerank, check_rerank
from sparsesql.lang.check_search import CheckedDiversify, CheckedPrf, CheckedSearch, check_diversify, check_prf, check_search
from sparsesql.lang.check_where import check_predicate


@dataclass(frozen=True)
class CheckedSelect:
    collection: CollectionInfo
    columns: tuple[str, ...]
    with_score: bool
    search: CheckedSearch | None
    where: ast.Predicate | None
    limit: int  # the depth of the ranking: the page's end, LIMIT + OFFSET
    params: dict
    explain: bool = False
    analyze: bool = False
    prf: CheckedPrf | None = None
    diversify: CheckedDiversify | None = None
    defaults: tuple[tuple[str, str, str], ...] = ()  # (argument, value, source) of each one left out
    offset: int = 0  # rows of the ranking before the page
    page_size: int | None = None  # the page's rows, LIMIT (None: all from offset)
    highlights: tuple[CheckedHighlight, ...] = ()
    hidden: tuple[str, ...] = ()  # columns fetched for HIGHLIGHT only, not returned
    collapse: str | None = None  # DISTINCT ON (field): the best row per value of the field
    facets: CheckedFacets | None = None  # GROUP BY: groups of the search's hits, paged by LIMIT / OFFSET
    fingerprint: str = ""  # the search's own text and values (cursor_token.fingerprint); "" without SEARCH
    cursor: CheckedCursor | None = None  # a cursor column asked for, or a page AFTER a cursor
    seek: bool = False  # a SPARSE search's page AFTER a cursor past the result window: by (score, doc id)
    exclude: frozenset[int] = frozenset()  # doc ids left out of every list: LIKE's examples (exec/like.py)
    likes: tuple[str, ...] = ()  # what each LIKE searches with, for EXPLAIN
    boost: CheckedBoost | None = None  # ORDER BY: the ranking's top reordered by an expression of score
    rerank: CheckedRerank | None = None  # RERANK: a cross-encoder orders the top candidates
    where_kinds: dict[ast.Operand, str] = field(default_factory=dict)  # each WHERE operand's kind (check_where.py)


def check_select(c: Checker, node: ast.Select, catalog: Catalog) -> CheckedSelect:
    info = named_collection(c, node.collection, catalog)
    columns: list[str] = []
    highlights: list[CheckedHighlight] = []
    with_score = with_cursor = False
    facets = check_facets(c, node, info, unknown_field)
    for item in node.items if facets is None else ():
        if isinstance(item, ast.Highlight):
            highlights.append(check_page.highlight(c, item, info, node.search is not None, unknown_field))
            continue
        col = item.name.lower()
        if col == "score":
            if node.search is None:
                raise c.error("score needs a SEARCH clause", item.pos)
            with_score = True
        elif col == "cursor" and info.field_type(col) is None:
            if node.search is None:
                raise c.error("cursor needs a SEARCH clause: it names a row of the ranking", item.pos)
            with_cursor = True
        elif info.field_type(col) is None:
            raise c.error(unknown_field(item.name, info), item.pos)
        elif col not in columns:
            columns.append(col)
    if not node.items and facets is None:
        columns = ["id", *(f.name for f in info.fields), "metadata"]
        with_score = node.search is not None
    collapse = None
    if node.distinct_on is not None:
        collapse = node.distinct_on.name.lower()
        if collapse != "id" and collapse not in {f.name for f in info.fields}:
            raise c.error(unknown_field(node.distinct_on.name, info) + "; DISTINCT ON takes id or a declared field", node.distinct_on.pos)
    hidden = tuple(dict.fromkeys(f for f in [*(h.field for h in highlights), collapse] if f is not None and f not in columns))
    columns += hidden
    fingerprint = check_page.search_fingerprint(c, node) if node.search is not None else ""
    cursor = check_page.cursor(c, node, with_cursor, fingerprint)
    seekable = (isinstance(node.search, ast.Sparse) and not isinstance(node.search.query, ast.MoreLike)
                and node.prf is None and node.diversify is None and node.distinct_on is None and not node.order_by
                and node.rerank is None)
    limit, offset, page_size, seek = check_page.page(c, node, cursor, seekable)
    if node.distinct_on is not None:
        limit = min(MAX_LIMIT, max(COLLAPSE_DEPTH, limit))
    if facets is not None:  # LIMIT and OFFSET page the groups; the hits are the search's candidates
        search = check_search(c, node.search, info, FACET_DEPTH) if node.search is not None else None
        limit = search.candidates if search is not None else 0
    else:
        search = check_search(c, node.search, info, limit) if node.search is not None else None
    prf = None
    if node.prf is not None:
        if search is None:
            raise c.error("WITH PRF needs a SEARCH clause to take feedback from", node.prf.pos)
        weighed = next((s for s in search.signals if getattr(s, "fields", None) is not None), None)
        if weighed is not None:
            raise c.error("WITH PRF expands the BM25 query over whole documents; a SPARSE with fields => cannot take it", weighed.pos)
        prf = check_prf(c, node.prf, search, info)
    diversify = None
    if node.diversify is not None:
        if search is None:
            raise c.error("DIVERSIFY needs a SEARCH clause to choose from", node.diversify.pos)
        diversify = check_diversify(c, node.diversify, limit)
        if diversify.hops and "graph" not in info.extra:
            raise c.error(
                f"hops => {diversify.hops} walks the kNN graph, and collection {info.name!r} has none; "
                f"build it with BUILD GRAPH ON {info.name}",
                node.diversify.pos,
            )
    boost = rerank = None
    if facets is None and search is not None:
        boost = check_boost(c, node, info, unknown_field, max(limit, search.candidates))
    if node.rerank is not None:
        rerank = _rerank(c, node, info, search, facets, limit)
    if node.where is not None:
        check_predicate(c, node.where, info)
    return CheckedSelect(
        info, tuple(columns), with_score, search, node.where, limit, c.params, prf=prf, diversify=diversify, defaults=tuple(c.defaults),
        offset=offset, page_size=page_size, cursor=cursor, highlights=tuple(highlights), hidden=hidden, collapse=collapse, facets=facets,
        fingerprint=fingerprint, seek=seek, boost=boost, rerank=rerank, where_kinds=dict(c.kinds),
    )


def _rerank(c: Checker, node: ast.Select, info: CollectionInfo, search: CheckedSearch | None, facets: CheckedFacets | None,
            limit: int) -> CheckedRerank:
    if search is None:
        raise c.error("RERANK needs a SEARCH clause: it orders the search's top candidates", node.rerank.pos)
    for clause, present in (("GROUP BY", facets), ("DIVERSIFY", node.diversify), ("ORDER BY", node.order_by)):
        if present:
            raise c.error(f"RERANK does not go with {clause}: the cross-encoder's scores are the final order", node.rerank.pos)
    texts = [s.query for s in search.signals if isinstance(s.query, str)]
    return check_rerank(c, node.rerank, info, texts, limit)
