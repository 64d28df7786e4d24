"""Speed at scale: sparsesql's SPARSE (memory tier), DENSE and HYBRID beside anchors measured in
the same run on the same synthetic corpus (benchmarks/synthetic.py).

    .venv/bin/python benchmarks/speed.py --docs 10000 100000 [1000000] [--per-band 100] [--vectors hard calibrated]

Per size, in database `sparsesql_speed` on the server sparsesql uses (built once, reused while
the corpus and the generator are unchanged; benchmarks/.cache holds nothing here):
- ingest: sparsesql's Collection.add with precomputed vectors (binary COPY), beside a plain
  executemany INSERT of the same rows (text + vector, no postings) into a scratch table;
- anchors: a SQL posting-table BM25 (precomputed impacts, `SELECT doc, sum(w) ... GROUP BY doc
  ORDER BY 2 DESC LIMIT 10`), bm25s (numba backend if it imports, else numpy), exact numpy
  dense, pgvector HNSW (ef_search 40 and 100, recall@10 against exact), the plain Postgres recipe
  (tsvector + GIN + ts_rank_cd, HNSW, RRF in one statement);
- sparsesql: SPARSE from the memory tier and in SQL; DENSE from the memory tier (codes, then
  exact scores in PostgreSQL), exact in SQL, and through HNSW; the default HYBRID from the memory
  tier and in SQL (its exact reference); each through db.query with the query vector bound (no
  encoding in the timings).
Latency is per query, one at a time, after one warm-up; p50/p95 per band of the query's longest
posting list (<1k, 1k-100k, >100k). Writes benchmarks/results/<--out, speed>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sparsesql  # noqa: E402
from benchmarks import synthetic  # noqa: E402
from benchmarks.anchors import TSQUERY, _RECIPE_QUERY, load_recipe_table  # noqa: E402
from sparsesql.analysis import analyze  # noqa: E402
from sparsesql.db.connect import resolve_dsn  # noqa: E402

DATABASE = "sparsesql_speed"
RESULTS = ROOT / "benchmarks" / "results"
K = 10


def speed_dsn() -> str:
    base = resolve_dsn()
    with psycopg.connect(make_conninfo(base, dbname="postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return make_conninfo(base, dbname=DATABASE)


def percentiles(ms: list[float]) -> dict:
    if not ms:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": statistics.median(ms), "p95": float(np.percentile(ms, 95)), "n": len(ms)}


def timed(fn, queries: list[dict]) -> tuple[list[float], list]:
    fn(queries[0])
    out, ms = [], []
    for q in queries:
        start = time.perf_counter()
        out.append(fn(q))
        ms.append((time.perf_counter() - start) * 1000)
    return ms, out


# ----------------------------------------------------------------------------- building


def add_collection_arguments(parser: argparse.ArgumentParser, vectors: str = "hard") -> None:
    """--docs and --vectors: which collection of this script's another benchmark reads."""
    parser.add_argument("--docs", type=int, default=100_000, help="documents of the speed collection (built by benchmarks/speed.py)")
    parser.add_argument("--vectors", default=vectors, choices=list(synthetic.VECTOR_MODELS), help="its vector model")


def collection_name(n: int, model: str) -> str:
    """speed_<n> for the hard vectors (the name earlier runs built), speed_<n>_<model> otherwise."""
    return f"speed_{n}" if model == "hard" else f"speed_{n}_{model}"


def build(db: sparsesql.Database, n: int, model: str = "hard") -> dict:
    """The collection (reused when complete) and the ingest rate if built now."""
    name = collection_name(n, model)
    stamp = {"synthetic_docs": n, "seed": 0, "fields": "bucket"} | ({} if model == "hard" else {"vectors": model})
    existing = next((c for c in db.collections() if c.name == name), None)
    if existing is not None and existing.extra.get("synthetic") == stamp and existing.n_docs == n:
        return {"name": name, "reused": True}
    db.drop_collection(name, if_exists=True)
    coll = db.create_collection(name, {"text": "text", "bucket": "int"}, dense="none", dim=synthetic.DIM)
    start = time.perf_counter()
    for batch in synthetic.generate(n, seed=0, batch=5000, model=model):
        coll.add([d | {"bucket": int(d["id"][1:]) % 100} for d in batch], batch_size=5000)
    seconds = time.perf_counter() - start
    db.conn.execute("UPDATE sparsesql.collections SET extra = extra || %s WHERE name = %s", (json.dumps({"synthetic": stamp}), name))
    db.conn.execute(f'ANALYZE sparsesql."{name}__postings"')
    return {"name": name, "reused": False, "build_ingest_s": seconds, "build_ingest_docs_per_s": n / seconds}


