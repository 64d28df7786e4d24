"""BUILD GRAPH at scale: the approximate build (candidates from the dense codes, exact similarities)
beside exact brute force measured in the same run.

    .venv/bin/python benchmarks/graph.py --docs 100000 --vectors calibrated [--k 16] [--sample 2000]

Builds the graph of the speed benchmark's collection (benchmarks/speed.py builds it; run that
first for the size and vector model) through `BUILD GRAPH ON <collection> WITH (k => 16)`, timed
end to end (vectors read from PostgreSQL, codes, search, exact scoring, edges written, commit).
The anchor is exact brute force in numpy over the same vectors in memory: its time for --sample
source documents, extrapolated to every document (the exact build's work grows as N^2, so its
real cost is at least that), and the true k neighbours of those sources, against which the
stored graph's recall is measured. Writes benchmarks/results/graph_<docs>_<vectors>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sparsesql  # noqa: E402
from benchmarks.speed import add_collection_arguments, collection_name, speed_dsn  # noqa: E402
from sparsesql.tier.dense_cache import every_vector  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_collection_arguments(parser, "calibrated")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--sample", type=int, default=2000, help="source documents whose true neighbours are computed exactly")
    args = parser.parse_args(argv)
    name = collection_name(args.docs, args.vectors)
    dsn = speed_dsn()
    db = sparsesql.connect(dsn, sparse_tier=False)
    info = next((c for c in db.collections() if c.name == name), None)
    if info is None:
        print(f"no collection {name}: run benchmarks/speed.py --docs {args.docs} --vectors {args.vectors} first", file=sys.stderr)
        return 2
    start = time.perf_counter()
    edges = db.query(f"BUILD GRAPH ON {name} WITH (k => {args.k})")[0]["edges"]
    build_s = time.perf_counter() - start
    method = {r["property"]: r["value"] for r in db.query(f"SHOW GRAPH {name}")}.get("method") if args.docs <= 200_000 else None

    with psycopg.connect(dsn, autocommit=True) as conn:
        ids, vectors = every_vector(conn, db.collection(name).info)
    unit = vectors.astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    unit32 = unit.astype(np.float32)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(ids), min(args.sample, len(ids)), replace=False))
    start = time.perf_counter()
    truth = {}
    for lo in range(0, len(sample), 256):
        rows = sample[lo:lo + 256]
        sims = unit32[rows] @ unit32.T
        sims[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-sims, args.k, axis=1)[:, : args.k]
        for r, t in zip(rows, top):
            truth[int(ids[r])] = set(ids[t].tolist())
    exact_s = time.perf_counter() - start
    exact_all_s = exact_s * len(ids) / len(sample)
    with psycopg.connect(dsn, autocommit=True) as conn:
        stored = conn.execute(
            f'SELECT src, dst FROM sparsesql."{name}__graph" WHERE src = ANY(%s)', (list(truth),)
        ).fetchall()
    got: dict[int, set[int]] = {}
    for src, dst in stored:
        got.setdefault(src, set()).add(dst)
    recall = float(np.mean([len(got.get(s, set()) & t) / args.k for s, t in truth.items()]))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": "benchmarks/graph.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "collection": name, "docs": len(ids), "k": args.k, "edges": edges, "build_s": build_s, "method": method,
        "exact_sample_s": exact_s, "exact_extrapolated_s": exact_all_s, "sample": len(sample), "recall": recall,
    }
    text = "\n".join([
        f"## BUILD GRAPH at {len(ids):,} documents ({args.vectors} vectors), {result['date']}",
        "",
        f"`{result['command']}` on {len(ids):,} documents of `{name}`, k = {args.k}.",
        "",
        "| | seconds | |",
        "|---|---|---|",
        f"| sparsesql BUILD GRAPH (candidates from the codes, exact similarities; read, search, score, write, commit) | {build_s:.1f} | {edges:,} edges |",
        f"| exact brute force in numpy, in memory (anchor): {len(sample):,} sources timed, extrapolated to all | {exact_all_s:.1f} | "
        f"{exact_all_s / build_s:.1f}x the build's time |",
        "",
        f"- recall of the true {args.k} neighbours (exact, numpy) on {len(sample):,} random source documents: {recall:.4f}",
        f"- method recorded: {method or '(SHOW GRAPH not run past 200k documents: it reads every edge into networkx)'}",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"graph_{args.docs}_{args.vectors}"
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
