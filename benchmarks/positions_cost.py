"""What storing word positions (phrases, issue 35) costs: bytes beside the postings, and ingest rate.

Two collections get the same documents, one as every collection is made now (with `positions`,
and with `field_tfs`/`field_lens` when it has two text fields), one as a collection made before
(those columns dropped and its settings saying so, as tests/test_phrases.py makes one). Each load
is timed once (Collection.add, vectors supplied, batches of 5,000); then the sizes are read:
the postings table (the bar is 1.5x of it), the positions column, and the whole documents
table of each.

    .venv/bin/python benchmarks/positions_cost.py --docs 100000          # synthetic, one text field
    .venv/bin/python benchmarks/positions_cost.py --beir cisi            # CISI, title + text
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sparsesql  # noqa: E402
from sparsesql.db import embedded  # noqa: E402


def documents(args) -> tuple[dict[str, str], list[dict], int]:
    if args.beir:
        import numpy as np

        folder = ROOT.parent / "shared" / "data" / "beir" / args.beir
        rows = [json.loads(line) for line in (folder / "corpus.jsonl").open()]
        rng = np.random.default_rng(0)
        docs = [{"id": r["_id"], "title": r.get("title", ""), "text": r["text"], "vector": rng.standard_normal(4).tolist()} for r in rows]
        return {"title": "text", "text": "text"}, docs, 4
    import synthetic

    docs = [d for batch in synthetic.generate(args.docs, batch=5000) for d in batch]
    return {"text": "text"}, docs, synthetic.DIM


def load(db: sparsesql.Database, name: str, fields: dict, docs: list[dict], dim: int, *, before: bool) -> float:
    db.drop_collection(name, if_exists=True)
    coll = db.create_collection(name, fields, dense="none", dim=dim)
    if before:
        db.conn.execute("UPDATE sparsesql.collections SET settings = settings - 'positions' - 'field_stats' WHERE name = %s", (name,))
        db.conn.execute(f'ALTER TABLE sparsesql."{name}__docs" DROP COLUMN positions')
        if len(fields) > 1:
            db.conn.execute(f'ALTER TABLE sparsesql."{name}__docs" DROP COLUMN field_tfs, DROP COLUMN field_lens')
        db.conn.commit()
        coll = db.collection(name)
    start = time.perf_counter()
    coll.add(docs, batch_size=5000)
    return len(docs) / (time.perf_counter() - start)


def sizes(db: sparsesql.Database, name: str) -> dict[str, int]:
    row = db.conn.execute(
        f"SELECT pg_total_relation_size('sparsesql.\"{name}__postings\"'), pg_total_relation_size('sparsesql.\"{name}__docs\"')").fetchone()
    columns = [r[0] for r in db.conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attname IN ('positions', 'field_tfs', 'field_lens')",
        (f'sparsesql."{name}__docs"',)).fetchall()]
    held = {c: db.conn.execute(f'SELECT coalesce(sum(pg_column_size({c})), 0) FROM sparsesql."{name}__docs"').fetchone()[0] for c in columns}
    return {"postings": row[0], "docs": row[1], **held}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000, help="synthetic documents (benchmarks/synthetic.py)")
    parser.add_argument("--beir", help="a set of ../shared/data/beir instead (title and text fields)")
    parser.add_argument("--dsn", help="a PostgreSQL with pgvector (default: the embedded one in .sparsesql)")
    args = parser.parse_args()
    fields, docs, dim = documents(args)
    dsn = args.dsn or embedded.start(ROOT / ".sparsesql")
    with sparsesql.connect(dsn, sparse_tier=False, dense_tier=False) as db:
        before = load(db, "cost_before", fields, docs, dim, before=True)
        now = load(db, "cost_now", fields, docs, dim, before=False)
        old, new = sizes(db, "cost_before"), sizes(db, "cost_now")
        for name in ("cost_before", "cost_now"):
            db.drop_collection(name)
    mb = 2 ** 20
    print(f"{len(docs)} documents, text fields: {', '.join(fields)}")
    print("| | before positions | now | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| ingest, documents/s | {before:,.0f} | {now:,.0f} | {now / before:.2f}x |")
    print(f"| postings table, MB | {old['postings'] / mb:.1f} | {new['postings'] / mb:.1f} | |")
    print(f"| documents table, MB | {old['docs'] / mb:.1f} | {new['docs'] / mb:.1f} | {new['docs'] / old['docs']:.2f}x |")
    for column in ("positions", "field_tfs", "field_lens"):
        if column in new:
            print(f"| `{column}` column, MB (x the postings table) | | {new[column] / mb:.1f} | {new[column] / new['postings']:.2f}x |")
    added = sum(new.get(c, 0) for c in ("positions", "field_tfs", "field_lens"))
    print(f"| postings + what this stores, x the postings table | | | {(new['postings'] + added) / new['postings']:.2f}x |")


if __name__ == "__main__":
    main()