def ingest_rate(db: sparsesql.Database, n: int) -> float:
    """sparsesql's Collection.add with precomputed vectors (binary COPY, postings, statistics and
    the change log included) into a fresh collection, documents per second."""
    db.drop_collection("speed_ingest_probe", if_exists=True)
    coll = db.create_collection("speed_ingest_probe", {"text": "text"}, dense="none", dim=synthetic.DIM)
    docs = [d for batch in synthetic.generate(n, batch=5000) for d in batch]
    start = time.perf_counter()
    coll.add(docs, batch_size=5000)
    rate = n / (time.perf_counter() - start)
    db.drop_collection("speed_ingest_probe")
    return rate


def executemany_rate(conn: psycopg.Connection, n: int) -> float:
    """Plain executemany INSERT of the first n documents (text + vector), rows per second."""
    conn.execute("DROP TABLE IF EXISTS speed_executemany")
    conn.execute(f"CREATE TABLE speed_executemany (id text PRIMARY KEY, body text, embedding vector({synthetic.DIM}))")
    rows = [(d["id"], d["text"], d["vector"]) for batch in synthetic.generate(n, batch=5000) for d in batch]
    start = time.perf_counter()
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO speed_executemany VALUES (%s, %s, %s)", rows)
    rate = n / (time.perf_counter() - start)
    conn.execute("DROP TABLE speed_executemany")
    return rate


def impacts(conn: psycopg.Connection, name: str) -> float:
    """The SQL posting-table anchor's table: BM25 impacts precomputed per (term, doc)."""
    table = f"{name}__anchor_impacts"
    if conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()[0]:
        return 0.0
    start = time.perf_counter()
    conn.execute(
        f"""CREATE TABLE {table} AS
            SELECT p.term_id, d.doc_id,
                   (ln(1 + (c.n_docs - v.df + 0.5) / (v.df + 0.5)) * p.tf
                    / (p.tf + 0.9 * (1 - 0.4 + 0.4 * d.doc_len / (c.sum_len::float8 / c.n_docs))))::real AS w
            FROM sparsesql."{name}__docs" d CROSS JOIN LATERAL unnest(d.term_ids, d.weights) AS p(term_id, tf)
            JOIN sparsesql."{name}__vocab" v USING (term_id), sparsesql.collections c WHERE c.name = %s""",
        (name,),
    )
    conn.execute(f"CREATE INDEX ON {table} (term_id) INCLUDE (doc_id, w)")
    conn.execute(f"ANALYZE {table}")
    return time.perf_counter() - start


def hnsw(conn: psycopg.Connection, name: str) -> float:
    index = f"{name}__anchor_hnsw"
    if conn.execute("SELECT to_regclass(%s)", (f"sparsesql.{index}",)).fetchone()[0]:
        return 0.0
    start = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '4GB'")
    conn.execute(f'CREATE INDEX {index} ON sparsesql."{name}__dense" USING hnsw (embedding vector_cosine_ops)')
    return time.perf_counter() - start


def recipe(conn: psycopg.Connection, n: int, model: str = "hard") -> float:
    """The plain Postgres recipe's table (benchmarks/anchors.py), streamed from the generator."""
    table = f"{collection_name(n, model)}_recipe"
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
        if conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == n:
            return 0.0
        conn.execute(f"DROP TABLE {table}")  # left half-built by an interrupted run
    start = time.perf_counter()
    rows = ((d["id"], d["text"], d["vector"]) for batch in synthetic.generate(n, batch=5000, model=model) for d in batch)
    load_recipe_table(conn, rows, synthetic.DIM, table)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- one size


