"""Ingest rates: text to searchable collection, beside the serial path and plain loads of the same rows.

    .venv/bin/python benchmarks/ingest.py [--docs 100000] [--skip-minilm] [--skip-batched] [--skip-before] [--skip-precomputed]

Two loads, each measured in one run against anchors of the same run:

- **MiniLM from text** (CISI, 1,460 abstracts, ../shared/data/beir/cisi): `Collection.add` of the
  whole corpus (the pipeline: batch n + 1 analysed and encoded in a thread while batch n is
  written) with the encoder's defaults (OpenVINO on a CPU, batches of 16 texts, bfloat16 matrix
  products where the CPU has them), with torch in float32 and in bfloat16, beside the path as it
  was: one `add` call per batch of 500 (analysis, encoding and the write one after another),
  torch float32 batches of 64. DENSE's answers are then scored both ways: exact cosine search
  (what DENSE(:q) matches, see benchmarks/quality.py) over every development set in
  ../shared/data/beir, documents and queries encoded by torch float32 and by the defaults,
  nDCG@10 side by side.
- **Precomputed vectors** (--docs synthetic documents, benchmarks/synthetic.py, 384-dim vectors):
  `Collection.add(bulk=True)` (transactions of 100,000 documents, postings formed once each) and
  `Collection.add` in batches of 5,000 (a transaction each; --skip-batched leaves it out), beside
  the same load by the code as it was when issue 21 was filed (commit ISSUE_COMMIT, exported
  from this clone's git history into benchmarks/.cache and run in a process of its own against
  a database of its own on the same server; --skip-before leaves it out), and beside
  a plain executemany INSERT and a plain binary COPY of the same rows (id, text, vector) into a
  table with nothing else (no postings, statistics or change log). Each load starts from an
  empty collection.

Runs on the default embedded server (its `speed` database, as benchmarks/speed.py) and writes
benchmarks/results/ingest.{md,json} (ingest_1m.{md,json} for --docs 1000000).
"""

from __future__ import annotations

import argparse
import json
import os
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
from benchmarks.anchors import REFERENCE_ENCODER, encoder_settings, exact_dense_run  # noqa: E402
from benchmarks.speed import speed_dsn  # noqa: E402
from sparsesql.eval.beir import load_corpus, load_qrels  # noqa: E402
from sparsesql.eval.metrics import evaluate_run, mean_metrics  # noqa: E402
from sparsesql.eval.run import BEIR_FIELDS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BEIR = ROOT.parent / "shared" / "data" / "beir"
CISI = BEIR / "cisi"
BATCH = 500


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def minilm(db: sparsesql.Database) -> dict:
    """CISI through MiniLM: the path as it was (serial, torch float32 batches of 64) vs the
    pipeline with torch float32, torch bfloat16 and the defaults, docs/s; then DENSE's nDCG@10 on
    every set with torch float32 and with the defaults."""
    docs = list(load_corpus(CISI))
    out: dict = {"docs": len(docs)}
    loads = {"before": ("torch", "float32", 64), "float32": ("torch", "float32", None),
             "bfloat16": ("torch", "bfloat16", None), "default": (None, None, None)}
    for label, (backend, chosen, batch) in loads.items():
        with encoder_settings(backend, chosen) as dense:
            dense.encode(["warm up", "the model's load is not ingest"])
            out[f"{label}_encoder"] = f"{dense.backend} {dense.precision}"
            kept, dense.batch_size = dense.batch_size, batch or dense.batch_size
            out[f"{label}_batch"] = dense.batch_size
            name = f"ingest_cisi_{label}"
            db.drop_collection(name, if_exists=True)
            coll = db.create_collection(name, BEIR_FIELDS)
            try:
                if label == "before":
                    seconds = timed(lambda: [coll.add(docs[i:i + BATCH], batch_size=BATCH) for i in range(0, len(docs), BATCH)])
                else:
                    seconds = timed(lambda: coll.add(docs, batch_size=BATCH))
            finally:
                dense.batch_size = kept
            out[label] = len(docs) / seconds
            db.drop_collection(name)
    out["ndcg@10"] = {}
    for folder in sorted(p for p in BEIR.iterdir() if (p / "corpus.jsonl").exists()):
        qrels = load_qrels(folder)
        scores = {}
        for label, (backend, chosen) in (("float32", REFERENCE_ENCODER), ("default", (None, None))):
            with encoder_settings(backend, chosen) as dense:
                scores[label] = mean_metrics(evaluate_run(exact_dense_run(folder, dense), qrels))["ndcg@10"]
        out["ndcg@10"][folder.name] = scores
    return out


