"""A distributed collection beside the same collection on one node, on the local Citus cluster.

    .venv/bin/python benchmarks/distributed.py [--docs 100000] [--queries 100] [--shards 32]

Starts (or reuses) `sparsesql cluster` in benchmarks/.cache/cluster (a coordinator and two
workers on this machine, so no speed-up is expected: the figures show what distribution costs
and where the work goes) and loads --docs synthetic documents (benchmarks/synthetic.py, vectors
supplied) twice: `dist_single`, local to the coordinator (the anchor), and `dist_spread`,
`distributed => true` over --shards shards. Then, for SPARSE, DENSE and HYBRID through the SQL
path and through the memory tier (loaded from the distributed tables), it measures each
collection's latency (p50 / p95) and time per plan stage, and for the sparse and dense candidate
statements of the spread collection, from Citus' EXPLAIN ANALYZE with every task shown: the
tasks (shards) they ran, the rows and bytes the workers sent the coordinator, and each shard's
own time. Writes benchmarks/results/distributed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sparsesql  # noqa: E402
from benchmarks import synthetic  # noqa: E402
from sparsesql import cluster  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
RESULTS = ROOT / "benchmarks" / "results"
K = 10
SEARCHES = {"SPARSE": "SPARSE(:q)", "DENSE": "DENSE(:v)", "HYBRID": "HYBRID(SPARSE(:q), DENSE(:v))"}


def load(db: sparsesql.Database, name: str, n: int, shards: int | None) -> float:
    """The collection (reused when complete); its ingest rate when built now (docs/s), else 0."""
    existing = next((c for c in db.collections() if c.name == name), None)
    if existing is not None and existing.n_docs == n:
        return 0.0
    db.drop_collection(name, if_exists=True)
    options = {"distributed": True, "shards": shards} if shards else {}
    coll = db.create_collection(name, {"text": "text"}, dense="none", dim=synthetic.DIM, **options)
    start = time.perf_counter()
    for batch in synthetic.generate(n, seed=0, batch=5000):
        coll.add(batch, batch_size=5000)
    return n / (time.perf_counter() - start)


def percentiles(ms: list[float]) -> dict:
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}


def measure(db: sparsesql.Database, name: str, search: str, queries: list[dict]) -> dict:
    text = f"SELECT id, score FROM {name} SEARCH {search} LIMIT {K}"
    db.query(text, q=queries[0]["text"], v=queries[0]["vector"].tolist())  # warm-up
    ms, stages, answers = [], {}, []
    for q in queries:
        start = time.perf_counter()
        rows = db.query(text, q=q["text"], v=q["vector"].tolist())
        ms.append((time.perf_counter() - start) * 1000)
        answers.append([r["id"] for r in rows])
        for record in db.last_stages:
            stages.setdefault(f"{record.stage} [{record.label}]" if record.label else record.stage, []).append(record.ms)
    return {"latency": percentiles(ms), "stages": {k: statistics.median(v) for k, v in stages.items()}, "answers": answers}


def shard_work(db: sparsesql.Database, name: str, q: dict) -> dict:
    """Citus' EXPLAIN ANALYZE of the sparse and the exact dense candidate statements (the text
    the compiler emits for an unfiltered search), every task shown: tasks, rows and bytes the
    workers sent the coordinator, each shard's own time."""
    from psycopg import sql as pgsql

    from sparsesql.retrieval import dense, sparse

    info = db.collection(name).info
    field = info.sparse_field()
    terms = sparse.query_terms(field, q["text"])
    statements = {
        "sparse": (sparse.candidates_sql(info, field, pgsql.SQL("TRUE"), ""), sparse.bind(terms, K, "")),
        "dense": (dense.candidates_sql(info, pgsql.SQL("TRUE"), ""), {"vector": Vector(q["vector"].astype(np.float32)), "k": K}),
    }
    out = {}
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET citus.explain_all_tasks = on")
        for label, (statement, params) in statements.items():
            plan = conn.execute(pgsql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(statement), params).fetchone()[0][0]
            found: dict = {"tasks": 0, "bytes_from_workers": 0, "rows_from_workers": 0, "task_ms": []}

            def walk(node: dict) -> None:
                if "Distributed Query" in node:
                    job = node["Distributed Query"]["Job"]
                    found["tasks"] += job.get("Task Count", 0)
                    found["bytes_from_workers"] += int(str(job.get("Tuple data received from nodes", "0 bytes")).split()[0])
                    for task in job.get("Tasks", []):
                        for sub in task.get("Remote Plan", []):
                            top = (sub[0] if isinstance(sub, list) else sub)["Plan"]
                            found["task_ms"].append(top["Actual Total Time"])
                            found["rows_from_workers"] += int(top["Actual Rows"])
                for child in node.get("Plans", []):
                    walk(child)

            walk(plan["Plan"])
            times = found.pop("task_ms")
            found["task_ms"] = {"min": min(times), "median": statistics.median(times), "max": max(times)} if times else None
            found["coordinator_total_ms"] = plan["Plan"]["Actual Total Time"]
            out[label] = found
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--shards", type=int, default=32)
    args = parser.parse_args(argv)
    home = CACHE / "cluster"
    running = cluster.start(home)
    db = sparsesql.connect(running.dsn, sparse_tier=False)
    rates = {"single": load(db, "dist_single", args.docs, None), "spread": load(db, "dist_spread", args.docs, args.shards)}
    queries = synthetic.queries(args.docs, args.queries)
    out: dict = {"docs": args.docs, "shards": args.shards, "queries": len(queries), "ingest_docs_per_s": rates, "searches": {}}
    tiered = sparsesql.connect(running.dsn, sparse_tier=True)
    for path, conn in (("sql", db), ("tier", tiered)):
        for label, search in SEARCHES.items():
            single = measure(conn, "dist_single", search, queries)
            spread = measure(conn, "dist_spread", search, queries)
            same = float(np.mean([a == b for a, b in zip(single.pop("answers"), spread.pop("answers"))]))
            out["searches"][f"{label} ({path})"] = {"single": single, "spread": spread, "same_top10": same}
    tiered.close()
    out["statements"] = shard_work(db, "dist_spread", queries[0])
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out["command"] = "benchmarks/distributed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"## A distributed collection beside one node, {out['date']}",
        "",
        f"`{out['command']}`: {args.docs:,} synthetic documents, a coordinator and two workers on this machine (no speed-up "
        f"expected), {len(queries)} queries one at a time, through the SQL path and through the memory tier. Ratio = spread / single.",
        "",
        "| search | one node p50 / p95 ms | distributed p50 / p95 ms | ratio (p50) | same top 10 |",
        "|---|---|---|---|---|",
    ]
    for label, r in out["searches"].items():
        a, b = r["single"]["latency"], r["spread"]["latency"]
        lines.append(f"| {label} | {a['p50']:.1f} / {a['p95']:.1f} | {b['p50']:.1f} / {b['p95']:.1f} | {b['p50'] / a['p50']:.2f}x | {r['same_top10']:.0%} |")
    lines += ["", "Median time per stage (ms), one node -> distributed:", ""]
    for label, r in out["searches"].items():
        stages = ", ".join(f"{k} {r['single']['stages'][k]:.1f} -> {r['spread']['stages'].get(k, float('nan')):.1f}" for k in r["single"]["stages"])
        lines.append(f"- {label}: {stages}")
    lines.append("")
    for label, d in out["statements"].items():
        lines.append(
            f"- the {label} candidate statement (first query) ran as {d['tasks']} tasks (one per shard); the workers sent the "
            f"coordinator {d['rows_from_workers']:,} rows ({d['bytes_from_workers']:,} bytes); each shard's own time "
            + (f"{d['task_ms']['min']:.1f} / {d['task_ms']['median']:.1f} / {d['task_ms']['max']:.1f} ms (min / median / max)" if d["task_ms"] else "not reported")
            + f"; {d['coordinator_total_ms']:.1f} ms in all at the coordinator"
        )
    lines.append(f"- ingest: one node {rates['single']:,.0f} docs/s, distributed {rates['spread']:,.0f} docs/s (0 = reused)")
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed.md").write_text(text + "\n")
    (RESULTS / "distributed.json").write_text(json.dumps(out, indent=1) + "\n")
    print(text)
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