def measure(n: int, per_band: int, dsn: str, model: str = "hard") -> dict:
    result: dict = {"docs": n, "vectors": model}
    db = sparsesql.connect(dsn, sparse_tier=False)  # the SQL path: the exact reference
    result["build"] = build(db, n, model)
    name = result["build"]["name"]
    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    sample = min(n, 20_000)
    result["build"]["ingest_sample"] = sample
    result["build"]["ingest_docs_per_s"] = ingest_rate(db, sample)
    result["build"]["executemany_docs_per_s"] = executemany_rate(conn, sample)
    result["build"]["impacts_s"] = impacts(conn, name)
    result["build"]["hnsw_s"] = hnsw(conn, name)
    result["build"]["recipe_s"] = recipe(conn, n, model)

    bands = synthetic.queries_by_band(n, per_band, model=model)
    queries = [q for qs in bands.values() for q in qs]
    band_of = {q["id"]: b for b, qs in bands.items() for q in qs}
    vocab = dict(conn.execute(f'SELECT term, term_id FROM sparsesql."{name}__vocab"').fetchall())
    doc_ids = dict(conn.execute(f'SELECT doc_id, id FROM sparsesql."{name}__docs"').fetchall())
    systems: dict[str, tuple[list[float], list]] = {}

    # exact numpy dense (also the recall reference for HNSW)
    matrix = np.concatenate([b.vectors for b in synthetic.batches(n, batch=20_000, model=model)])
    ids = np.array([f"d{i}" for i in range(n)])

    def exact_dense(q):
        s = matrix @ q["vector"]
        top = np.argpartition(-s, K)[:K]
        return list(ids[top[np.argsort(-s[top])]])

    systems["exact numpy dense"] = timed(exact_dense, queries)
    matrix = None

    def posting_table(q):
        terms = [vocab[t] for t in dict.fromkeys(analyze(q["text"])) if t in vocab]
        return conn.execute(
            f"SELECT doc_id, sum(w) FROM {name}__anchor_impacts WHERE term_id = ANY(%s) GROUP BY doc_id ORDER BY 2 DESC LIMIT {K}", (terms,)
        ).fetchall()

    systems["SQL posting-table BM25"] = timed(posting_table, queries)

    for ef in (40, 100):
        conn.execute(f"SET hnsw.ef_search = {ef}")

        def hnsw_query(q):
            rows = conn.execute(f'SELECT doc_id FROM sparsesql."{name}__dense" ORDER BY embedding <=> %s LIMIT {K}', (q["vector"],)).fetchall()
            return [doc_ids[r[0]] for r in rows]

        systems[f"pgvector HNSW ef_search {ef}"] = timed(hnsw_query, queries)
    conn.execute("SET hnsw.ef_search = 100")
    statement = _RECIPE_QUERY.replace("{tsquery}", TSQUERY["all"]).replace("anchor_docs", f"{name}_recipe")

    def recipe_query(q):
        return conn.execute(statement, {"text": q["text"], "vector": q["vector"], "k": K, "rrf_k": 60}).fetchall()

    systems["Postgres recipe (tsvector + HNSW + RRF)"] = timed(recipe_query, queries)

    retriever, backend, bm25s_s = bm25s_index(n)
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")

    def bm25s_query(q):
        tokens = bm25s.tokenize([q["text"]], stopwords="en", stemmer=stemmer, show_progress=False)
        return retriever.retrieve(tokens, k=K, show_progress=False, backend_selection=backend)

    systems[f"bm25s ({backend})"] = timed(bm25s_query, queries)
    result["build"]["bm25s_s"] = bm25s_s
    retriever = None

    tiered = sparsesql.connect(dsn, sparse_tier=True)
    sparse_text = f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT {K}"
    start = time.perf_counter()
    tiered.query(sparse_text, q=queries[0]["text"])
    result["tier_first_query_s"] = time.perf_counter() - start
    loaded = tiered.tiers.loaded[(name, 0)]
    result["tier_first_source"] = loaded.source
    postings = int(len(loaded.index.docs))
    result["tier_memory"] = {
        "postings": postings,
        "raw_bytes": postings * 6,
        "index_bytes": loaded.memory_bytes(),
        "ratio": loaded.memory_bytes() / max(postings * 6, 1),
    }
    systems["sparsesql SPARSE (memory tier)"] = timed(lambda q: tiered.query(sparse_text, q=q["text"]), queries)
    systems["sparsesql SPARSE (SQL)"] = timed(lambda q: db.query(sparse_text, q=q["text"]), queries)
    dense_text = f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT {K}"
    start = time.perf_counter()
    tiered.query(dense_text, v=queries[0]["vector"])
    result["codes_first_query_s"] = time.perf_counter() - start
    codes = tiered.tiers.dense.loaded[name]
    result["codes"] = {
        "source": codes.source, "describe": codes.data.codes.describe(), "bytes": codes.data.codes.memory_bytes(),
        "float_bytes": codes.data.codes.count * synthetic.DIM * 4,
    }
    systems["sparsesql DENSE (memory tier: codes + exact)"] = timed(lambda q: tiered.query(dense_text, v=q["vector"]), queries)
    systems["sparsesql DENSE (exact, SQL)"] = timed(lambda q: db.query(dense_text, v=q["vector"]), queries)
    ann_text = f"SELECT id, score FROM {name} SEARCH DENSE(:v, ef_search => 100) LIMIT {K}"
    systems["sparsesql DENSE (HNSW, ef_search 100)"] = timed(lambda q: db.query(ann_text, v=q["vector"]), queries)
    hybrid_text = f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:v)) LIMIT {K}"
    systems["sparsesql HYBRID (memory tier)"] = timed(lambda q: tiered.query(hybrid_text, q=q["text"], v=q["vector"]), queries)
    systems["sparsesql HYBRID (exact, SQL)"] = timed(lambda q: db.query(hybrid_text, q=q["text"], v=q["vector"]), queries)
    result["filtered"] = filtered(db, tiered, conn, name, statement, queries[:: max(1, len(queries) // FILTERED_QUERIES)])
    tiered.close()
    result["new_process"] = first_query_in_new_process(dsn, name, queries[0]["text"])
    result["sharing"] = shared_processes(dsn, name, [q["text"] for q in queries[:50]])

    exact = systems["exact numpy dense"][1]
    for ef in (40, 100):
        got = systems[f"pgvector HNSW ef_search {ef}"][1]
        result[f"hnsw_ef{ef}_recall@10"] = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(got, exact)]))
    fast = [{r["id"] for r in rows} for rows in systems["sparsesql HYBRID (memory tier)"][1]]
    slow = [{r["id"] for r in rows} for rows in systems["sparsesql HYBRID (exact, SQL)"][1]]
    result["hybrid_recall@10"] = float(np.mean([len(a & b) / K for a, b in zip(fast, slow)]))
    coded = [{r["id"] for r in rows} for rows in systems["sparsesql DENSE (memory tier: codes + exact)"][1]]
    result["codes_recall@10"] = float(np.mean([len(a & set(b)) / K for a, b in zip(coded, exact)]))
    tier_ids = [[r["id"] for r in rows] for rows in systems["sparsesql SPARSE (memory tier)"][1]]
    sql_ids = [[r["id"] for r in rows] for rows in systems["sparsesql SPARSE (SQL)"][1]]
    result["tier_equals_sql_top10"] = float(np.mean([a == b for a, b in zip(tier_ids, sql_ids)]))
    result["bands"] = {b: len(qs) for b, qs in bands.items()}
    result["latency"] = {
        system: {b: percentiles([m for m, q in zip(ms[0], queries) if band_of[q["id"]] == b]) for b in bands}
        | {"all": percentiles(ms[0]), "qps": 1000 / statistics.mean(ms[0])}
        for system, ms in systems.items()
    }
    conn.close()
    db.close()
    return result


