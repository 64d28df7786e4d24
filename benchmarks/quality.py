"""Retrieval quality and latency of sparsesql next to reference systems, measured in one run.

    .venv/bin/python benchmarks/quality.py            # the five development sets in ../shared/data/beir
    .venv/bin/python benchmarks/quality.py DIR [DIR...]

For each BEIR folder: nDCG@10 and Recall@100 of the anchors (benchmarks/anchors.py) and of
sparsesql's searches; latency per query of sparsesql and of the plain Postgres recipe; SPARSE and
DENSE against the anchors they reimplement; HYBRID's p50 against the recipe's. The anchors are
measured in the same run so that every comparison shares one machine. They should also reproduce
the reference table in shared/data/beir/README.md to within 0.003; if they do not, the anchors
(not sparsesql) are what is off.

Without --dsn everything runs on an embedded server in benchmarks/.cache/ (stopped on exit if
this run started it), so the user's ./.sparsesql is left alone. The table is printed and written
to <out>.md, with the numbers in <out>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from anchors import (  # noqa: E402  (the script's folder is on sys.path)
    CACHE_DIR,
    REFERENCE_ENCODER,
    Run,
    bm25s_run,
    encoder_settings,
    exact_dense_run,
    minmax_linear_run,
    postgres_recipe_run,
    rrf_run,
)

import sparsesql  # noqa: E402
from sparsesql.db import embedded  # noqa: E402
from sparsesql.eval import evaluate_run, load_qrels, mean_metrics  # noqa: E402
from sparsesql.eval.metrics import Qrels  # noqa: E402
from sparsesql.eval.run import evaluate, load_beir  # noqa: E402

# One system's numbers on one set: metrics, latencies, comparison; keys as in the JSON output.
Row = dict[str, float | str]

RECIPE = "Postgres tsvector+HNSW+RRF"
DEV_SETS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir"
DEV_SET_NAMES = ("cisi", "limit-small", "med", "cacm", "npl")
SEARCHES = (
    "SPARSE(:q)",
    "DENSE(:q)",
    "HYBRID(SPARSE(:q), DENSE(:q))",
    "HYBRID(SPARSE(:q), DENSE(:q), fusion => rrf(k => 60))",
    "HYBRID(SPARSE(:q), DENSE(:q), fusion => linear(alpha => 0.5))",
    "SPARSE(:q) WITH PRF",
    "DENSE(:q) WITH PRF",
    "HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF",
    "HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF(interpolate => before)",
    "HYBRID(SPARSE(:q), DENSE(:q)) DIVERSIFY BY COVERAGE",
)
# SPARSE and DENSE reimplement these anchors, so their quality should match; every HYBRID is
# compared on speed with the recipe it is meant to replace.
QUALITY_ANCHOR = {"SPARSE(:q)": "bm25s", "DENSE(:q)": "MiniLM exact"}


def _quality(run: Run, qrels: Qrels) -> Row:
    """nDCG@10 and Recall@100 of a run, scored as sparsesql.eval scores its own searches."""
    return mean_metrics(evaluate_run(run, qrels))


def _latency(latencies: list[float]) -> Row:
    """p50 and p95 in ms, with the percentile rule of sparsesql.eval.run.evaluate."""
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": statistics.median(ordered), "p95_ms": p95}


def anchor_rows(folder: str, dsn: str) -> dict[str, Row]:
    """The reference systems on one folder. The recipe is also run with OR-ed lexemes, since its
    README form ANDs them and so, on long queries, is nearly the vector list alone."""
    qrels = load_qrels(folder)
    bm25 = bm25s_run(folder)
    with encoder_settings(*REFERENCE_ENCODER) as encoder:  # as the reference numbers were measured
        dense = exact_dense_run(folder, encoder)
        rows = {
            "bm25s": _quality(bm25, qrels),
            "MiniLM exact": _quality(dense, qrels),
            "RRF k=60": _quality(rrf_run([bm25, dense], k=60), qrels),
            "min-max linear 0.5": _quality(minmax_linear_run(bm25, dense, alpha=0.5), qrels),
        }
        for name, match in ((RECIPE, "all"), (f"{RECIPE}, OR-ed lexemes", "any")):
            run, latencies = postgres_recipe_run(folder, dsn, encoder, match=match)
            rows[name] = _quality(run, qrels) | _latency(latencies)
    return rows


def sparsesql_rows(db: sparsesql.Database, folder: str, anchors: dict[str, Row]) -> dict[str, Row]:
    """sparsesql's searches on one folder, each with its comparison to an anchor."""
    load_beir(db, folder, progress=True)  # only the first load is slow: it encodes the corpus
    rows: dict[str, Row] = {}
    for search in SEARCHES:
        result = evaluate(db, folder, search)
        row: Row = {
            "ndcg@10": result.ndcg10,
            "recall@100": result.recall100,
            "p50_ms": result.p50_ms,
            "p95_ms": result.p95_ms,
        }
        if search in QUALITY_ANCHOR:
            anchor = anchors[QUALITY_ANCHOR[search]]
            row["anchor"] = QUALITY_ANCHOR[search]
            row["delta_ndcg@10"] = result.ndcg10 - anchor["ndcg@10"]
            row["delta_recall@100"] = result.recall100 - anchor["recall@100"]
        else:
            row["p50_vs_recipe"] = result.p50_ms / anchors[RECIPE]["p50_ms"]
        rows[search] = row
    return rows


