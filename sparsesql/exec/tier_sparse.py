"""A sparse signal's top k from the memory tier's index: the statistics and terms of the search's
snapshot, its filter and search-syntax masks, and BM25F's field counts, put to `SparseIndex.top_k`."""

from __future__ import annotations

import numpy as np

from sparsesql.plan import stages as st
from sparsesql.tier.fields import FieldScoring
from sparsesql.tier.index import QueryTerm, Scoring


def score_sparse(stage: st.TierCandidates, loaded, known: list[tuple[str, int, int]], n_docs: int, sum_len: int,
                 field_len: tuple[int, ...], kept: np.ndarray | None, denied: np.ndarray | None, counts) -> tuple:
    """(index, docs, scores, how) of the stage's top k, among the `kept` doc ids (None: all)
    less the `denied` ones; under the tier's lock. BM25F over one text field is BM25 with k1
    over the field's weight (w tf / B / (k1 + w tf / B) = tf / (tf + k1 / w B)); over more,
    the field counts score it (`counts`, tier/fields.py)."""
    info = stage.collection
    terms = [QueryTerm(int(t), stage.terms[term], int(df)) for term, t, df in known if df > 0 and term in stage.terms]
    k1 = info.settings.k1 / stage.fields[0] if stage.fields is not None and len(stage.fields) == 1 else info.settings.k1
    scoring = Scoring(stage.field.bm25, k1, info.settings.b, float(n_docs), sum_len / max(n_docs, 1), idf=stage.idf)
    fields = None if counts is None else FieldScoring(counts.data, np.asarray(stage.fields, dtype=np.float64),
                                                      np.asarray(field_len, dtype=np.float64) / max(float(n_docs), 1.0))
    mask = None
    if kept is not None:
        mask = np.zeros(len(loaded.index.alive), dtype=bool)
        mask[kept[kept < len(mask)]] = True
    if denied is not None:
        mask = loaded.index.alive.copy() if mask is None else mask
        mask[denied[denied < len(mask)]] = False
    dropped = None
    if stage.syntax is not None and stage.syntax.words:  # excluded words: their holders from the postings in memory
        held = loaded.index.holding([int(t) for term, t, _ in known if term in stage.syntax.words])
        mask = loaded.index.alive & ~held if mask is None else mask & ~held
        dropped = int(held.sum())
    docs, scores, how = loaded.index.top_k(terms, scoring, stage.k, allowed=mask, after=stage.after, fields=fields)
    if dropped is not None:
        how = {"the search syntax drops": f"{dropped} documents ({stage.syntax.text}: from the postings in memory)", **how}
    return loaded, docs, scores, how