FILTERED_QUERIES = 60
# share kept -> (sparsesql's WHERE, the recipe's same set on its own table). Document d<i> has
# bucket i % 100, a declared int field: the tier evaluates it over its filter columns. LIKE is
# what the tier cannot evaluate itself, so that filter's doc ids come from SQL: the slow case.
FILTERS = {
    "10%": ("bucket IN (1, 11, 21, 31, 41, 51, 61, 71, 81, 91)", "substring(id from 2)::int % 10 = 1"),
    "1%": ("bucket = 1", "substring(id from 2)::int % 100 = 1"),
    "10% by LIKE": ("id LIKE '%1'", "id LIKE '%1'"),
}


def recipe_filtered(statement: str, where: str) -> str:
    """The recipe's statement with a WHERE in both lists (HNSW scans on past filtered-out rows:
    hnsw.iterative_scan, set by the caller)."""
    keyword, semantic = "WHERE d.tsv @@ q.tsq", "ORDER BY embedding <=>"
    assert statement.count(keyword) == 1 and statement.count(semantic) == 1
    where = where.replace("%", "%%")  # the statement binds %(name)s parameters
    return statement.replace(keyword, f"{keyword} AND ({where})").replace(semantic, f"WHERE {where}\n        {semantic}")


def filtered(db: sparsesql.Database, tiered: sparsesql.Database, conn: psycopg.Connection, name: str, recipe_statement: str,
             queries: list[dict]) -> dict:
    """HYBRID with a WHERE that keeps 10% and 1% of the documents: the memory tier against the
    SQL path (its exact reference) and the recipe with the same WHERE, p50 / p95, recall@10, and
    whether LIMIT rows came back."""
    out = {}
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    for share, (where, recipe_where) in FILTERS.items():
        text = f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:v)) WHERE {where} LIMIT {K}"
        fast_ms, fast = timed(lambda q, text=text: tiered.query(text, q=q["text"], v=q["vector"]), queries)
        slow_ms, slow = timed(lambda q, text=text: db.query(text, q=q["text"], v=q["vector"]), queries)
        statement = recipe_filtered(recipe_statement, recipe_where)
        recipe_ms, _ = timed(lambda q: conn.execute(statement, {"text": q["text"], "vector": q["vector"], "k": K, "rrf_k": 60}).fetchall(), queries)
        out[share] = {
            "where": where, "tier": percentiles(fast_ms), "sql": percentiles(slow_ms), "recipe": percentiles(recipe_ms),
            "recall@10": float(np.mean([len({r["id"] for r in a} & {r["id"] for r in b}) / max(len(b), 1) for a, b in zip(fast, slow)])),
            "full_pages": float(np.mean([len(a) == K for a in fast])), "queries": len(queries),
        }
    return out


