"""Every fusion rule a bare HYBRID could default to, scored on each development set and by leaving
one collection out (LOCO), from the engine's own candidate lists.

    .venv/bin/python benchmarks/fusion_loco.py ../shared/data/beir/{cisi,limit-small,med,cacm,npl}
    .venv/bin/python benchmarks/fusion_loco.py --first-words 2 --out benchmarks/results/fusion_loco_short ../shared/data/beir/{cisi,med,cacm,npl}

For each set and judged query the engine's SPARSE(:q) and DENSE(:q) top 200 are read once through
the dialect; each rule then fuses them with sparsesql.retrieval.fusion (the code HYBRID runs) or,
for rules the dialect does not have, with the rule written here on the same lists. A guard checks
that the fused top 10 of the default rule equals the engine's own bare HYBRID on every query, so
the table describes what the engine does. Rules with 100 candidates take the top 100 of each list.

Each rule's gain on a set is its nDCG@10 minus the set's best anchor (bm25s, exact MiniLM, RRF
k=60, min-max 0.5, measured in this run by benchmarks/anchors.py). The selection rule is
benchmarks/tune_defaults.py's: within 0.005 of the best anchor everywhere, then the largest
worst-case gain. LOCO runs it five times, each time blind to one set, and scores its pick there.

Writes benchmarks/results/fusion_loco.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from anchors import CACHE_DIR  # noqa: E402
from tune_defaults import TOLERANCE, best_anchors, rank  # noqa: E402

import sparsesql  # noqa: E402
from sparsesql.analysis import STOPWORDS_EN  # noqa: E402
from sparsesql.db import embedded  # noqa: E402
from sparsesql.eval import evaluate_run, load_qrels  # noqa: E402
from sparsesql.eval import tune as tuning  # noqa: E402
from sparsesql.eval.beir import test_queries  # noqa: E402
from sparsesql.eval.run import load_beir  # noqa: E402
from sparsesql.retrieval import fusion  # noqa: E402

HERE = Path(__file__).resolve().parent
DEPTH = 200
Ranked = list[tuple[int, float]]
Rule = Callable[[list[Ranked], list[float | None]], Ranked]


def linear(alpha: float, norm: str = "minmax") -> Rule:
    return lambda lists, floors: fusion.linear(lists, (alpha, 1 - alpha), norm, floors)[0]


def auto(lists: list[Ranked], floors: list[float | None]) -> Ranked:
    return fusion.linear(lists, (), "minmax", floors, adaptive=True)[0]


def auto_own_depth(lists: list[Ranked], floors: list[float | None]) -> Ranked:
    """The auto weights before 2026-12-05: each list's peakedness over its own rows only."""
    scaled = [fusion.normalise(np.array([s for _, s in ranked]), "minmax", floor)[0] for ranked, floor in zip(lists, floors)]
    peaks = [fusion.peakedness(values) for values in scaled]
    total = sum(peaks)
    weights = tuple(p / total for p in peaks) if total > 0 else (0.5, 0.5)
    return fusion.linear(lists, weights, "minmax", floors)[0]


def auto_shrunk(strength: float) -> Rule:
    """Auto weights pulled toward equal ones: w = 0.5 + strength * (auto - 0.5), a prior of 0.5
    that the per-query evidence moves only part of the way."""

    def rule(lists: list[Ranked], floors: list[float | None]) -> Ranked:
        _, weights = fusion.linear(lists, (), "minmax", floors, adaptive=True)
        w = 0.5 + strength * (weights[0] - 0.5)
        return fusion.linear(lists, (w, 1 - w), "minmax", floors)[0]

    return rule


def combmnz(lists: list[Ranked], floors: list[float | None]) -> Ranked:
    """CombMNZ (Fox and Shaw, TREC-2 1994): the sum of min-max scores times the number of lists
    that hold the document."""
    fused = fusion.linear(lists, (1.0, 1.0), "minmax", floors)[0]
    holders: dict[int, int] = {}
    for ranked in lists:
        for doc, _ in ranked:
            holders[doc] = holders.get(doc, 0) + 1
    return sorted(((doc, score * holders[doc]) for doc, score in fused), key=lambda r: (-r[1], r[0]))


def rrf(k: int) -> Rule:
    return lambda lists, floors: fusion.rrf(lists, k)


