"""What a results page costs beside the bare search: page 2, snippets, facet counts (issue 34).

    .venv/bin/python benchmarks/pages.py [--docs 100000] [--vectors calibrated] [--queries 100]

On the speed collection benchmarks/speed.py builds (`speed_<docs>_<vectors>` in database
sparsesql_speed, fields `text` and `bucket`, 100 values), with the memory tiers on, one query at a
time, the query vector bound (no encoding in the timings). For each query its text is analysed
once untimed, then every request below runs in a shuffled turn (so that the machine's drift falls
on all of them alike), each without the candidate lists an earlier request of the connection kept; only
the results page's facet finds its page's lists (the ListCache of sparsesql/exec/run.py). Each
figure is the p50 of a request beside the p50 of the bare search's first page (HYBRID, LIMIT 10)
in the same run on the same queries, as a ratio:

- page 2 by OFFSET 10, and by the first page's last cursor (AFTER);
- the first page with HIGHLIGHT(text);
- the facet `SELECT bucket, count(*) ... GROUP BY bucket` over the same search;
- a results page: the first page with HIGHLIGHT, plus that facet (two statements);
- a SPARSE search's facet over every match; and, for the queries matching more than 10,000
  documents, a SPARSE page by cursor past the result window (row 10,000) beside their page 1.

The issue's bars: page 2 at most 1.3x page 1; a page with one facet and highlights at most 2x the
bare search. Writes benchmarks/results/pages.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks import report, synthetic  # noqa: E402
from benchmarks.speed import collection_name, speed_dsn  # noqa: E402

import sparsesql  # noqa: E402
from sparsesql.analysis import analyze  # noqa: E402
from sparsesql.exec.list_cache import ListCache  # noqa: E402

SEARCH = "HYBRID(SPARSE(:q), DENSE(:v))"


def interleaved_p50(db: sparsesql.Database, runs: dict, queries: list[dict]) -> dict[str, float]:
    """Each request's p50, the requests taken in turn for every query once its text has been
    analysed, each request starting without the candidate lists of the ones before it."""
    ms: dict[str, list[float]] = {label: [] for label in runs}
    for run in runs.values():
        run(queries[0])
    for i, q in enumerate(queries):
        analyze(q["q"])
        order = list(runs.items())
        random.Random(i).shuffle(order)  # no request always first after the query's analysis
        for label, run in order:
            db.lists = ListCache()
            start = time.perf_counter()
            run(q)
            ms[label].append((time.perf_counter() - start) * 1000)
    return {label: statistics.median(values) for label, values in ms.items()}


def speed_run(description: str, out: str) -> tuple[argparse.Namespace, str, sparsesql.Database, str, list[dict]]:
    """A one-query-at-a-time benchmark's start on benchmarks/speed.py's collection: its arguments,
    the command as run, a connection (memory tiers on), the collection's name and the queries
    (text `q`, vector `v`)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--vectors", default="calibrated", choices=list(synthetic.VECTOR_MODELS))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / out)
    args = parser.parse_args()
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    db = sparsesql.connect(speed_dsn())
    name = collection_name(args.docs, args.vectors)
    if not any(c.name == name for c in db.collections()):
        sys.exit(f"collection {name} is not built: run .venv/bin/python benchmarks/speed.py --docs {args.docs} --vectors {args.vectors} first")
    queries = [{"q": q["text"], "v": q["vector"].tolist()} for q in synthetic.queries(args.docs, args.queries, model=args.vectors)]
    return args, command, db, name, queries


def ratio_report(args: argparse.Namespace, command: str, title: str, name: str, queries: list[dict], figures: dict[str, float],
                 first: str, anchors: dict[str, str]) -> None:
    """A speed run's table: each request's p50 beside its anchor (`first` unless `anchors` names
    another), as a ratio, written with the run's command and date."""
    date = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    lines = [f"## {title}", "",
             f"`{command}`, {date}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {name}, {len(queries)} queries, "
             "p50 per query, one at a time, the requests in turn for each query, the memory tiers on.", "",
             "| request | p50 ms | beside | ratio |", "|---|---|---|---|"]
    for label, ms in figures.items():
        anchor = anchors.get(label, first)
        lines.append(f"| {label} | {ms:.2f} | {anchor} | {ms / figures[anchor]:.2f}x |")
    report.write(args.out, lines, {"command": command, "date": date, "p50_ms": figures})