def bm25s_index(n: int):
    import bm25s
    import Stemmer

    try:
        import numba  # noqa: F401

        backend = "numba"
    except ImportError:
        backend = "numpy"
    texts = [d["text"] for batch in synthetic.generate(n, batch=20_000) for d in batch]
    start = time.perf_counter()
    retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4, backend=backend)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False), show_progress=False)
    return retriever, backend, time.perf_counter() - start


def first_query_in_new_process(dsn: str, name: str, text: str) -> dict:
    """A new interpreter's wall time from its start to its first SPARSE result (snapshot load),
    and how much its resident memory grew from just before the query to just after."""
    code = (
        "import time; t = time.perf_counter(); import sparsesql\n"
        "def rss():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024\n"
        f"db = sparsesql.connect({dsn!r}, sparse_tier=True); before = rss()\n"
        f"db.query('SELECT id FROM {name} SEARCH SPARSE(:q) LIMIT 10', q={text!r})\n"
        "print(time.perf_counter() - t, rss() - before)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    _, grew = out.stdout.split()
    return {"wall_s": wall, "rss_growth_mb": float(grew)}


SHARING_PROCESSES = 4
_SHARING_CHILD = """
import json, sys, time
start = time.perf_counter()
import sparsesql

def smaps():
    anon = next(int(l.split()[1]) for l in open('/proc/self/smaps_rollup') if l.startswith('Anonymous:'))
    mapped, current = 0, None
    for line in open('/proc/self/smaps'):
        head = line.split()
        if '-' in head[0] and len(head) >= 5:
            current = head[-1] if len(head) >= 6 else ''
        elif head[0] == 'Pss:' and current and current.endswith('.npz'):
            mapped += int(head[1])
    return anon / 1024, mapped / 1024

dsn, name, texts = json.loads(sys.argv[1])
db = sparsesql.connect(dsn, sparse_tier=True)
anon_before, _ = smaps()
db.query(f'SELECT id FROM {name} SEARCH SPARSE(:q) LIMIT 10', q=texts[0])
first_s = time.perf_counter() - start
for text in texts[1:]:
    db.query(f'SELECT id FROM {name} SEARCH SPARSE(:q) LIMIT 10', q=text)
loaded = db.tiers.loaded[(name, 0)]
print(json.dumps({'first_s': first_s, 'source': loaded.source, 'tier_mb': loaded.memory_bytes() / 2**20}), flush=True)
sys.stdin.readline()
anon_after, mapped = smaps()
print(json.dumps({'anon_growth_mb': anon_after - anon_before, 'snapshot_pss_mb': mapped}), flush=True)
"""


def shared_processes(dsn: str, name: str, texts: list[str]) -> dict:
    """SHARING_PROCESSES processes search the same collection at once, each from the tier's
    snapshot: each one's share of the mapped snapshot (its Pss) plus its own anonymous memory's
    growth over the searches, summed, against one process's tier size."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _SHARING_CHILD, json.dumps([dsn, name, texts])], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(SHARING_PROCESSES)]
    ready = [json.loads(p.stdout.readline()) for p in procs]  # all of them loaded and searching
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    after = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait(60)
    per_process = [a["snapshot_pss_mb"] + a["anon_growth_mb"] for a in after]
    one = ready[0]["tier_mb"]
    return {"processes": SHARING_PROCESSES, "searches_each": len(texts), "tier_mb": one, "per_process_mb": per_process,
            "total_mb": sum(per_process), "ratio_to_one_tier": sum(per_process) / one, "first_query_s": [r["first_s"] for r in ready],
            "sources": [r["source"] for r in ready], "detail": after}


# ----------------------------------------------------------------------------- report


def report(results: list[dict], command: str) -> str:
    lines = [
        f"## sparsesql speed, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"`{command}` on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs. "
        "Latency per query in ms (p50 / p95), one query at a time, query vectors precomputed; "
        "ratio = anchor's p50 / sparsesql's p50 in the same run (above 1: sparsesql faster).",
        "",
    ]
    for r in results:
        n = r["docs"]
        b = r["build"]
        lines.append(f"### {n:,} documents, {r.get('vectors', 'hard')} vectors")
        lines.append("")
        bands = [x for x in r["bands"] if r["bands"][x]]
        lines.append("| system | " + " | ".join(f"{x} ({r['bands'][x]} q)" for x in bands) + " | all | qps |")
        lines.append("|---|" + "---|" * (len(bands) + 2))
        for system, lat in r["latency"].items():
            cells = [f"{lat[x]['p50']:.2f} / {lat[x]['p95']:.2f}" if lat[x]["p50"] is not None else "–" for x in bands]
            lines.append(f"| {system} | " + " | ".join(cells) + f" | {lat['all']['p50']:.2f} / {lat['all']['p95']:.2f} | {lat['qps']:.0f} |")
        tier = r["latency"]["sparsesql SPARSE (memory tier)"]
        lines.append("")
        for anchor in ("SQL posting-table BM25", next(s for s in r["latency"] if s.startswith("bm25s")), "sparsesql SPARSE (SQL)"):
            ratios = []
            for x in bands:
                if tier[x]["p50"]:
                    ratios.append(f"{x}: p50 {r['latency'][anchor][x]['p50'] / tier[x]['p50']:.2f}x, p95 {r['latency'][anchor][x]['p95'] / tier[x]['p95']:.2f}x")
            lines.append(f"- memory-tier SPARSE vs {anchor}: " + "; ".join(ratios))
        lat = {k: v["all"] for k, v in r["latency"].items()}
        hyb, rec = lat["sparsesql HYBRID (memory tier)"], lat["Postgres recipe (tsvector + HNSW + RRF)"]
        lines.append(
            f"- HYBRID (memory tier, default fusion) vs the Postgres recipe: p50 {rec['p50'] / hyb['p50']:.2f}x, p95 {rec['p95'] / hyb['p95']:.2f}x; "
            f"its recall@10 against the exact HYBRID (the SQL path: same fusion over exact top-200 lists) {r['hybrid_recall@10']:.3f}"
        )
        dns, hnsw100 = lat["sparsesql DENSE (memory tier: codes + exact)"], lat["pgvector HNSW ef_search 100"]
        c = r["codes"]
        lines.append(
            f"- DENSE (memory tier) vs pgvector HNSW ef_search 100: p50 {hnsw100['p50'] / dns['p50']:.2f}x, p95 {hnsw100['p95'] / dns['p95']:.2f}x; "
            f"recall@10 against exact {r['codes_recall@10']:.3f}; {c['describe']}, {c['bytes'] / 2**20:.1f} MB = 1/{c['float_bytes'] / c['bytes']:.1f} "
            f"of the float32 vectors; first query ({'coding every vector read from Postgres' if c['source'] == 'vectors' else 'from the snapshot'}) "
            f"{r['codes_first_query_s']:.2f} s"
        )
        m = r["tier_memory"]
        lines.append(
            f"- memory tier: {m['postings']:,} postings, {m['index_bytes'] / 2**20:.1f} MB = {m['ratio']:.2f}x the raw postings "
            f"(6 bytes each); first query ({'loading every posting from Postgres' if r['tier_first_source'] == 'postings' else 'from the snapshot'}) "
            f"{r['tier_first_query_s']:.2f} s; a new process serves its first query "
            f"{r['new_process']['wall_s']:.2f} s after starting (snapshot), its RSS growing {r['new_process']['rss_growth_mb']:.0f} MB; "
            f"top-10 equal to SQL's on {r['tier_equals_sql_top10']:.1%} of queries"
        )
        sh = r.get("sharing")
        if sh:
            lines.append(
                f"- {sh['processes']} processes searching the collection at once ({sh['searches_each']} SPARSE each, tiers from the "
                f"snapshot, memory-mapped): {sh['total_mb']:.1f} MB in all (their Pss of the snapshot plus each one's own anonymous "
                f"growth: {', '.join(f'{x:.1f}' for x in sh['per_process_mb'])}) = {sh['ratio_to_one_tier']:.2f}x one process's tier "
                f"({sh['tier_mb']:.1f} MB); first query {min(sh['first_query_s']):.2f}-{max(sh['first_query_s']):.2f} s after each started"
            )
        for share, f in r["filtered"].items():
            lines.append(
                f"- HYBRID with a WHERE keeping {share} (`{f['where']}`, {f['queries']} queries): memory tier {f['tier']['p50']:.2f} / "
                f"{f['tier']['p95']:.2f} ms ({f['tier']['p50'] / hyb['p50']:.2f}x the unfiltered p50), SQL path {f['sql']['p50']:.2f} / "
                f"{f['sql']['p95']:.2f} ms, the recipe with the same WHERE {f['recipe']['p50']:.2f} / {f['recipe']['p95']:.2f} ms "
                f"({f['recipe']['p50'] / f['tier']['p50']:.2f}x / {f['recipe']['p95'] / f['tier']['p95']:.2f}x); "
                f"recall@10 against the SQL path {f['recall@10']:.3f}; {f['full_pages']:.0%} of pages with {K} rows"
            )
        lines.append(f"- HNSW recall@10 against exact: ef_search 40 {r['hnsw_ef40_recall@10']:.3f}, ef_search 100 {r['hnsw_ef100_recall@10']:.3f}")
        lines.append(
            f"- ingest of {b['ingest_sample']:,} documents with precomputed vectors: {b['ingest_docs_per_s']:,.0f} docs/s "
            f"(binary COPY; postings, statistics and change log included) vs plain executemany INSERT of the same rows "
            f"(text + vector, nothing else) {b['executemany_docs_per_s']:,.0f} rows/s"
        )
        lines.append(
            f"- build: posting-table impacts {b['impacts_s']:.1f} s, HNSW {b['hnsw_s']:.1f} s, recipe table {b['recipe_s']:.1f} s, bm25s index {b['bm25s_s']:.1f} s (0.0 = reused)"
        )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--per-band", type=int, default=100)
    parser.add_argument("--out", default="speed", help="results file name under benchmarks/results (.md, .json)")
    parser.add_argument("--vectors", nargs="+", choices=synthetic.VECTOR_MODELS, default=["hard"],
                        help="vector models: hard (centroid + isotropic noise) and/or calibrated (LID like MiniLM's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dsn = speed_dsn()
    results = [measure(n, args.per_band, dsn, model) for model in args.vectors for n in args.docs]
    command = "benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(results, command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(text + "\n")
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