def _cells(row: Row) -> list[str]:
    """One set's cells of a table row: nDCG@10, R@100, p50 / p95 ms, comparison."""
    latency = f"{row['p50_ms']:.1f} / {row['p95_ms']:.1f}" if "p50_ms" in row else "–"
    if "anchor" in row:
        versus = f"{row['delta_ndcg@10']:+.3f} / {row['delta_recall@100']:+.3f} vs {row['anchor']}"
    elif "p50_vs_recipe" in row:
        versus = f"p50 {row['p50_vs_recipe']:.2f}x recipe"
    else:
        versus = ""
    return [f"{row['ndcg@10']:.3f}", f"{row['recall@100']:.3f}", latency, versus]


ANCHORS = ("bm25s", "MiniLM exact", "RRF k=60", "min-max linear 0.5")


def summary(results: dict[str, dict[str, Row]]) -> str:
    """nDCG@10 per set, and each sparsesql search's gain over that set's best anchor (the
    acceptance measure of the defaults: never below -0.005; PRF's aim is +0.01)."""
    best = {name: max(ANCHORS, key=lambda a: rows[a]["ndcg@10"]) for name, rows in results.items()}
    lines = [
        "nDCG@10; in brackets, the gain over the set's best anchor ("
        + ", ".join(f"{n}: {a} {results[n][a]['ndcg@10']:.4f}" for n, a in best.items()) + ").",
        "",
        "| system | " + " | ".join(results) + " |",
        "|---" * (len(results) + 1) + "|",
    ]
    systems = dict.fromkeys(system for rows in results.values() for system in rows)
    for system in systems:
        label = f"sparsesql `{system}`" if system in SEARCHES else system
        cells = []
        for name, rows in results.items():
            v = rows[system]["ndcg@10"]
            gain = f" ({v - results[name][best[name]]['ndcg@10']:+.4f})" if system in SEARCHES else ""
            cells.append(f"{v:.4f}{gain}")
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, dict[str, Row]], header: str) -> str:
    """The tables: the summary, then one row per system, four columns per set."""
    columns = ["system"] + [
        f"{name} {column}"
        for name in results
        for column in ("nDCG@10", "R@100", "p50 / p95 ms", "vs anchor")
    ]
    systems = dict.fromkeys(system for rows in results.values() for system in rows)
    lines = [header, "", summary(results), "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for system in systems:
        label = f"sparsesql `{system}`" if system in SEARCHES else system
        cells = [cell for rows in results.values() for cell in _cells(rows[system])]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=[str(DEV_SETS / n) for n in DEV_SET_NAMES],
                        help="BEIR folders (corpus, queries, qrels); default: the five development sets")
    parser.add_argument("--dsn", help="use this Postgres server instead of the embedded one")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results" / "quality"),
        help="write <out>.md and <out>.json (default: benchmarks/results/quality)",
    )
    args = parser.parse_args()

    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    start_load = os.getloadavg()[0]
    started = args.dsn is None and not (CACHE_DIR / "pgdata" / "postmaster.pid").exists()
    dsn = args.dsn or embedded.start(CACHE_DIR)
    try:
        results: dict[str, dict[str, Row]] = {}
        with sparsesql.connect(dsn) as db:
            for folder in args.folders:
                anchors = anchor_rows(folder, dsn)
                results[Path(folder).name] = anchors | sparsesql_rows(db, folder, anchors)
    finally:
        if started:
            embedded.stop(CACHE_DIR)

    # Other work on the machine inflates latencies, unevenly over the run: say how busy it was.
    load = f"load average {start_load:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {load}"
    header = (
        f"## sparsesql quality, {date}\n\n`{command}` on {machine}. Latency is per query, "
        "query encoding included; Δ = sparsesql minus anchor; HYBRID p50 is relative to "
        f"the {RECIPE} row's."
    )
    table = markdown(results, header)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text(table)
    report = {"command": command, "date": date, "machine": machine, "results": results}
    Path(f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
