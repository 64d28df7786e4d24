"""Score a run against judgements with trec_eval semantics (via pytrec_eval), as BEIR does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from statistics import fmean

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

DEFAULT_METRICS = ("ndcg_cut_10", "recall_100")

_DISPLAY_NAMES = {"ndcg_cut": "ndcg", "recall": "recall", "P": "P"}


def _measure(metric: str) -> str:
    """Turn a result key such as 'ndcg_cut_10' into pytrec_eval's measure name 'ndcg_cut.10'."""
    base, _, cutoff = metric.rpartition("_")
    return f"{base}.{cutoff}" if base and cutoff.isdigit() else metric


def evaluate_run(
    run: Run,
    qrels: Qrels,
    metrics: Iterable[str] = DEFAULT_METRICS,
    ignore_identical_ids: bool = False,
) -> dict[str, dict[str, float]]:
    """Return metric values per judged query.

    Every retrieved document counts, as in trec_eval. BEIR's evaluation can drop a document whose
    id equals the query id (its `ignore_identical_ids`, meant for duplicate-question sets where
    such a hit is the query itself); pass True for that. It is off by default because where query
    and document ids are unrelated numbers it drops real hits (cisi has 7 judged pairs such as
    query 23 / doc 23), and the shared sets' reference figures were computed without it.

    trec_eval only scores queries that appear in the run; a judged query that is missing (or whose
    run is empty) gets 0 for every metric here, so that a mean over the result is a mean over all
    judged queries and a system cannot gain by skipping hard queries.
    """
    import pytrec_eval  # deferred: a C extension not needed to import sparsesql

    metrics = tuple(metrics)
    cleaned = {
        str(qid): {
            str(doc): float(score)
            for doc, score in docs.items()
            if not (ignore_identical_ids and str(doc) == str(qid))
        }
        for qid, docs in run.items()
        if qid in qrels
    }
    cleaned = {qid: docs for qid, docs in cleaned.items() if docs}
    evaluator = pytrec_eval.RelevanceEvaluator(
        {str(qid): {str(d): int(r) for d, r in docs.items()} for qid, docs in qrels.items()},
        {_measure(m) for m in metrics},
    )
    scored = evaluator.evaluate(cleaned)
    return {
        str(qid): {m: float(scored.get(str(qid), {}).get(m, 0.0)) for m in metrics} for qid in qrels
    }


def _display(metric: str) -> str:
    """Name a metric the way papers and BEIR tables do: 'ndcg_cut_10' -> 'ndcg@10'."""
    base, _, cutoff = metric.rpartition("_")
    if base in _DISPLAY_NAMES and cutoff.isdigit():
        return f"{_DISPLAY_NAMES[base]}@{cutoff}"
    return metric


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Average per-query values into e.g. {"ndcg@10": x, "recall@100": y}, keeping metric order."""
    names = dict.fromkeys(m for values in per_query.values() for m in values)
    return {_display(m): fmean(values.get(m, 0.0) for values in per_query.values()) for m in names}
