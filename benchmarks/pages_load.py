"""A results page under concurrent load: pgbench through `sparsesql serve` beside pgbench sending
PostgreSQL's own results page straight to it, in the same run, on the same machine and data.

    .venv/bin/python benchmarks/pages_load.py [--docs 100000] [--vectors calibrated] [--clients 1 8 32]
                                              [--seconds 10] [--workers 2] [--queries 64]

On the collection benchmarks/speed.py builds (with benchmarks/load.py's recipe table), one script
per query, pgbench picking one at random per transaction:
- through serve, the bare HYBRID page (LIMIT 10) and the results page: that page with
  HIGHLIGHT(text), then the facet `SELECT bucket, count(*) ... GROUP BY bucket` (two statements);
- straight to PostgreSQL, the recipe's bare page (tsvector + GIN, HNSW ef_search 100, RRF) and
  its results page: the recipe's top 10 with ts_headline of each text, then the bucket counts over
  the recipe's top 200 (the depth sparsesql's facet counts), in one transaction.
Each side's results page is also shown beside its own bare page (issue 34's bar: at most 2x).
Writes benchmarks/results/pages_load.{md,json}.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.anchors import TSQUERY, _RECIPE_QUERY  # noqa: E402
from benchmarks.load import CACHE, RESULTS, Serve, literal, load_arguments, pgbench, prepare, scripts, vector_text  # noqa: E402

K, FACET_DEPTH = 10, 200


def statements(name: str, queries: list[dict]) -> dict[str, list[str]]:
    """Each side's script per query."""
    recipe_sql = _RECIPE_QUERY.replace("{tsquery}", TSQUERY["all"]).replace("anchor_docs", f"{name}_recipe")
    sides: dict[str, list[str]] = {"bare": [], "page": [], "recipe": [], "recipe page": []}
    for q in queries:
        v, t = vector_text(q["vector"]), literal(q["text"])
        search = f"FROM {name} SEARCH HYBRID(SPARSE({t}), DENSE('{v}'))"
        sides["bare"].append(f"SELECT id, score {search} LIMIT {K};")
        sides["page"].append(f"SELECT id, HIGHLIGHT(text), score {search} LIMIT {K};\nSELECT bucket, count(*) {search} GROUP BY bucket;")

        def recipe(k: int) -> str:
            return " ".join(recipe_sql.replace("%(text)s", t).replace("%(vector)s", f"'{v}'::vector").replace("%(k)s", str(k))
                            .replace("%(rrf_k)s", "60").split())

        headline = (f"SELECT r.id, ts_headline('english', a.body, websearch_to_tsquery('english', {t})) AS snippet, r.score "
                    f"FROM ({recipe(K)}) AS r JOIN {name}_recipe AS a USING (id) ORDER BY r.score DESC, r.id")
        facet = (f"SELECT d.bucket, count(*) FROM (SELECT id FROM ({recipe(FACET_DEPTH)}) AS f LIMIT {FACET_DEPTH}) AS r "
                 f"JOIN sparsesql.\"{name}__docs\" AS d USING (id) GROUP BY d.bucket ORDER BY 2 DESC, 1 LIMIT 10")
        sides["recipe"].append(f"BEGIN;\nSET LOCAL hnsw.ef_search = 100;\n{recipe(K)};\nCOMMIT;")
        sides["recipe page"].append(f"BEGIN;\nSET LOCAL hnsw.ef_search = {FACET_DEPTH};\n{headline};\n{facet};\nCOMMIT;")
    return sides


def main(argv: list[str] | None = None) -> int:
    args = load_arguments(__doc__.splitlines()[0], argv, seconds=10)
    dsn, _, name, _, user, info, direct, queries = prepare(args)
    files = {kind: [str(p) for p in scripts(CACHE / "page_scripts", kind.replace(" ", "_"), s)] for kind, s in statements(name, queries).items()}
    cells = []
    server = Serve(dsn, args.workers)
    try:
        server.warm(info["dbname"], user, files["page"])
        for clients in args.clients:
            cell = {"clients": clients}
            for kind in ("bare", "page"):
                cell[kind] = pgbench(server.target(info["dbname"], user), files[kind], clients, args.seconds)
            for kind in ("recipe", "recipe page"):
                cell[kind] = pgbench(direct, files[kind], clients, args.seconds)
            cells.append(cell)
            print(f"{clients:>3} clients: serve page {cell['page']['tps']:.0f} tps (bare {cell['bare']['tps']:.0f}) | "
                  f"PostgreSQL page {cell['recipe page']['tps']:.0f} tps (bare {cell['recipe']['tps']:.0f})", flush=True)
    finally:
        server.stop()
    command = "benchmarks/pages_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command, "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "docs": args.docs, "queries": len(queries), "seconds": args.seconds, "workers": args.workers, "cells": cells}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pages_load.json").write_text(json.dumps(result, indent=1, default=str))
    (RESULTS / "pages_load.md").write_text(report(result))
    print(report(result))
    return 0


def _cell(r: dict) -> str:
    return f"{r['tps']:,.0f} tps, p50 {r['p50']:.1f} / p95 {r['p95']:.1f} ms"


def report(r: dict) -> str:
    lines = [f"# A results page under load ({r['docs']:,} documents)", "",
             f"`{r['command']}`, {r['date']}, {r['machine']}; {r['seconds']} s per cell, {r['queries']} queries, "
             f"`serve --workers {r['workers']}`, pgbench on both sides. The results page: the first page with snippets, then one "
             "facet (sparsesql: HIGHLIGHT and GROUP BY; PostgreSQL: the recipe with ts_headline, and a GROUP BY over its top 200).", "",
             "| clients | serve: bare page | serve: results page | its cost (bare / page tps) | PostgreSQL: bare recipe | "
             "PostgreSQL: results page | its cost | serve's results page / PostgreSQL's |", "|---|---|---|---|---|---|---|---|"]
    for c in r["cells"]:
        lines.append(f"| {c['clients']} | {_cell(c['bare'])} | {_cell(c['page'])} | {c['bare']['tps'] / c['page']['tps']:.2f}x | "
                     f"{_cell(c['recipe'])} | {_cell(c['recipe page'])} | {c['recipe']['tps'] / c['recipe page']['tps']:.2f}x | "
                     f"{c['page']['tps'] / c['recipe page']['tps']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
