"""Choose the defaults of a bare `WITH PRF` by a small grid over the shared BEIR sets.

    .venv/bin/python benchmarks/tune_prf.py ../shared/data/beir/cisi ../shared/data/beir/limit-small

The grid is coarse on purpose (a handful of values per argument, no per-query choices), and every
configuration is scored by the mean nDCG@10 over all sets given, so a default is what does best
across collections rather than on one. Stage 1 tunes each side alone on its own signal (SPARSE
with RM3, DENSE with vector PRF); stage 2 combines the best few of each under HYBRID with every
interpolation. Results go to benchmarks/results/tune_prf.{md,json}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sparsesql  # noqa: E402
from sparsesql.db import embedded  # noqa: E402
from sparsesql.eval.run import evaluate  # noqa: E402

HERE = Path(__file__).resolve().parent
DEPTHS = (3, 5, 10)
RM3 = [f"rm3(terms => {t}, weight => {w})" for t, w in itertools.product((10, 20), (0.5, 0.7))]
VECTOR = ["average", *(f"rocchio(alpha => 1, beta => {b})" for b in (0.5, 1.0))]
INTERPOLATE = ("before", "after", "both")


def score(db, folders: list[Path], search: str) -> dict[str, float]:
    """nDCG@10 per set and its mean for one search clause."""
    out = {f.name: round(evaluate(db, f, search).ndcg10, 4) for f in folders}
    out["mean"] = round(sum(out.values()) / len(folders), 4)
    return out


def best(results: dict[str, dict[str, float]], n: int) -> list[str]:
    return sorted(results, key=lambda k: -results[k]["mean"])[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--dsn")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tune_prf")
    args = parser.parse_args()
    dsn = args.dsn or embedded.start(HERE / ".cache")
    db = sparsesql.connect(dsn)
    stage1: dict[str, dict[str, float]] = {}
    for depth, rm3 in itertools.product(DEPTHS, RM3):
        stage1[f"SPARSE(:q) WITH PRF(depth => {depth}, sparse => {rm3})"] = None
    for depth, vec in itertools.product(DEPTHS, VECTOR):
        stage1[f"DENSE(:q) WITH PRF(depth => {depth}, dense => {vec})"] = None
    for search in stage1:
        stage1[search] = score(db, args.folders, search)
        print(stage1[search], search, flush=True)
    top_sparse = best({k: v for k, v in stage1.items() if k.startswith("SPARSE")}, 2)
    top_dense = best({k: v for k, v in stage1.items() if k.startswith("DENSE")}, 1)
    depths = sorted({int(s.split("depth => ")[1].split(",")[0]) for s in (top_sparse[0], top_dense[0])})
    sparse_best = [s.split("sparse => ")[1][:-1] for s in top_sparse]
    dense_best = [s.split("dense => ")[1][:-1] for s in top_dense]
    stage2: dict[str, dict[str, float]] = {}
    for depth, rm3, vec, how in itertools.product(depths, sparse_best, [*dense_best, "none"], INTERPOLATE):
        search = f"HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF(depth => {depth}, sparse => {rm3}, dense => {vec}, interpolate => {how})"
        stage2[search] = score(db, args.folders, search)
        print(stage2[search], search, flush=True)
    baseline = {s: score(db, args.folders, s) for s in ("SPARSE(:q)", "DENSE(:q)", "HYBRID(SPARSE(:q), DENSE(:q))")}
    names = [f.name for f in args.folders]
    lines = [
        f"## PRF tuning, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"`.venv/bin/python benchmarks/tune_prf.py {' '.join(str(f) for f in args.folders)}`; nDCG@10, best first.",
        "",
        "| search | " + " | ".join(names) + " | mean |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for table in (baseline, stage2, stage1):
        for search in sorted(table, key=lambda k: -table[k]["mean"]):
            lines.append(f"| `{search}` | " + " | ".join(f"{table[search][n]:.4f}" for n in names) + f" | {table[search]['mean']:.4f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"baseline": baseline, "stage1": stage1, "stage2": stage2}, indent=1))
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
