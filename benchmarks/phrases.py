"""What phrases, exclusions and per-field weights cost beside the bare SPARSE search (issue 35).

    .venv/bin/python benchmarks/phrases.py [--docs 100000] [--vectors calibrated] [--queries 100]

On a copy of the speed collection's documents (benchmarks/speed.py's synthetic corpus) made as
collections are made now, with word positions and each text field's counts (`phrases2_<docs>`:
a title of each document's first ten words, its text the rest; built once and reused), with the
memory tiers on, one query at a time; each figure a p50 beside the bare `SPARSE(:q)` page (LIMIT
10, served from the memory tier) in the same run:

- `SPARSE(:q || ' "w1 w2"', syntax => 'web')`: the query with a phrase of two adjacent words of
  its bare search's top document (so the phrase matches), matched in SQL against the positions,
  the tier taking the ids;
- the same phrase with slop 3;
- `SPARSE(:q || ' -w', syntax => 'web')`: the query less the documents holding its first word;
- `SPARSE(:q, fields => (title => 2, text => 1))`: BM25F over the two text fields (each
  document's first ten words are its title), from the memory tier's field counts; and the same
  scored in SQL beside the bare SPARSE scored in SQL (the tier off).

Writes benchmarks/results/phrases.{md,json}.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sparsesql  # noqa: E402
from benchmarks import synthetic  # noqa: E402
from benchmarks.pages import interleaved_p50, ratio_report, speed_run  # noqa: E402


def build(db: sparsesql.Database, docs: int, vectors: str) -> str:
    """The collection with positions, reused when it holds every document."""
    name = f"phrases2_{docs}"
    existing = next((c for c in db.collections() if c.name == name), None)
    if existing is not None and existing.n_docs == docs and existing.settings.positions:
        return name
    db.drop_collection(name, if_exists=True)
    coll = db.create_collection(name, {"title": "text", "text": "text"}, dense="none", dim=synthetic.DIM)
    for batch in synthetic.generate(docs, seed=0, batch=5000, model=vectors):
        words = [d["text"].split() for d in batch]  # a title of each document's first ten words, its text the rest
        coll.add([d | {"title": " ".join(w[:10]), "text": " ".join(w[10:])} for d, w in zip(batch, words)], batch_size=5000)
    return name


def main() -> None:
    args, command, db, _, queries = speed_run(__doc__, "phrases")
    name = build(db, args.docs, args.vectors)
    rng = np.random.default_rng(0)
    for q in queries:  # a phrase from each query's top document, and a word to exclude, chosen before anything is timed
        row = db.query(f"SELECT id, title, text FROM {name} SEARCH SPARSE(:q) LIMIT 1", q=q["q"])[0]
        top = (row.title + " " + row.text).split()[:10]
        at = int(rng.integers(0, len(top) - 1))
        q["phrase"] = f'{q["q"]} "{top[at]} {top[at + 1]}"'
        q["slop"] = f'{q["phrase"]}~3'
        first = re.findall(r"\w+", q["q"])[0]
        q["minus"] = f'{q["q"]} -{first}'
    plain = sparsesql.connect(db.dsn, sparse_tier=False)
    sparse = f"SELECT id, score FROM {name} SEARCH SPARSE"
    runs = {
        "SPARSE page 1 (the bare search)": lambda q: db.query(f"{sparse}(:q) LIMIT 10", q=q["q"]),
        "with a phrase": lambda q: db.query(f"{sparse}(:q, syntax => 'web') LIMIT 10", q=q["phrase"]),
        "with a phrase, slop 3": lambda q: db.query(f"{sparse}(:q, syntax => 'web') LIMIT 10", q=q["slop"]),
        "with an excluded word": lambda q: db.query(f"{sparse}(:q, syntax => 'web') LIMIT 10", q=q["minus"]),
        "fields => (title => 2, text => 1), BM25F": lambda q: db.query(f"{sparse}(:q, fields => (title => 2, text => 1)) LIMIT 10", q=q["q"]),
        "SPARSE page 1 in SQL (the tier off)": lambda q: plain.query(f"{sparse}(:q) LIMIT 10", q=q["q"]),
        "BM25F in SQL (the tier off)": lambda q: plain.query(f"{sparse}(:q, fields => (title => 2, text => 1)) LIMIT 10", q=q["q"]),
    }
    figures = interleaved_p50(db, runs, queries)
    anchors = {"BM25F in SQL (the tier off)": "SPARSE page 1 in SQL (the tier off)", "SPARSE page 1 in SQL (the tier off)": "SPARSE page 1 in SQL (the tier off)"}
    ratio_report(args, command, "What phrases, exclusions and per-field weights cost", name, queries, figures, "SPARSE page 1 (the bare search)", anchors)
    plain.close()


if __name__ == "__main__":
    main()