RULES: dict[str, tuple[Rule, str]] = {
    "linear(alpha => auto)": (auto, "dialect: the default since 2026-12-05 (peakedness over the same depth)"),
    "auto, each list over its own rows": (auto_own_depth, "the default before 2026-12-05"),
    "auto shrunk halfway to 0.5": (auto_shrunk(0.5), "offline only"),
    **{f"linear(alpha => {a})": (linear(a), "dialect") for a in (0.3, 0.4, 0.5, 0.6, 0.7)},
    "linear(alpha => 0.5, norm => zscore)": (linear(0.5, "zscore"), "dialect"),
    "CombMNZ (min-max)": (combmnz, "offline only"),
    **{f"rrf(k => {k})": (rrf(k), "dialect") for k in (10, 20, 30, 60)},
}


def first_words(text: str, n: int) -> str:
    """The query's first n words that BM25 keeps (two or more word characters, not a stopword):
    a short query made from a long one, judged by the long one's judgments."""
    return " ".join([w for w in re.findall(r"\w\w+", text) if w.lower() not in STOPWORDS_EN][:n])


def candidate_lists(db, name: str, folder: str, words: int | None = None) -> dict[str, dict]:
    """Each judged query's SPARSE and DENSE top DEPTH as (external id, score), and the engine's
    bare HYBRID top 10; with `words`, for the query cut to its first words."""
    out = {}
    for qid, text in test_queries(folder).items():
        text = first_words(text, words) if words else text
        row = {}
        for side, signal in (("sparse", "SPARSE(:q)"), ("dense", "DENSE(:q)")):
            row[side] = [(r["id"], float(r["score"])) for r in db.query(f"SELECT id, score FROM {name} SEARCH {signal} LIMIT {DEPTH}", q=text)]
        row["hybrid"] = [r["id"] for r in db.query(f"SELECT id FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 10", q=text)]
        out[qid] = row
    return out


def fused_top10(rule: Rule, row: dict, candidates: int) -> list[str]:
    ids: dict[str, int] = {}
    lists = [[(ids.setdefault(doc, len(ids)), score) for doc, score in row[side][:candidates]] for side in ("sparse", "dense")]
    # a sparse list shorter than asked holds every match: its floor is a non-match's 0
    floors = [0.0 if len(row["sparse"]) < candidates else None, None]
    names = {i: doc for doc, i in ids.items()}
    return [names[doc] for doc, _ in rule(lists, floors)[:10]]


def per_query(rule: Rule, data: dict[str, dict], qrels: dict, candidates: int) -> dict[str, float]:
    run = {qid: {doc: float(10 - i) for i, doc in enumerate(fused_top10(rule, row, candidates))} for qid, row in data.items()}
    return {q: m["ndcg_cut_10"] for q, m in evaluate_run(run, qrels).items()}


def score(rule: Rule, data: dict[str, dict], qrels: dict, candidates: int) -> float:
    return statistics.fmean(per_query(rule, data, qrels, candidates).values())


