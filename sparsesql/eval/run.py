"""`sparsesql eval`: load a BEIR folder into a collection (once), run every test query through the
dialect, and score the run with trec_eval semantics.

The collection is named after the folder and reused while its recorded corpus fingerprint
matches; a load that was interrupted (no fingerprint yet) resumes, since re-adding unchanged
documents costs only a hash comparison.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from sparsesql.db.catalog import set_extra
from sparsesql.encoders.dense import forget_query_vectors
from sparsesql.eval.beir import corpus_fingerprint, load_corpus, load_qrels, test_queries
from sparsesql.eval.metrics import evaluate_run, mean_metrics

BEIR_FIELDS = {"title": "text", "text": "text"}


@dataclass
class EvalResult:
    collection: str
    search: str
    queries: int
    ndcg10: float
    recall100: float
    p50_ms: float
    p95_ms: float
    per_query: dict = field(default_factory=dict, repr=False)
    run: dict = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        return {
            "ndcg@10": round(self.ndcg10, 4),
            "recall@100": round(self.recall100, 4),
            "p50_ms": round(self.p50_ms, 2),
            "p95_ms": round(self.p95_ms, 2),
            "queries": self.queries,
        }


def collection_name(folder: str | Path) -> str:
    """The folder's name as a collection name: lowercase, other characters as underscores."""
    name = re.sub(r"[^a-z0-9_]+", "_", Path(folder).resolve().name.lower()).strip("_") or "beir"
    name = re.sub(r"_+", "_", name)
    return name if not name[0].isdigit() else f"c_{name}"


def load_beir(db, folder: str | Path, *, progress: bool = False, sparse_model: str | None = None) -> str:
    """Make sure the folder's corpus is loaded; returns the collection name. With `sparse_model`
    (a local masked-LM folder) the collection `<name>_splade` also holds a learned sparse field
    'splade' encoded by it, for `SPARSE(:q, field => 'splade')`."""
    name = collection_name(folder)
    options: dict = {}
    fingerprint = corpus_fingerprint(folder)
    if sparse_model is not None:
        from sparsesql.encoders.sparse import load_sparse_encoder

        load_sparse_encoder(sparse_model)  # a wrong folder fails before a loaded collection is replaced
        name += "_splade"
        options = {"sparse": ["bm25", "splade"], "sparse_model": sparse_model}
        fingerprint += f"|sparse_model={Path(sparse_model).expanduser().resolve()}"
    existing = next((c for c in db.collections() if c.name == name), None)
    if existing is not None and existing.extra.get("fingerprint") == fingerprint:
        return name
    if existing is not None and existing.extra.get("fingerprint") is not None:
        db.drop_collection(name)
        existing = None
    if existing is None:
        db.create_collection(name, BEIR_FIELDS, **options)
    db.collection(name).add(load_corpus(folder), progress=progress)
    set_extra(db.conn, name, "fingerprint", fingerprint)
    return name


def evaluate(
    db,
    folder: str | Path,
    search: str,
    *,
    limit: int = 100,
    progress: bool = False,
    sparse_model: str | None = None,
    collection: str | None = None,
) -> EvalResult:
    """Run `SELECT id, score FROM <coll> SEARCH <search> LIMIT <limit>` for every test query.
    `collection`: the name `load_beir` already returned for the folder, so that a sweep of many
    searches does not hash the corpus again for each."""
    name = collection or load_beir(db, folder, progress=progress, sparse_model=sparse_model)
    queries = test_queries(folder)
    qrels = load_qrels(folder)
    statement = f"SELECT id, score FROM {name} SEARCH {search} LIMIT {int(limit)}"
    first = next(iter(queries.values()), "")
    db.query(statement, q=first)  # warm-up: loads the encoder before anything is timed
    forget_query_vectors()  # each query's latency includes its encoding, whatever ran before
    run: dict[str, dict[str, float]] = {}
    latencies = []
    from tqdm import tqdm

    for qid, text in tqdm(queries.items(), disable=not progress, desc="queries", unit="q"):
        start = time.perf_counter()
        rows = db.query(statement, q=text)
        latencies.append((time.perf_counter() - start) * 1000)
        # Scored by rank, not by `score`: rows come in the engine's order, which after DIVERSIFY
        # is the selection order while `score` stays the search's relevance.
        run[qid] = {r["id"]: float(len(rows) - i) for i, r in enumerate(rows)}
    per_query = evaluate_run(run, qrels)
    means = mean_metrics(per_query)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))] if latencies else 0.0
    result = EvalResult(
        collection=name,
        search=search,
        queries=len(queries),
        ndcg10=means["ndcg@10"],
        recall100=means["recall@100"],
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p95_ms=p95,
        per_query=per_query,
        run=run,
    )
    _record(db, result)
    return result


KEPT_RUNS = 50


def _record(db, result: EvalResult) -> None:
    """Keep the run's summary with the collection (the last KEPT_RUNS), for the web console's
    eval table; a role that may not update the catalog simply keeps none."""
    import datetime as dt

    import psycopg

    entry = {"search": result.search, "queries": result.queries, **result.summary(), "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        row = db.conn.execute("SELECT extra->'eval_runs' FROM sparsesql.collections WHERE name = %s", (result.collection,)).fetchone()
        runs = (row[0] if row and isinstance(row[0], list) else []) + [entry]
        set_extra(db.conn, result.collection, "eval_runs", runs[-KEPT_RUNS:])
    except psycopg.errors.InsufficientPrivilege:
        pass
