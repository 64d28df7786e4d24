"""Coverage selection and MMR as functions: lazy greedy equals plain greedy, the objective is
monotone and submodular, and the lambda extremes mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesql.retrieval.diversify import PAGE, coverage_select, mmr_select, objective, relevance_scale, similarity


def instance(seed: int, n: int, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n), similarity(rng.normal(size=(n, dim)))


def plain_greedy(relevance: np.ndarray, sim: np.ndarray, k: int, lam: float) -> list[int]:
    """The textbook greedy: every remaining document's marginal gain F(S + j) - F(S), each round,
    the best taken (lowest index on ties). The gain is written out, as the same float operations
    the lazy version uses, so that exact ties (e.g. nothing left to cover at lambda 0) stay ties."""
    n = len(relevance)
    chosen: list[int] = []
    best = np.zeros(n)
    for _ in range(min(k, n)):
        gains = [
            lam / PAGE * relevance[j] + (1 - lam) / n * np.maximum(sim[:, j] - best, 0.0).sum() if j not in chosen else -np.inf
            for j in range(n)
        ]
        chosen.append(int(np.argmax(gains)))
        best = np.maximum(best, sim[:, chosen[-1]])
    return chosen


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 30), lam=st.floats(0, 1), data=st.data())
def test_written_out_gain_is_the_objective_difference(seed, n, lam, data):
    relevance, sim = instance(seed, n)
    chosen = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n - 1))
    j = data.draw(st.sampled_from([i for i in range(n) if i not in chosen]))
    best = sim[:, chosen].max(axis=1) if chosen else np.zeros(n)
    gain = lam / PAGE * relevance[j] + (1 - lam) / n * np.maximum(sim[:, j] - best, 0.0).sum()
    assert gain == pytest.approx(objective(relevance, sim, chosen + [j], lam) - objective(relevance, sim, chosen, lam), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 40), k=st.integers(1, 15), lam=st.floats(0, 1))
def test_lazy_greedy_equals_plain_greedy(seed, n, k, lam):
    relevance, sim = instance(seed, n)
    assert coverage_select(relevance, sim, k, lam) == plain_greedy(relevance, sim, k, lam)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 30), lam=st.floats(0, 1), data=st.data())
def test_objective_is_monotone_and_submodular(seed, n, lam, data):
    relevance, sim = instance(seed, n)
    big = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n - 1))
    small = [j for j in big if data.draw(st.booleans())]
    x = data.draw(st.sampled_from([j for j in range(n) if j not in big]))
    gain_small = objective(relevance, sim, small + [x], lam) - objective(relevance, sim, small, lam)
    gain_big = objective(relevance, sim, big + [x], lam) - objective(relevance, sim, big, lam)
    assert gain_big >= -1e-12  # monotone
    assert gain_small >= gain_big - 1e-12  # diminishing returns


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 120), lam=st.floats(0, 1), small=st.integers(1, 20), extra=st.integers(0, 100))
def test_a_larger_limit_extends_a_smaller_one(seed, n, lam, small, extra):
    """LIMIT decides how many are taken, never which come first, for both methods."""
    relevance, sim = instance(seed, n)
    for select in (coverage_select, mmr_select):
        assert select(relevance, sim, small + extra, lam)[:small] == select(relevance, sim, small, lam)


def test_lambda_one_is_the_relevance_order():
    relevance, sim = instance(3, 25)
    top = list(np.argsort(-relevance)[:10])
    assert coverage_select(relevance, sim, 10, 1.0) == top
    assert mmr_select(relevance, sim, 10, 1.0) == top


def test_coverage_prefers_a_new_cluster_over_a_near_copy():
    """Two tight clusters, the more relevant one larger: the second pick comes from the other."""
    vectors = np.array([[1, 0.01 * i, 0] for i in range(6)] + [[0, 1, 0.01 * i] for i in range(4)], dtype=float)
    relevance = np.array([1.0, 0.95, 0.94, 0.93, 0.92, 0.91, 0.6, 0.59, 0.58, 0.57])
    sim = similarity(vectors)
    first, second = coverage_select(relevance, sim, 2, 0.5)
    assert first < 6 and second >= 6
    assert mmr_select(relevance, sim, 2, 0.5)[1] >= 6
    assert coverage_select(relevance, sim, 2, 1.0) == [0, 1]


def test_selection_handles_small_pools():
    relevance, sim = instance(5, 3)
    assert sorted(coverage_select(relevance, sim, 10, 0.7)) == [0, 1, 2]
    assert sorted(mmr_select(relevance, sim, 10, 0.7)) == [0, 1, 2]
    assert coverage_select(np.zeros(0), np.zeros((0, 0)), 5, 0.7) == []


@pytest.mark.parametrize("scores, expected", [([3.0, 1.0, 2.0], [1.0, 0.0, 0.5]), ([2.0, 2.0], [1.0, 1.0])])
def test_relevance_scale(scores, expected):
    assert relevance_scale(np.array(scores)).tolist() == expected


def test_similarity_is_clipped_cosine():
    sim = similarity(np.array([[1.0, 0.0], [-1.0, 0.0], [3.0, 3.0], [0.0, 0.0]]))
    assert sim[0, 1] == 0.0  # opposite: clipped, not negative
    assert sim[0, 2] == pytest.approx(np.sqrt(0.5))
    assert sim[3].tolist() == [0.0, 0.0, 0.0, 0.0]  # a missing vector covers nothing
