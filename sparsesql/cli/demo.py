"""`make demo`: the main job end to end on the embedded database, with nothing downloaded.

Loads the shipped CISI collection (once; later runs reuse it), runs sparse, dense, hybrid,
filtered hybrid and hybrid + PRF + coverage queries, shows a plan with its timings, and evaluates
the searches.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from sparsesql.cli.output import print_rows
from sparsesql.eval.run import evaluate, load_beir

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "cisi"
QUESTION = "How can the effectiveness of information retrieval systems be measured?"
SEARCHES = {
    "sparse (BM25)": "SPARSE(:q)",
    "dense (MiniLM)": "DENSE(:q)",
    "hybrid (default: adaptive min-max)": "HYBRID(SPARSE(:q), DENSE(:q))",
    "hybrid rrf(k => 60)": "HYBRID(SPARSE(:q), DENSE(:q), fusion => rrf(k => 60))",
    "hybrid + PRF": "HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF",
}
# DIVERSIFY chooses LIMIT documents as a set, so its nDCG@10 is measured at LIMIT 10 (a LIMIT 100
# selection weighs coverage against the mean relevance of 100 documents, not of 10).
DIVERSIFIED = ("hybrid, coverage (LIMIT 10)", "HYBRID(SPARSE(:q), DENSE(:q)) DIVERSIFY BY COVERAGE")


def _show(db, title: str, statement: str, **params: object) -> None:
    click.secho(f"\n== {title}", bold=True)
    click.echo(statement.strip())
    print_rows(db.query(statement, **params), as_json=False)


def _ready_encoder() -> str:
    """Load the dense model before the load is timed (the first run on a machine also converts
    it for OpenVINO), and say what runs it."""
    from sparsesql.encoders.dense import load_dense_encoder

    start = time.perf_counter()
    encoder = load_dense_encoder()
    where = "the GPU" if encoder.device.startswith("cuda") else "the CPU"
    click.echo(f"dense model: MiniLM on {where}, {encoder.backend} {encoder.precision}, ready in {time.perf_counter() - start:.1f} s")
    return where


def run_demo(db, data: Path | None = None) -> None:
    folder = data or SHIPPED
    click.echo(f"database: {db.dsn}")
    where = _ready_encoder()
    start = time.perf_counter()
    name = load_beir(db, folder, progress=True)
    seconds = time.perf_counter() - start
    count = db.collection(name).count()
    if seconds > 1:  # loaded now, not found loaded
        click.echo(f"loaded {count} documents in {seconds:.0f} s ({count / seconds:.0f} documents/s: MiniLM encoding on "
                   f"{where} is nearly all of it; benchmarks/ingest.py measures it)")
    click.echo(f"collection {name}: {count} documents from {folder}")
    for title, search in list(SEARCHES.items())[:3]:
        _show(db, title, f"SELECT id, title, score FROM {name} SEARCH {search} LIMIT 5", q=QUESTION)
    _show(
        db,
        "hybrid with a filter",
        f"SELECT id, title, score FROM {name}\nSEARCH HYBRID(SPARSE(:q), DENSE(:q), fusion => rrf(k => 60))\n"
        "WHERE title ILIKE '%index%' OR title ILIKE '%catalog%'\nLIMIT 5",
        q=QUESTION,
    )
    _show(
        db,
        "hybrid with pseudo-relevance feedback, diversified by coverage",
        f"SELECT id, title, score FROM {name}\nSEARCH HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF\n"
        "DIVERSIFY BY COVERAGE(candidates => 100, lambda => 0.7)\nLIMIT 5",
        q=QUESTION,
    )
    click.secho("\n== EXPLAIN ANALYZE", bold=True)
    click.echo(db.explain(f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 5", analyze=True, q=QUESTION))
    click.secho(f"\n== evaluation on {name} ({folder})", bold=True)
    click.echo(f"{'search':34} {'nDCG@10':>8} {'R@100':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for title, search, limit in [*((t, s, 100) for t, s in SEARCHES.items()), (*DIVERSIFIED, 10)]:
        s = evaluate(db, folder, search, limit=limit).summary()
        recall = f"{s['recall@100']:8.4f}" if limit >= 100 else f"{'-':>8}"
        click.echo(f"{title:34} {s['ndcg@10']:8.4f} {recall} {s['p50_ms']:8.1f} {s['p95_ms']:8.1f}")
