"""Could a per-query predictor tell when PRF will help? Measured before building one.

    .venv/bin/python benchmarks/prf_gate.py ../shared/data/beir/{cisi,limit-small,med,cacm,npl}

For every judged query of each set: the per-query nDCG@10 of the bare HYBRID and of the bare
`HYBRID ... WITH PRF` (the engine's defaults), and four query-performance predictors read from
the first pass: how many of the sparse and dense top 10 agree, the dense top-1 cosine, the sparse
list's score gap (its 10th score over its first) and the query's length in words. For each set,
each predictor's Pearson correlation with PRF's gain, and PRF's mean gain when it runs only where
the two top 10s share at least t documents (the rest keep the first pass). A predictor worth
building holds the sign of its correlation on every set.

Writes benchmarks/results/prf_gate.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import report  # noqa: E402
from anchors import CACHE_DIR  # noqa: E402

import sparsesql  # noqa: E402
from sparsesql.db import embedded  # noqa: E402
from sparsesql.eval import evaluate_run, load_qrels  # noqa: E402
from sparsesql.eval.beir import test_queries  # noqa: E402
from sparsesql.eval.run import load_beir  # noqa: E402

HERE = Path(__file__).resolve().parent
PREDICTORS = ("top-10 agreement", "dense top-1 cosine", "sparse score gap", "query words")
THRESHOLDS = (1, 2, 3, 4)


def per_query(run: dict[str, list[str]], qrels: dict) -> dict[str, float]:
    scored = {q: {d: float(10 - i) for i, d in enumerate(ids)} for q, ids in run.items()}
    return {q: m["ndcg_cut_10"] for q, m in evaluate_run(scored, qrels).items()}


def measure(db, name: str, folder: str) -> dict:
    hybrid, prf, features = {}, {}, {}
    for qid, text in test_queries(folder).items():
        sparse = [(r["id"], r["score"]) for r in db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 10", q=text)]
        dense = [(r["id"], r["score"]) for r in db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:q) LIMIT 10", q=text)]
        hybrid[qid] = [r["id"] for r in db.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 10", q=text)]
        prf[qid] = [r["id"] for r in db.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF LIMIT 10", q=text)]
        gap = sparse[-1][1] / sparse[0][1] if sparse and sparse[0][1] > 0 else 0.0
        features[qid] = [len({d for d, _ in sparse} & {d for d, _ in dense}), dense[0][1] if dense else 0.0, gap, len(text.split())]
    qrels = load_qrels(folder)
    h, p = per_query(hybrid, qrels), per_query(prf, qrels)
    qids = sorted(h)
    gain = np.array([p[q] - h[q] for q in qids])
    x = np.array([features[q] for q in qids], dtype=np.float64)
    corr = {name: float(np.corrcoef(x[:, i], gain)[0, 1]) if x[:, i].std() > 0 else None for i, name in enumerate(PREDICTORS)}
    gated = {t: float(np.where(x[:, 0] >= t, gain, 0.0).mean()) for t in THRESHOLDS}
    return {"queries": len(qids), "hybrid": statistics.fmean(h.values()), "prf": statistics.fmean(p.values()),
            "gain": float(gain.mean()), "correlation": corr, "gated": gated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--dsn")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "prf_gate")
    args = parser.parse_args()
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    db = sparsesql.connect(args.dsn or embedded.start(CACHE_DIR), sparse_tier=True)
    results = {}
    for folder in args.folders:
        name = load_beir(db, folder, progress=True)
        results[name] = measure(db, name, folder)
    date = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    cell = lambda v: "n/a" if v is None else f"{v:+.2f}"  # noqa: E731
    lines = ["## Predicting PRF's gain per query", "", f"`{command}`, {date}", "",
             "| set | queries | HYBRID | WITH PRF | gain | " + " | ".join(f"corr. with {p}" for p in PREDICTORS) + " | "
             + " | ".join(f"gain if agreement >= {t}" for t in THRESHOLDS) + " |",
             "|---|---|---|---|---|" + "---|" * (len(PREDICTORS) + len(THRESHOLDS))]
    for name, r in results.items():
        lines.append(f"| {name} | {r['queries']} | {r['hybrid']:.4f} | {r['prf']:.4f} | {r['gain']:+.4f} | "
                     + " | ".join(cell(r["correlation"][p]) for p in PREDICTORS) + " | "
                     + " | ".join(f"{r['gated'][t]:+.4f}" for t in THRESHOLDS) + " |")
    report.write(args.out, lines, {"command": command, "date": date, "results": results})


if __name__ == "__main__":
    main()
