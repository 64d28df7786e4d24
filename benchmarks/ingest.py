"""Ingest rates: text to searchable collection, beside the serial path and plain loads of the same rows.

    .venv/bin/python benchmarks/ingest.py [--docs 100000] [--skip-minilm] [--skip-batched]

Two loads, each measured in one run against anchors of the same run:

- **MiniLM from text** (CISI, 1,460 abstracts, ../shared/data/beir/cisi): `Collection.add` of the
  whole corpus (the pipeline: batch n + 1 analysed and encoded in a thread while batch n is
  written) beside the serial path, one `add` call per batch of 500 (analysis, encoding and the
  write one after another, as ingest ran before the pipeline). The two collections' vectors are
  compared bit for bit: the same vectors give the same DENSE answers, so every nDCG is unchanged.
- **Precomputed vectors** (--docs synthetic documents, benchmarks/synthetic.py, 384-dim vectors):
  `Collection.add(bulk=True)` (transactions of 100,000 documents, postings formed once each) and
  `Collection.add` in batches of 5,000 (a transaction each; --skip-batched leaves it out), beside
  a plain executemany INSERT and a plain binary COPY of the same rows (id, text, vector) into a
  table with nothing else (no postings, statistics or change log). Each load starts from an
  empty collection.

Runs on the default embedded server (its `speed` database, as benchmarks/speed.py) and writes
benchmarks/results/ingest.{md,json} (ingest_1m.{md,json} for --docs 1000000).
"""

from __future__ import annotations

import argparse
import json
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
from benchmarks.speed import speed_dsn  # noqa: E402
from sparsesql.eval.beir import load_corpus  # noqa: E402
from sparsesql.eval.run import BEIR_FIELDS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CISI = ROOT.parent / "shared" / "data" / "beir" / "cisi"
BATCH = 500


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def minilm(db: sparsesql.Database) -> dict:
    """CISI through MiniLM: pipelined add vs one add per batch (serial), docs/s; vectors compared."""
    docs = list(load_corpus(CISI))
    from sparsesql.encoders.dense import load_dense_encoder

    load_dense_encoder("minilm-l6").encode(["warm up"])  # the model's load is not ingest
    out: dict = {"docs": len(docs)}
    for label in ("serial", "pipelined"):
        name = f"ingest_cisi_{label}"
        db.drop_collection(name, if_exists=True)
        coll = db.create_collection(name, BEIR_FIELDS)
        if label == "serial":
            seconds = timed(lambda: [coll.add(docs[i:i + BATCH], batch_size=BATCH) for i in range(0, len(docs), BATCH)])
        else:
            seconds = timed(lambda: coll.add(docs, batch_size=BATCH))
        out[label] = len(docs) / seconds
    with psycopg.connect(db.dsn) as conn:
        same = conn.execute(
            "SELECT count(*) FILTER (WHERE a.embedding = b.embedding), count(*) FROM sparsesql.ingest_cisi_serial__docs AS x "
            "JOIN sparsesql.ingest_cisi_serial__dense AS a USING (doc_id) JOIN sparsesql.ingest_cisi_pipelined__docs AS y ON y.id = x.id "
            "JOIN sparsesql.ingest_cisi_pipelined__dense AS b ON b.doc_id = y.doc_id"
        ).fetchone()
    out["identical_vectors"], out["compared"] = same
    for label in ("serial", "pipelined"):
        db.drop_collection(f"ingest_cisi_{label}")
    return out


def precomputed(db: sparsesql.Database, n: int, skip_batched: bool = False) -> dict:
    """Synthetic documents with vectors: Collection.add vs executemany and binary COPY of the same rows."""
    rows = [d for batch in synthetic.generate(n, seed=0, batch=10_000) for d in batch]
    out: dict = {"docs": n}
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
    args = parser.parse_args(argv)
    db = sparsesql.connect(speed_dsn(), sparse_tier=False)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": "benchmarks/ingest.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if not args.skip_minilm:
        out["minilm"] = minilm(db)
    out["precomputed"] = precomputed(db, args.docs, args.skip_batched)
    db.close()
    lines = [f"## Ingest, {out['date']}", "", f"`{out['command']}` on this machine (2 cores).", ""]
    if "minilm" in out:
        m = out["minilm"]
        lines += [
            f"MiniLM from text, CISI ({m['docs']:,} abstracts), batches of {BATCH}:", "",
            "| path | documents/s | ratio |", "|---|---|---|",
            f"| serial (one add per batch: analyse, encode, write in turn) | {m['serial']:.1f} | 1.00x |",
            f"| pipelined (Collection.add) | {m['pipelined']:.1f} | {m['pipelined'] / m['serial']:.2f}x |",
            "", f"Vectors identical in both collections: {m['identical_vectors']:,} of {m['compared']:,} (so DENSE's nDCG is unchanged).", "",
        ]
    p = out["precomputed"]
    lines += [
        f"Precomputed vectors, {p['docs']:,} synthetic documents ({synthetic.DIM} dimensions):", "",
        "| load | rows/s | bulk / it |", "|---|---|---|",
        f"| sparsesql Collection.add(bulk=True) (postings, statistics, change log) | {p['bulk']:,.0f} | 1.00x |",
        *([f"| sparsesql Collection.add, batches of 5,000 | {p['batched']:,.0f} | {p['bulk'] / p['batched']:.2f}x |"] if "batched" in p else []),
        f"| executemany INSERT (id, text, vector only) | {p['executemany']:,.0f} | {p['bulk'] / p['executemany']:.2f}x |",
        f"| binary COPY (id, text, vector only) | {p['binary_copy']:,.0f} | {p['bulk'] / p['binary_copy']:.2f}x |",
    ]
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    n = args.docs
    name = "ingest" if n == 100_000 else f"ingest_{n // 1_000_000}m" if n % 1_000_000 == 0 else f"ingest_{n // 1000}k"
    (RESULTS / f"{name}.md").write_text(text + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
