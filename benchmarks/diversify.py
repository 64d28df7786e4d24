"""Coverage-aware selection next to relevance-only ranking and MMR, measured in one run.

    .venv/bin/python benchmarks/diversify.py ../shared/data/beir/{cisi,limit-small,med,cacm,npl}

For each BEIR folder and the pipeline given by --search (default: the default HYBRID): the
pipeline alone, DIVERSIFY BY MMR over a lambda grid, and DIVERSIFY BY COVERAGE over the same grid
with hops 0 and 1 (the collection's kNN graph, k 16, is built first if it has none). Each query
runs at LIMIT 100 from 100 candidates; its first 10 are the LIMIT 10 answer (the objective does
not depend on LIMIT; for every configuration, the first CHECKED queries' LIMIT 10 runs are
checked to equal them). Reported:

- nDCG@10 of the first 10, Recall@100 of the LIMIT 100 run (rows scored by rank, as
  `sparsesql eval` does): Recall@100 shows what hops bring in at an equal pool size;
- coverage: the facility-location value of the first 10 over the pipeline's own top-100 pool,
  divided by the pool's value for itself (1.0 = the 10 cover the pool as well as all 100 do);
- mean pairwise cosine similarity of the first 10 (lower = less redundant);
- selection p50: the selection function alone on each query's 100-candidate pool, beside the
  anchor measured in the same run on the same pools, plain greedy (every gain, every round,
  vectorised numpy), as a ratio.

Writes <out>.md, <out>.json and <out>.png (nDCG@10 against coverage, one curve per method).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from anchors import CACHE_DIR  # noqa: E402

import sparsesql  # noqa: E402
from sparsesql.db import embedded  # noqa: E402
from sparsesql.eval import evaluate_run, load_qrels, mean_metrics  # noqa: E402
from sparsesql.eval.beir import test_queries  # noqa: E402
from sparsesql.eval.run import load_beir  # noqa: E402
from sparsesql.retrieval.diversify import PAGE, coverage_select, relevance_scale, similarity  # noqa: E402

LAMBDAS = (0.5, 0.7, 0.8, 0.9)
HOPS = (0, 1)
POOL = 100
CHECKED = 50


def plain_greedy(relevance: np.ndarray, sim: np.ndarray, k: int, lam: float) -> list[int]:
    """The anchor: the same objective, every remaining gain recomputed each round."""
    n = len(relevance)
    best, chosen, free = np.zeros(n), [], np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        gains = lam / PAGE * relevance + (1 - lam) / n * np.maximum(sim - best[:, None], 0.0).sum(axis=0)
        j = int(np.argmax(np.where(free, gains, -np.inf)))
        chosen.append(j)
        free[j] = False
        best = np.maximum(best, sim[:, j])
    return chosen


def vectors_by_id(db: sparsesql.Database, name: str) -> dict[str, np.ndarray]:
    rows = db.conn.execute(
        f'SELECT d.id, e.embedding::real[] FROM sparsesql."{name}__docs" d JOIN sparsesql."{name}__dense" e USING (doc_id)'
    ).fetchall()
    return {i: np.asarray(v, dtype=np.float64) for i, v in rows}


def configurations(search: str) -> dict[str, tuple[str, str, float | None, int]]:
    """label -> (method, SEARCH clause, lambda, hops)."""
    out = {"relevance only": ("relevance", search, None, 0)}
    for lam in LAMBDAS:
        out[f"MMR lambda {lam}"] = ("MMR", f"{search} DIVERSIFY BY MMR(candidates => {POOL}, lambda => {lam})", lam, 0)
    for hops in HOPS:
        for lam in LAMBDAS:
            clause = f"{search} DIVERSIFY BY COVERAGE(candidates => {POOL}, lambda => {lam}, hops => {hops})"
            out[f"COVERAGE hops {hops} lambda {lam}"] = (f"COVERAGE hops {hops}", clause, lam, hops)
    return out


def measure(db, name: str, folder: str, search: str, vectors: dict[str, np.ndarray]) -> dict[str, dict]:
    queries, qrels = test_queries(folder), load_qrels(folder)
    pools: dict[str, tuple[list[str], np.ndarray]] = {}
    for qid, text in queries.items():
        rows = db.query(f"SELECT id, score FROM {name} SEARCH {search} LIMIT {POOL}", q=text)
        pools[qid] = ([r.id for r in rows], np.array([r.score for r in rows]))
    results = {}
    for label, (method, clause, lam, hops) in configurations(search).items():
        run, run100, covers, redundancy, differ = {}, {}, [], [], 0
        for n, (qid, text) in enumerate(queries.items()):
            rows100 = db.query(f"SELECT id FROM {name} SEARCH {clause} LIMIT {POOL}", q=text)
            run100[qid] = {r.id: float(len(rows100) - i) for i, r in enumerate(rows100)}
            rows = rows100[:10]
            if n < CHECKED:
                differ += [r.id for r in db.query(f"SELECT id FROM {name} SEARCH {clause} LIMIT 10", q=text)] != [r.id for r in rows]
            run[qid] = {r.id: float(len(rows) - i) for i, r in enumerate(rows)}
            pool_ids = pools[qid][0]
            top = [r.id for r in rows]
            if not pool_ids or not top:
                continue
            pool_sim = similarity(np.array([vectors[i] for i in pool_ids + top]))
            n = len(pool_ids)
            covers.append(pool_sim[:n, n:].max(axis=1).sum() / pool_sim[:n, :n].max(axis=1).sum())
            chosen = pool_sim[n:, n:]
            redundancy.append(float(chosen[np.triu_indices(len(top), 1)].mean()) if len(top) > 1 else 0.0)
        results[label] = {
            "method": method,
            "lambda": lam,
            "hops": hops,
            "ndcg@10": mean_metrics(evaluate_run(run, qrels))["ndcg@10"],
            "recall@100": mean_metrics(evaluate_run(run100, qrels))["recall@100"],
            "coverage@10": float(np.mean(covers)),
            "mean_pairwise_similarity@10": float(np.mean(redundancy)),
        }
        results[label]["limit10_differs_from_first10_of_limit100"] = differ
        print(f"{Path(folder).name} {label}: {results[label]}", flush=True)
    results["selection latency"] = selection_latency(pools, vectors)
    results["queries"] = len(queries)
    return results


def selection_latency(pools: dict[str, tuple[list[str], np.ndarray]], vectors: dict[str, np.ndarray]) -> dict:
    """p50 ms of lazy greedy (what DIVERSIFY runs) and of the plain-greedy anchor, same pools."""
    times: dict[str, list[float]] = {"lazy": [], "plain": []}
    for ids, scores in pools.values():
        if not ids:
            continue
        for which, select in (("lazy", coverage_select), ("plain", plain_greedy)):
            start = time.perf_counter()
            select(relevance_scale(scores), similarity(np.array([vectors[i] for i in ids])), 10, 0.7)
            times[which].append((time.perf_counter() - start) * 1000)
    lazy, plain = statistics.median(times["lazy"]), statistics.median(times["plain"])
    return {"coverage_p50_ms": lazy, "plain_greedy_p50_ms": plain, "ratio": lazy / plain}


def markdown(results: dict[str, dict], header: str) -> str:
    lines = [header, ""]
    for set_name, rows in results.items():
        lat = rows["selection latency"]
        lines += [
            f"### {set_name}",
            "",
            "| configuration | nDCG@10 | R@100 | coverage@10 | mean pairwise sim@10 |",
            "|---|---|---|---|---|",
        ]
        for label, r in rows.items():
            if label not in ("selection latency", "queries"):
                lines.append(
                    f"| {label} | {r['ndcg@10']:.3f} | {r['recall@100']:.3f} | {r['coverage@10']:.3f} | {r['mean_pairwise_similarity@10']:.3f} |"
                )
        lines += [
            "",
            f"Queries whose LIMIT 10 differs from the first 10 of its LIMIT {POOL} (first {min(CHECKED, rows['queries'])} queries, "
            f"every configuration): {sum(r['limit10_differs_from_first10_of_limit100'] for k, r in rows.items() if k not in ('selection latency', 'queries'))}.",
            "",
            f"Selection over the {POOL}-candidate pools (lambda 0.7, LIMIT 10): p50 {lat['coverage_p50_ms']:.2f} ms lazy greedy, "
            f"{lat['plain_greedy_p50_ms']:.2f} ms plain greedy (anchor), ratio {lat['ratio']:.2f}.",
            "",
        ]
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (set_name, rows) in zip(axes[0], results.items()):
        curves: dict[str, list[tuple[float, float, float]]] = {}
        for label, r in rows.items():
            if label in ("selection latency", "queries"):
                continue
            if r["method"] == "relevance":
                ax.scatter([r["coverage@10"]], [r["ndcg@10"]], marker="*", s=150, color="black", label="relevance only", zorder=3)
            else:
                curves.setdefault(r["method"], []).append((r["lambda"], r["coverage@10"], r["ndcg@10"]))
        for method, points in curves.items():
            points.sort()
            ax.plot([p[1] for p in points], [p[2] for p in points], marker="o", label=method)
            for lam, x, y in points:
                ax.annotate(f"{lam}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_title(set_name)
        ax.set_xlabel("coverage of the top-100 pool by the first 10")
        ax.set_ylabel("nDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--search", default="HYBRID(SPARSE(:q), DENSE(:q))", help="the pipeline to diversify")
    parser.add_argument("--dsn")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "coverage"))
    args = parser.parse_args()
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    dsn = args.dsn or embedded.start(CACHE_DIR)
    results: dict[str, dict] = {}
    with sparsesql.connect(dsn) as db:
        for folder in args.folders:
            name = load_beir(db, folder, progress=True)
            if db.collection(name).info.extra.get("graph", {}).get("k") != 16:
                db.collection(name).build_graph(k=16, progress=True)
            results[Path(folder).name] = measure(db, name, folder, args.search, vectors_by_id(db, name))
    header = f"## Coverage-aware selection, {date}\n\n`{command}`; pipeline `{args.search}`, {POOL} candidates, graph k 16."
    out = Path(args.out)
    out.with_suffix(".md").write_text(markdown(results, header))
    out.with_suffix(".json").write_text(json.dumps({"command": command, "date": date, "search": args.search, "results": results}, indent=2))
    plot(results, out.with_suffix(".png"))
    print(markdown(results, header))


if __name__ == "__main__":
    main()
