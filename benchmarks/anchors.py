"""Reference systems measured in the same run as sparsesql, so comparisons share one machine.

Each function returns a run: query id -> {doc id -> score}, at most TOP_K documents per query,
over the judged queries of a BEIR folder; the Postgres recipe also returns its latency per query,
since sparsesql's HYBRID is meant to replace it. Documents are read as ``title + " " + text``
everywhere, which is what the reference numbers in shared/data/beir/README.md were measured on.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from sparsesql.encoders import DenseEncoder, load_dense_encoder
from sparsesql.eval import corpus_fingerprint, load_corpus, test_queries

if TYPE_CHECKING:
    import psycopg

Run = dict[str, dict[str, float]]

TOP_K = 100
# The encoder the reference numbers were measured with: sentence-transformers on torch, float32.
REFERENCE_ENCODER = ("torch", "float32")
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
ANCHOR_DATABASE = "sparsesql_anchor"


def _documents(folder: str | Path) -> tuple[list[str], list[str]]:
    """Return (ids, texts) of the corpus in file order, text being title + " " + text."""
    ids, texts = [], []
    for doc in load_corpus(folder):
        ids.append(doc["id"])
        texts.append(f"{doc['title']} {doc['text']}")
    return ids, texts


def _top(ids: Sequence[str], scores: np.ndarray, k: int) -> dict[str, float]:
    """The k best (doc id -> score) of one score row; ties broken by corpus order."""
    order = np.argsort(-scores, kind="stable")[:k]
    return {ids[i]: float(scores[i]) for i in order}


def _ranked(scores: Mapping[str, float]) -> list[str]:
    """Doc ids by descending score; tied documents keep the order the system returned them in.

    Ties are common (on limit-small 97% of bm25s top-11 lists have tied scores), and RRF sees
    ranks, not scores: breaking ties by doc id instead moves limit-small RRF from 0.699 to 0.702.
    """
    return sorted(scores, key=lambda doc: -scores[doc])


def _head(scores: Mapping[str, float], depth: int) -> dict[str, float]:
    """The `depth` best entries of a fused list, best first."""
    return {doc: scores[doc] for doc in _ranked(scores)[:depth]}


def bm25s_run(folder: str | Path, k: int = TOP_K) -> Run:
    """bm25s, Lucene BM25 (k1=0.9, b=0.4), English stopwords and Snowball stemming.

    The query tokens are scored as bm25s does: a token occurring twice in a query adds its
    term score twice.
    """
    import bm25s
    import Stemmer

    ids, texts = _documents(folder)
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    queries = test_queries(folder)
    tokens = bm25s.tokenize(
        list(queries.values()), stopwords="en", stemmer=stemmer, show_progress=False
    )
    rows, scores = retriever.retrieve(tokens, k=min(k, len(ids)), show_progress=False)
    return {
        qid: {ids[int(doc)]: float(score) for doc, score in zip(row, row_scores)}
        for qid, row, row_scores in zip(queries, rows, scores)
    }


@contextmanager
def encoder_settings(backend: str | None, precision: str | None) -> Iterator[DenseEncoder]:
    """The dense encoder with SPARSESQL_ENCODER_BACKEND and _PRECISION set (None: unset, the
    defaults) for a block, so an anchor can encode as the reference did while sparsesql runs
    with its defaults."""
    names = {"SPARSESQL_ENCODER_BACKEND": backend, "SPARSESQL_ENCODER_PRECISION": precision}
    before = {name: os.environ.pop(name, None) for name in names}
    os.environ.update({name: value for name, value in names.items() if value})
    try:
        yield load_dense_encoder()
    finally:
        for name, value in before.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def corpus_vectors(folder: str | Path, encoder: DenseEncoder) -> np.ndarray:
    """Encode the corpus once per (corpus bytes, encoder, backend, precision); later calls read the .npy cache."""
    exact = (encoder.backend, encoder.precision) == ("torch", "float32")
    name = encoder.name if exact else f"{encoder.name}-{encoder.backend}-{encoder.precision}"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-60:]
    path = CACHE_DIR / f"{corpus_fingerprint(folder)[:24]}-{slug}.npy"
    if path.exists():
        return np.load(path)
    _, texts = _documents(folder)
    vectors = encoder.encode(texts, progress=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npy")
    np.save(partial, vectors)
    partial.replace(path)
    return vectors


def exact_dense_run(folder: str | Path, encoder: DenseEncoder, k: int = TOP_K) -> Run:
    """Exact cosine similarity (dot product of unit vectors) against every document."""
    ids, _ = _documents(folder)
    doc_vectors = corpus_vectors(folder, encoder)
    queries = test_queries(folder)
    similarities = encoder.encode(list(queries.values())) @ doc_vectors.T
    return {qid: _top(ids, row, k) for qid, row in zip(queries, similarities)}


def rrf_run(runs: Sequence[Run], k: int = 60, depth: int = TOP_K) -> Run:
    """Reciprocal rank fusion: score = sum over runs of 1 / (k + rank), ranks from 1."""
    fused: Run = {}
    for run in runs:
        for qid, scores in run.items():
            target = fused.setdefault(qid, {})
            for rank, doc in enumerate(_ranked(scores), start=1):
                target[doc] = target.get(doc, 0.0) + 1.0 / (k + rank)
    return {qid: _head(scores, depth) for qid, scores in fused.items()}


def _minmax(scores: Mapping[str, float]) -> dict[str, float]:
    """Scale one query's scores to [0, 1]; a list whose scores are all equal maps to 1."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {doc: (s - low) / span if span > 0 else 1.0 for doc, s in scores.items()}