def paired_bootstrap(a: dict[str, float], b: dict[str, float], rounds: int = 10_000) -> tuple[float, float, float]:
    """The mean per-query difference a - b and its 95% bootstrap interval (queries resampled,
    seeded): how much of a difference between two rules on one set is the set's few queries."""
    d = np.array([a[q] - b[q] for q in sorted(a)])
    means = np.random.default_rng(0).choice(d, size=(rounds, d.size)).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--dsn")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fusion_loco")
    parser.add_argument("--first-words", type=int, metavar="N",
                        help="cut every query to its first N words BM25 keeps (short queries: most sparse lists become exhaustive)")
    args = parser.parse_args()
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    db = sparsesql.connect(args.dsn or embedded.start(CACHE_DIR), sparse_tier=True)
    anchors = {} if args.first_words else best_anchors(args.folders)
    names, data, qrels = [], {}, {}
    for folder in args.folders:
        name = load_beir(db, folder, progress=True)
        names.append(name)
        data[name], qrels[name] = candidate_lists(db, name, folder, args.first_words), load_qrels(folder)
        differ = [q for q, row in data[name].items() if fused_top10(auto, row, DEPTH) != row["hybrid"]]
        if differ:
            sys.exit(f"{name}: the offline default fusion differs from the engine's HYBRID on queries {differ[:5]}")
        if args.first_words:  # the anchors were judged on the whole queries: compare with a fixed 0.5 instead
            anchors[name] = ("linear(alpha => 0.5) on the same short queries", score(linear(0.5), data[name], qrels[name], DEPTH))
    rows = []
    for label, (rule, where) in RULES.items():
        for candidates in (100, 200):
            ndcg = {n: score(rule, data[n], qrels[n], candidates) for n in names}
            gains = {n: ndcg[n] - anchors[n][1] for n in names}
            rows.append({"rule": label, "candidates": candidates, "where": where, "ndcg@10": ndcg, "gains": gains,
                         "worst": min(gains.values()), "mean": statistics.fmean(gains.values())})
            print(f"{label:40s} {candidates}  worst {rows[-1]['worst']:+.4f}  mean {rows[-1]['mean']:+.4f}", flush=True)
    rows.sort(key=lambda r: rank(r["gains"], wins=False))
    table = {f"{r['rule']}, candidates {r['candidates']}": r["gains"] for r in rows}
    folds = tuning.leave_one_collection_out(table, lambda rest: min(rest, key=lambda k: rank(rest[k], wins=False)))
    default = next(r for r in rows if r["rule"] == "linear(alpha => auto)" and r["candidates"] == DEPTH)
    date = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    lines = [
        "## Fusion rules on the development sets, and left out one at a time"
        + (f" (queries cut to their first {args.first_words} words)" if args.first_words else ""), "",
        f"`{command}`, {date}. Every rule fuses the engine's own SPARSE and DENSE top {DEPTH} (or their top 100); "
        "the default rule's top 10 equals the engine's bare HYBRID on every query (checked in the run).", "",
        "Best anchors: " + ", ".join(f"{n} {a} {v:.4f}" for n, (a, v) in anchors.items()), "",
        f"Each cell: nDCG@10 (gain over the set's best anchor). Rules losing more than {TOLERANCE} on any set come last.", "",
        "| rule | candidates | " + " | ".join(names) + " | worst gain | mean gain | where |",
        "|---|---|" + "---|" * (len(names) + 3),
    ]
    for r in rows:
        cells = " | ".join(f"{r['ndcg@10'][n]:.4f} ({r['gains'][n]:+.4f})" for n in names)
        lines.append(f"| `{r['rule']}` | {r['candidates']} | {cells} | {r['worst']:+.4f} | {r['mean']:+.4f} | {r['where']} |")
    loco = [f.score for f in folds]
    spread = {n: paired_bootstrap(per_query(auto, data[n], qrels[n], DEPTH), per_query(rrf(60), data[n], qrels[n], DEPTH)) for n in names}
    lines += ["", "### Leave one collection out", "",
              "The selection rule (within the tolerance everywhere, then the largest worst-case gain) run on four sets and scored on the fifth.", "",
              "| held out | chosen on the other four | its gain there (LOCO) | the best rule's gain there |", "|---|---|---|---|",
              *(f"| {f.held_out} | `{f.chosen}` | {f.score:+.4f} | {f.best:+.4f} |" for f in folds), "",
              f"LOCO of the selection rule: worst {min(loco):+.4f}, mean {statistics.fmean(loco):+.4f}. "
              f"The default (`linear(alpha => auto)`, candidates {DEPTH}) in-sample: worst {default['worst']:+.4f}, mean {default['mean']:+.4f}; "
              "a fixed default is the same rule on every set, so its LOCO figures are its in-sample ones.",
              "", "### How much of a difference is each set's few queries",
              "", f"The default minus `rrf(k => 60)`, both over the same candidate lists ({DEPTH}): the mean per-query nDCG@10 difference "
              "and its 95% bootstrap interval (queries resampled 10,000 times, seed 0).", "",
              "| set | queries | default - rrf(k => 60) | 95% interval |", "|---|---|---|---|",
              *(f"| {n} | {len(data[n])} | {m:+.4f} | [{lo:+.4f}, {hi:+.4f}] |" for n, (m, lo, hi) in spread.items())]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "date": date, "anchors": anchors, "rows": rows,
                                                        "loco": [vars(f) for f in folds], "bootstrap": spread}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
