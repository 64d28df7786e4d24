"""What the query-reach features cost beside the bare search (issue 35): a boost and more-like-this.

    .venv/bin/python benchmarks/reach.py [--docs 100000] [--vectors calibrated] [--queries 100]

On the speed collection benchmarks/speed.py builds (fields `text` and `bucket`), with the memory
tiers on, one query at a time, the query vector bound, each request without the candidate lists
of the ones before it (benchmarks/pages.py's interleaving). Each figure is a p50 beside the bare
HYBRID page (LIMIT 10) in the same run, as a ratio:

- the same HYBRID with `ORDER BY score * (1 + bucket / 100.0)` (the top 200 reordered; their
  field read by id);
- the same with `ORDER BY score * gauss_decay(bucket, 50, 20)`;
- `DENSE(LIKE id)` and `HYBRID(SPARSE(LIKE id), DENSE(LIKE id))` for one document per query (its
  vector or its top terms read in the search's snapshot), beside the bare DENSE and HYBRID.

Writes benchmarks/results/reach.{md,json}.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.pages import interleaved_p50, ratio_report, speed_run  # noqa: E402



def main() -> None:
    args, command, db, name, queries = speed_run(__doc__, "reach")
    hybrid = f"FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:v))"
    for q in queries:  # an example document per query: its bare HYBRID's top hit, found before anything is timed
        q["like"] = db.query(f"SELECT id {hybrid} LIMIT 1", q=q["q"], v=q["v"])[0].id
    runs = {
        "HYBRID page 1 (the bare search)": lambda q: db.query(f"SELECT id, score {hybrid} LIMIT 10", q=q["q"], v=q["v"]),
        "HYBRID ORDER BY score * (1 + bucket / 100.0)": lambda q: db.query(
            f"SELECT id, score {hybrid} ORDER BY score * (1 + bucket / 100.0) LIMIT 10", q=q["q"], v=q["v"]),
        "HYBRID ORDER BY score * gauss_decay(bucket, 50, 20)": lambda q: db.query(
            f"SELECT id, score {hybrid} ORDER BY score * gauss_decay(bucket, 50, 20) LIMIT 10", q=q["q"], v=q["v"]),
        "DENSE page 1": lambda q: db.query(f"SELECT id, score FROM {name} SEARCH DENSE(:v) LIMIT 10", v=q["v"]),
        "DENSE(LIKE id)": lambda q: db.query(f"SELECT id, score FROM {name} SEARCH DENSE(LIKE :d) LIMIT 10", d=q["like"]),
        "HYBRID(SPARSE(LIKE id), DENSE(LIKE id))": lambda q: db.query(
            f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(LIKE :d), DENSE(LIKE :d)) LIMIT 10", d=q["like"]),
    }
    figures = interleaved_p50(db, runs, queries)
    anchors = {"DENSE(LIKE id)": "DENSE page 1", "DENSE page 1": "DENSE page 1"}
    ratio_report(args, command, "What query reach costs", name, queries, figures, "HYBRID page 1 (the bare search)", anchors)


if __name__ == "__main__":
    main()
