"""The stages a plan is made of. Each is plain data; `exec/run.py` has one function per kind.

Stages communicate through named slots in the run's context: an encoder stage fills
`<label>_vector`, candidate, feedback and fusion stages fill `ranked:<label>` (and `floor:<label>`
when the list holds every document that scores: see `absent`), and the last stage produces the
rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.lang import ast
from sparsesql.lang.check_search import DenseSignal, Fusion
from sparsesql.lang.check_boost import CheckedBoost
from sparsesql.lang.check_facets import CheckedFacets
from sparsesql.lang.check_rerank import CheckedRerank
from sparsesql.lang.check_page import CheckedCursor, CheckedHighlight


@dataclass
class Allowed:
    """A filter reaching the memory tier as the doc ids it keeps: `where` evaluated over the
    tier's filter columns where it can be (`params`: the query's values), else `statement` (binds
    the stage's params) run in SQL in the search's snapshot."""

    where: ast.Predicate
    params: dict
    statement: sql.Composed


@dataclass
class SyntaxIds:
    """A sparse signal's phrases and exclusions reaching the memory tier as doc ids, from SQL
    (retrieval/phrase.py): the ones it keeps (`keeps`), or the ones it drops."""

    statement: sql.Composed
    keeps: bool
    text: str  # what the syntax asks, for EXPLAIN
    words: tuple[str, ...] = ()  # exclusions of single terms only: the tier drops their holders from its own postings


@dataclass
class EncodeQuery:
    """Embed a text query with the collection's dense model (runs in Python, no SQL)."""

    label: str
    text: str
    model: str
    name: str = "encode"


@dataclass
class Candidates:
    """One signal's top-k (doc_id, score) from SQL; `vector_slot` names an encoded query to bind."""

    label: str
    statement: sql.Composed
    params: dict
    k: int
    vector_slot: str | None = None
    settings: dict[str, str] = field(default_factory=dict)  # transaction-local, set just before
    absent: float | None = None  # a non-match's score (sparse: 0): the floor of a list shorter than k
    name: str = "candidates"


@dataclass
class TierCandidates:
    """A sparse signal's top-k from the in-memory tier; `fallback` (the Candidates SQL, with
    `params`) runs instead when the tier cannot serve the collection."""

    label: str
    collection: CollectionInfo
    field: SparseField
    idf: bool
    terms: dict[str, float]
    k: int
    fallback: sql.Composed
    params: dict
    vector_slot: str | None = None
    absent: float | None = 0.0
    allowed: Allowed | None = None  # the filter, or None: no filter
    after: tuple[float, int] | None = None  # only documents ranking after this (score, doc id)
    syntax: SyntaxIds | None = None  # the search syntax's phrases and exclusions
    fields: tuple[float, ...] | None = None  # BM25F's weights, a text field each
    name: str = "candidates"


@dataclass
class TierDense:
    """A dense signal's top-k: candidates from the in-memory codes (`search_k` of them, plus every
    document the lists in `union` hold), scored exactly from the tier's full vectors. With
    `columns` (a DENSE-only search), `statement` fetches the final rows by id (binds `ids`) and
    commits the snapshot. `fallback` runs instead when the tier cannot serve the collection."""

    label: str
    collection: CollectionInfo
    k: int
    search_k: int
    statement: sql.Composed | None
    fallback: sql.Composed
    params: dict
    vector_slot: str | None = None
    union: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    absent: float | None = None
    allowed: Allowed | None = None  # as TierCandidates'
    name: str = "candidates"


@dataclass
class Feedback:
    """Second pass of one side: its query moved by the top `depth` of list `source`, in SQL."""

    label: str
    side: str
    method: str
    source: str
    depth: int
    statement: sql.Composed
    params: dict
    k: int
    prefix: str
    vector_slot: str | None = None
    selective: bool = False
    absent: float | None = None
    terms_statement: sql.Composed | None = None  # RM3's expansion terms, read when HIGHLIGHT marks them
    name: str = "prf"


@dataclass
class Fuse:
    """Combine ranked lists in Python and keep the top `limit` as list `out`."""

    labels: list[str]
    fusion: Fusion
    limit: int
    out: str = "final"
    name: str = "fuse"


@dataclass
class FetchRows:
    """Fetch the selected columns of the top `limit` of list `source`, in one round trip, in order."""

    statement: sql.Composed
    columns: tuple[str, ...]
    source: str = "final"
    limit: int | None = None
    name: str = "fetch"


@dataclass
class SqlRows:
    """A single statement that yields the final rows (single-signal search, or no search)."""

    statement: sql.Composed
    params: dict
    columns: tuple[str, ...]
    scored: bool
    vector_slot: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    name: str = "rows"


@dataclass
class Rescore:
    """List `label` scored again, exactly, for the documents the graph added (binds rescore_ids)."""

    label: str
    statement: sql.Composed
    prefix: str
    vector_slot: str | None = None


@dataclass
class Diversify:
    """Choose `limit` documents from the top `candidates` of list `source`, in SQL + Python.

    One statement fetches the pool's dense vectors. With `hops`, one more adds the pool's graph
    neighbours (filtered), each list in `rescore` scores them exactly, and the fusions in
    `replay` run again, so the newcomers' relevance is the search's own.
    """

    source: str
    method: str
    lam: float
    candidates: int
    hops: int
    limit: int
    vectors: sql.Composed
    params: dict = field(default_factory=dict)
    expand: sql.Composed | None = None
    expand_filter: sql.Composed | None = None  # distributed collections: the filter, after the walk
    rescore: list[Rescore] = field(default_factory=list)
    replay: list[Fuse] = field(default_factory=list)
    out: str = "chosen"
    name: str = "diversify"


@dataclass
class Boost:
    """ORDER BY over the top `depth` of list `source`: their fields from the memory tier's filter
    columns, else fetched by id (`statement`, binds %(ids)s); the expression computed in Python;
    fills list `out`."""

    source: str
    boost: CheckedBoost
    statement: sql.Composed
    depth: int
    collection: CollectionInfo
    out: str = "boosted"
    name: str = "boost"


@dataclass
class Rerank:
    """RERANK over the top `rerank.candidates` of list `source`: their texts fetched by id
    (`statement`, binds %(ids)s), scored by the cross-encoder; fills list `out`."""

    source: str
    rerank: CheckedRerank
    statement: sql.Composed
    out: str = "reranked"
    name: str = "rerank"


Stage = EncodeQuery | Candidates | TierCandidates | TierDense | Feedback | Fuse | Diversify | Boost | Rerank | FetchRows | SqlRows


@dataclass
class FacetHits:
    """The same hits as the facet's statement, as the memory tier finds them: the documents the
    filter keeps (`allowed`; None: every document), and of those, with `field`, the ones holding
    any of `terms`; the list's ids when the stage has a `source`."""

    facets: CheckedFacets
    allowed: Allowed | None = None
    field: SparseField | None = None
    terms: tuple[str, ...] = ()


@dataclass
class Facets:
    """GROUP BY over the search's hits in one statement: every match (no `source`), or the top
    `depth` of list `source`, bound as %(ids)s; from the filter columns instead (`memory`)
    when the tier holds every column the facet names."""

    statement: sql.Composed
    params: dict
    columns: tuple[str, ...]
    source: str | None = None
    depth: int = 0
    memory: FacetHits | None = None
    collection: CollectionInfo | None = None
    name: str = "facets"


@dataclass
class Highlighting:
    """The HIGHLIGHT columns, made from the page's fetched rows: lexical when the search has
    terms (the analyzer's stems to mark), else semantic, from the dense signal's query vector."""

    items: tuple[CheckedHighlight, ...]
    terms: frozenset[str]
    dense: DenseSignal | None
    collection: CollectionInfo
    expansion: bool = False  # WITH PRF's sparse side ran RM3: its terms are marked apart

@dataclass
class Plan:
    """Ordered stages, and the columns a row of the result carries."""

    collection: str
    stages: list[Stage]
    columns: tuple[str, ...]
    with_score: bool
    defaults: tuple[tuple[str, str, str], ...] = ()  # (argument, value, source) the query left out
    distributed: dict | None = None  # the collection's placement on a Citus cluster, or None: one node
    offset: int = 0  # the ranking's rows before the page (OFFSET): the stage that yields rows skips them
    size: int | None = None  # the page's rows (LIMIT); None: all the ranking's rows from `offset`
    cursor: CheckedCursor | None = None  # the rows' cursors to make, the cursor the page starts after
    ordered_by_score: bool = True  # False after DIVERSIFY: rows come in the order they were chosen
    seek: bool = False  # the ranking starts after the cursor's (score, doc id): the page is its first rows
    exclude: frozenset[int] = frozenset()  # doc ids no list or page holds (LIKE's examples)
    syntax: tuple[str, ...] = ()  # what each sparse signal's search syntax and field weights ask (for EXPLAIN)
    likes: tuple[str, ...] = ()  # what each LIKE query searches with
    highlighting: Highlighting | None = None
    hidden: tuple[str, ...] = ()  # columns fetched for the highlights or the collapse only
    collapse: str | None = None  # DISTINCT ON: the column whose first row per value is kept
    facets: tuple[str, ...] = ()  # GROUP BY: the facet's columns; its rows are the result
    version: int = 0  # the collection's count of committed writes, as the search's snapshot reads it
    search_key: str = ""  # the search's fingerprint: with `version`, what its candidate lists depend on