def minmax_linear_run(a: Run, b: Run, alpha: float = 0.5, depth: int = TOP_K) -> Run:
    """alpha * minmax(a) + (1 - alpha) * minmax(b) per query; a list lacking a document gives 0."""
    fused: Run = {}
    for qid in dict.fromkeys([*a, *b]):
        na, nb = _minmax(a.get(qid, {})), _minmax(b.get(qid, {}))
        scores = {
            doc: alpha * na.get(doc, 0.0) + (1 - alpha) * nb.get(doc, 0.0)
            for doc in dict.fromkeys([*na, *nb])  # ordered, so ties cut at `depth` are stable
        }
        fused[qid] = _head(scores, depth)
    return fused


# How the recipe turns query text into a tsquery. "all" is what the README reference used:
# websearch_to_tsquery ANDs the lexemes (honouring "quotes", "or" and -negation), so on long
# queries the full-text list is usually empty (67 of 76 on cisi) and the recipe is nearly the
# vector list alone. "any" keeps plainto_tsquery's lexemes but ORs them.
TSQUERY = {
    "all": "websearch_to_tsquery('english', %(text)s)",
    "any": "replace(plainto_tsquery('english', %(text)s)::text, '&', '|')::tsquery",
}

# The recipe's one statement: a full-text top-k and a vector top-k, fused by RRF. Each list is
# cut in an inner query so that the vector side is the plain ORDER BY distance LIMIT k that
# the HNSW index serves.
_RECIPE_QUERY = """
WITH keyword AS (
    SELECT id, row_number() OVER (ORDER BY rank DESC, id) AS position
    FROM (
        SELECT d.id, ts_rank_cd(d.tsv, q.tsq) AS rank
        FROM anchor_docs d,
             (SELECT {tsquery}) AS q(tsq)
        WHERE d.tsv @@ q.tsq
        ORDER BY rank DESC, d.id
        LIMIT %(k)s
    ) AS hits
),
semantic AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS position
    FROM (
        SELECT id, embedding <=> %(vector)s AS distance
        FROM anchor_docs
        ORDER BY embedding <=> %(vector)s
        LIMIT %(k)s
    ) AS hits
)
SELECT coalesce(s.id, w.id) AS id,
       coalesce(1.0 / (%(rrf_k)s + s.position), 0.0)
     + coalesce(1.0 / (%(rrf_k)s + w.position), 0.0) AS score
FROM semantic s FULL OUTER JOIN keyword w ON s.id = w.id
ORDER BY score DESC, id
LIMIT %(k)s
"""


def _anchor_database(dsn: str) -> str:
    """Create the sparsesql_anchor database (with pgvector) if needed; return its conninfo."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (ANCHOR_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ANCHOR_DATABASE)))
    anchor = make_conninfo(dsn, dbname=ANCHOR_DATABASE)
    with psycopg.connect(anchor, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return anchor


def load_recipe_table(conn: psycopg.Connection, rows: Iterable[tuple[str, str, np.ndarray]], dim: int, table: str = "anchor_docs") -> None:
    """(Re)create the recipe's table from (id, text, vector) rows: generated tsvector + GIN
    index, vector + HNSW cosine index."""
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(
        f"""CREATE TABLE {table} (
            id text PRIMARY KEY,
            body text NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
            embedding vector({dim}) NOT NULL)"""
    )
    with conn.cursor().copy(f"COPY {table} (id, body, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "vector"])
        for row in rows:
            copy.write_row(row)
    conn.execute("SET maintenance_work_mem = '4GB'")
    conn.execute(f"CREATE INDEX ON {table} USING gin (tsv)")
    conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops)")
    conn.execute(f"ANALYZE {table}")


def postgres_recipe_run(
    folder: str | Path,
    dsn: str,
    encoder: DenseEncoder | None = None,
    match: Literal["all", "any"] = "all",
    k: int = TOP_K,
    rrf_k: int = 60,
) -> tuple[Run, list[float]]:
    """The plain Postgres hybrid recipe: tsvector/GIN + ts_rank_cd, pgvector HNSW, RRF in SQL.

    Returns the run and each query's latency in ms. A query is timed as an application would
    run it, and as sparsesql.eval times its searches: encode the text, execute the statement,
    fetch the rows; one untimed warm-up query goes first.

    `match` picks the tsquery (see TSQUERY). Works in its own database, sparsesql_anchor, on the
    server at `dsn`, and replaces its table on every call. hnsw.ef_search is raised to k, since
    HNSW otherwise returns at most 40 rows.
    """
    import psycopg
    from pgvector.psycopg import register_vector

    statement = _RECIPE_QUERY.replace("{tsquery}", TSQUERY[match])
    encoder = encoder or load_dense_encoder()
    ids, texts = _documents(folder)
    vectors = corpus_vectors(folder, encoder)
    queries = test_queries(folder)
    with psycopg.connect(_anchor_database(dsn), autocommit=True) as conn:
        register_vector(conn)
        load_recipe_table(conn, zip(ids, texts, vectors), vectors.shape[1])
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(max(k, 40)),))

        def search(text: str) -> list[tuple[str, float]]:
            vector = encoder.encode([text])[0]
            params = {"text": text, "vector": vector, "k": k, "rrf_k": rrf_k}
            return conn.execute(statement, params).fetchall()

        search(next(iter(queries.values()), ""))
        run: Run = {}
        latencies: list[float] = []
        for qid, text in queries.items():
            start = time.perf_counter()
            rows = search(text)
            latencies.append((time.perf_counter() - start) * 1000)
            run[qid] = {doc: float(score) for doc, score in rows}
    return run, latencies