# main when issue 21 was filed: its Collection.add (batches of 5,000) is the 2,025 documents/s
# the issue set out to triple (benchmarks/results/speed.md, 20,000 documents).
ISSUE_COMMIT = "040be06"
BEFORE = """
import sys, time
sys.path.insert(0, sys.argv[1])
import sparsesql
from benchmarks import synthetic
n = int(sys.argv[3])
db = sparsesql.connect(sys.argv[2], sparse_tier=False)
db.drop_collection("ingest_before", if_exists=True)
coll = db.create_collection("ingest_before", {"text": "text"}, dense="none", dim=synthetic.DIM)
rows = [d for batch in synthetic.generate(n, seed=0, batch=10_000) for d in batch]
start = time.perf_counter()
coll.add(rows, batch_size=5000)
print(n / (time.perf_counter() - start))
db.drop_collection("ingest_before")
"""


def before(db: sparsesql.Database, n: int) -> float | None:
    """The same load by the code at ISSUE_COMMIT (exported from this clone's history into
    benchmarks/.cache), in a process of its own on a database of its own on the same server;
    None, with the reason on stderr, where the history is not there."""
    import subprocess

    tree = ROOT / "benchmarks" / ".cache" / f"sparsesql-{ISSUE_COMMIT}"
    if not (tree / "sparsesql").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ISSUE_COMMIT], capture_output=True)
        if archive.returncode != 0:
            print(f"no 'before' row: git archive {ISSUE_COMMIT} failed ({archive.stderr.decode().strip()})", file=sys.stderr)
            return None
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'ingest_before'").fetchone():
            conn.execute("CREATE DATABASE ingest_before")
    dsn = psycopg.conninfo.make_conninfo(db.dsn, dbname="ingest_before")
    done = subprocess.run([sys.executable, "-c", BEFORE, str(tree), dsn, str(n)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    if done.returncode != 0:
        print(f"no 'before' row: the load at {ISSUE_COMMIT} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(done.stdout.split()[-1])


def precomputed(db: sparsesql.Database, n: int, skip_batched: bool = False, skip_before: bool = False) -> dict:
    """Synthetic documents with vectors: Collection.add vs the code at the issue's filing, and
    beside executemany and binary COPY of the same rows."""
    out: dict = {"docs": n}
    if not skip_before:
        out["before"] = before(db, n)
    rows = [d for batch in synthetic.generate(n, seed=0, batch=10_000) for d in batch]
    loads = {"bulk": {"bulk": True}} | ({} if skip_batched else {"batched": {"batch_size": 5000}})
    for label, options in loads.items():
        db.drop_collection("ingest_probe", if_exists=True)
        coll = db.create_collection("ingest_probe", {"text": "text"}, dense="none", dim=synthetic.DIM)
        out[label] = n / timed(lambda: coll.add(rows, **options))
        db.drop_collection("ingest_probe")
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        register_vector(conn)
        table = f"CREATE TABLE ingest_plain (id text PRIMARY KEY, body text, embedding vector({synthetic.DIM}))"
        conn.execute("DROP TABLE IF EXISTS ingest_plain")
        conn.execute(table)
        values = [(d["id"], d["text"], Vector(np.asarray(d["vector"], dtype=np.float32))) for d in rows]

        def many() -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany("INSERT INTO ingest_plain VALUES (%s, %s, %s)", values)

        out["executemany"] = n / timed(many)
        conn.execute("DROP TABLE ingest_plain")
        conn.execute(table)

        def copy() -> None:
            with conn.transaction(), conn.cursor() as cur, cur.copy("COPY ingest_plain FROM STDIN (FORMAT BINARY)") as c:
                c.set_types(["text", "text", "vector"])
                for row in values:
                    c.write_row(row)

        out["binary_copy"] = n / timed(copy)
        conn.execute("DROP TABLE ingest_plain")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--skip-batched", action="store_true", help="leave out the load in batches of 5,000")
    parser.add_argument("--skip-precomputed", action="store_true", help="only the MiniLM load")
    parser.add_argument("--skip-before", action="store_true", help=f"leave out the load by the code at {ISSUE_COMMIT}")
    args = parser.parse_args(argv)
    db = sparsesql.connect(speed_dsn(), sparse_tier=False)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": "benchmarks/ingest.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if not args.skip_minilm:
        out["minilm"] = minilm(db)
    if not args.skip_precomputed:
        out["precomputed"] = precomputed(db, args.docs, args.skip_batched, args.skip_before)
    db.close()
    lines = [f"## Ingest, {out['date']}", "", f"`{out['command']}` on this machine (2 cores).", ""]
    if "minilm" in out:
        m = out["minilm"]
        sets = m["ndcg@10"]
        rows = (("before", "as before: one add per batch (analyse, encode, write in turn)"),
                ("float32", "Collection.add (pipelined)"), ("bfloat16", "Collection.add (pipelined)"),
                ("default", "Collection.add (pipelined), the defaults"))
        lines += [
            f"MiniLM from text, CISI ({m['docs']:,} abstracts), batches of {BATCH} documents:", "",
            "| path | encoder | documents/s | ratio |", "|---|---|---|---|",
            *(f"| {what} | {m[label + '_encoder']}, {m[label + '_batch']} texts a pass | {m[label]:.1f} | {m[label] / m['before']:.2f}x |"
              for label, what in rows),
            "", f"DENSE nDCG@10 (exact cosine search), documents and queries encoded by torch float32 and by the defaults ({m['default_encoder']}):", "",
            "| encoder | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets),
            "| torch float32 | " + " | ".join(f"{v['float32']:.4f}" for v in sets.values()) + " |",
            f"| {m['default_encoder']} | " + " | ".join(f"{v['default']:.4f}" for v in sets.values()) + " |",
            "| difference | " + " | ".join(f"{v['default'] - v['float32']:+.4f}" for v in sets.values()) + " |", "",
        ]
    p = out.get("precomputed")
    lines += [] if p is None else [
        f"Precomputed vectors, {p['docs']:,} synthetic documents ({synthetic.DIM} dimensions):", "",
        "| load | rows/s | bulk / it |", "|---|---|---|",
        f"| sparsesql Collection.add(bulk=True) (postings, statistics, change log) | {p['bulk']:,.0f} | 1.00x |",
        *([f"| sparsesql at {ISSUE_COMMIT} (issue 21 filed), Collection.add in batches of 5,000 | {p['before']:,.0f} | "
           f"{p['bulk'] / p['before']:.2f}x |"] if p.get("before") else []),
        *([f"| sparsesql Collection.add, batches of 5,000 | {p['batched']:,.0f} | {p['bulk'] / p['batched']:.2f}x |"] if "batched" in p else []),
        f"| executemany INSERT (id, text, vector only) | {p['executemany']:,.0f} | {p['bulk'] / p['executemany']:.2f}x |",
        f"| binary COPY (id, text, vector only) | {p['binary_copy']:,.0f} | {p['bulk'] / p['binary_copy']:.2f}x |",
    ]
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    n = args.docs
    name = "ingest_minilm" if p is None else "ingest" if n == 100_000 else f"ingest_{n // 1_000_000}m" if n % 1_000_000 == 0 else f"ingest_{n // 1000}k"
    (RESULTS / f"{name}.md").write_text(text + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
