"""Adaptive fusion weights on the case that made the default HYBRID lose to a fixed 0.5: a short
query whose sparse list is short and flat (a few exact matches of a rare term, all scoring alike)
against a full dense list that cannot tell its candidates apart.

Peakedness is compared over the same depth for both lists; measured over its own matches only,
the short list looked like the flattest list there is and lost nearly all of its weight.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from sparsesql.retrieval.fusion import adaptive_weights, linear

MATCHES = 5  # documents holding the rare term, all alike
OTHERS = 55
DIM = 8


def test_a_short_list_of_equal_exact_matches_is_peaked_not_flat():
    """Five matches scaled from the floor 0 (all about 1) against a dense list of 60 spread
    evenly: over their own five rows the matches look flat (peakedness about 0), over sixty, the
    55 they lack at 0, they are the most peaked list there is."""
    sparse = np.array([1.0, 1.0, 0.98, 0.97, 0.97])
    dense = np.linspace(1.0, 0.0, MATCHES + OTHERS)
    w_sparse, w_dense = adaptive_weights([sparse, dense], [0.0, 0.0])
    assert w_sparse > 0.6 and w_sparse + w_dense == pytest.approx(1.0)
    # the same lists of equal length compare as before: the flatter one gets less
    assert adaptive_weights([np.linspace(1, 0, 60), np.full(60, 0.9)])[0] > 0.8
    # an empty list ranks nothing and gets nothing, whatever the other's depth
    assert adaptive_weights([np.zeros(0), dense], [0.0, 0.0]) == (0.0, 1.0)
    # a list of equal scores without a floor: its missing documents are as good as its own (1)
    assert adaptive_weights([np.ones(5), dense], [1.0, 0.0])[0] == 0.0


def test_the_exact_matches_of_a_rare_term_come_first_when_the_dense_list_is_noise():
    ranked_sparse = [(i, 7.0 - 0.01 * i) for i in range(MATCHES)]  # exhaustive: the floor is 0
    rng = np.random.default_rng(7)
    dense_scores = rng.uniform(0.2, 0.4, MATCHES + OTHERS)
    ranked_dense = sorted(enumerate(dense_scores.tolist()), key=lambda r: -r[1])
    fused, weights = linear([ranked_sparse, ranked_dense], (), "minmax", [0.0, None], adaptive=True)
    assert {doc for doc, _ in fused[:MATCHES]} == set(range(MATCHES)), weights
    assert weights[0] > 0.5


@pytest.fixture
def rare(db, name):
    """Sixty documents of equal length; five hold the rare term 'quokka', the rest common words.
    The vectors are noise around one direction, so the dense list of sixty is nearly flat."""
    rng = np.random.default_rng(3)
    base = np.ones(DIM) / np.sqrt(DIM)
    docs = []
    for i in range(MATCHES + OTHERS):
        words = "quokka island walk" if i < MATCHES else "island walk today"
        vector = base + 0.05 * rng.standard_normal(DIM)
        docs.append({"id": f"d{i:02d}", "title": words, "vector": vector.tolist()})
    db.create_collection(name, {"title": "text"}, dense="none", dim=DIM).add(docs)
    return name


def test_the_default_hybrid_puts_the_exact_matches_first_and_explain_shows_the_weights(db, rare):
    """End to end through the dialect: the bare HYBRID (auto weights, 200 candidates) puts the
    five 'quokka' documents first although the dense side ranks them anywhere, and EXPLAIN
    ANALYZE reports the sparse list's weight above one half; a fixed alpha => 0.5 agrees."""
    v = (np.ones(DIM) / np.sqrt(DIM)).tolist()
    dense = [r.id for r in db.query(f"SELECT id FROM {rare} SEARCH DENSE(:v) LIMIT 5", v=v)]
    matches = {f"d{i:02d}" for i in range(MATCHES)}
    assert set(dense) != matches  # the dense side alone does not find them
    for fusion in ("", ", fusion => linear(alpha => 0.5)"):
        top = db.query(f"SELECT id FROM {rare} SEARCH HYBRID(SPARSE('quokka'), DENSE(:v){fusion}) LIMIT 5", v=v)
        assert {r.id for r in top} == matches, fusion
    plan = "\n".join(r.plan for r in db.query(f"EXPLAIN ANALYZE SELECT id FROM {rare} SEARCH HYBRID(SPARSE('quokka'), DENSE(:v)) LIMIT 5", v=v))
    weights = re.search(r"weights sparse ([0-9.]+), dense ([0-9.]+)", plan)
    assert weights is not None and float(weights[1]) > 0.5 and float(weights[1]) + float(weights[2]) == pytest.approx(1.0, abs=2e-3), plan