def main() -> None:
    args, command, db, name, queries = speed_run(__doc__, "pages")
    base = f"FROM {name} SEARCH {SEARCH}"
    for q in queries:  # each query's page-1 cursor, read before anything is timed
        q["cursor"] = db.query(f"SELECT id, cursor {base} LIMIT 10", q=q["q"], v=q["v"])[-1].cursor
    runs = {
        "page 1 (the bare search)": lambda q: db.query(f"SELECT id, score {base} LIMIT 10", q=q["q"], v=q["v"]),
        "page 2 by OFFSET 10": lambda q: db.query(f"SELECT id, score {base} LIMIT 10 OFFSET 10", q=q["q"], v=q["v"]),
        "page 2 AFTER the cursor": lambda q: db.query(f"SELECT id, score {base} LIMIT 10 AFTER :c", q=q["q"], v=q["v"], c=q["cursor"]),
        "page 1 with HIGHLIGHT(text)": lambda q: db.query(f"SELECT id, HIGHLIGHT(text), score {base} LIMIT 10", q=q["q"], v=q["v"]),
        "the facet GROUP BY bucket": lambda q: db.query(f"SELECT bucket, count(*) {base} GROUP BY bucket", q=q["q"], v=q["v"]),
        "page 1 with HIGHLIGHT + the facet": lambda q: (
            db.query(f"SELECT id, HIGHLIGHT(text), score {base} LIMIT 10", q=q["q"], v=q["v"]),
            db.query(f"SELECT bucket, count(*) {base} GROUP BY bucket", q=q["q"], v=q["v"]),
        ),
        "SPARSE page 1": lambda q: db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 10", q=q["q"]),
        "SPARSE facet (every match)": lambda q: db.query(f"SELECT bucket, count(*) FROM {name} SEARCH SPARSE(:q) GROUP BY bucket", q=q["q"]),
    }
    figures = interleaved_p50(db, runs, queries)
    sparse = f"SELECT id, score, cursor FROM {name} SEARCH SPARSE(:q)"
    deep = []  # the queries matching past the result window, with the cursor of row 10,000
    for q in queries:
        rows = db.query(f"{sparse} LIMIT 10 OFFSET 9990", q=q["q"])
        if len(rows) == 10:
            deep.append({**q, "deep": rows[-1].cursor})
    if deep:
        past = interleaved_p50(db, {
            "SPARSE page 1 (the queries matching past row 10,000)": lambda q: db.query(f"{sparse} LIMIT 10", q=q["q"]),
            "SPARSE page AFTER the cursor of row 10,000 (past the window)": lambda q: db.query(f"{sparse} LIMIT 10 AFTER :c", q=q["q"], c=q["deep"]),
        }, deep)
        figures.update(past)
    bare, sparse_bare = figures["page 1 (the bare search)"], figures["SPARSE page 1"]
    bars = {"page 2 by OFFSET 10": 1.3, "page 2 AFTER the cursor": 1.3, "page 1 with HIGHLIGHT + the facet": 2.0}
    date = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    lines = ["## What a results page costs", "",
             f"`{command}`, {date}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {name}, "
             f"{len(queries)} queries ({len(deep)} matching past row 10,000), p50 per query, one at a time, the requests in turn for each query, the memory tiers on.", "",
             "| request | p50 ms | beside the bare search's page 1 | bar |", "|---|---|---|---|"]
    deep_bare = figures.get("SPARSE page 1 (the queries matching past row 10,000)")
    for label, ms in figures.items():
        anchor = deep_bare if "10,000" in label else sparse_bare if label.startswith("SPARSE") else bare
        bar = f"<= {bars[label]}x" if label in bars else ""
        lines.append(f"| {label} | {ms:.2f} | {ms / anchor:.2f}x | {bar} |")
    report.write(args.out, lines, {"command": command, "date": date, "p50_ms": figures})


if __name__ == "__main__":
    main()
