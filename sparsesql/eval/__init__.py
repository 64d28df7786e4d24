"""Evaluation helpers: BEIR folders in, trec_eval metrics out."""

from sparsesql.eval.beir import (
    corpus_fingerprint,
    load_corpus,
    load_qrels,
    load_queries,
    test_queries,
)
from sparsesql.eval.metrics import evaluate_run, mean_metrics

__all__ = [
    "corpus_fingerprint",
    "evaluate_run",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "mean_metrics",
    "test_queries",
]
