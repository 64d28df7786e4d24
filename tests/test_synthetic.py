"""The synthetic corpus of benchmarks/synthetic.py: deterministic, Zipfian, clustered, analyzer-proof.

No database: these check the generator that the speed benchmark runs on.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from benchmarks import synthetic
from sparsesql.analysis import STOPWORDS_EN, analyze

N = 3000


@pytest.fixture(scope="module")
def corpus() -> synthetic.Batch:
    return synthetic.make_batch(0, N)


def _digest(docs: list[dict]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d["id"].encode())
        h.update(d["text"].encode())
        h.update(np.ascontiguousarray(d["vector"], dtype=np.float32).tobytes())
    return h.hexdigest()


def test_same_seed_same_data_whatever_the_batching():
    a = [d for batch in synthetic.generate(250, seed=3, batch=100) for d in batch]
    b = [d for batch in synthetic.generate(250, seed=3, batch=64) for d in batch]
    assert [d["id"] for d in a] == [f"d{i}" for i in range(250)]
    assert _digest(a) == _digest(b)
    assert [len(batch) for batch in synthetic.generate(250, seed=3, batch=100)] == [100, 100, 50]
    other = [d for batch in synthetic.generate(250, seed=4, batch=100) for d in batch]
    assert sum(x["text"] != y["text"] for x, y in zip(a, other)) > 240


def test_any_document_alone_equals_the_streamed_one_and_corpora_are_prefixes():
    streamed = [d for batch in synthetic.generate(500, batch=128) for d in batch]
    for i in (0, 1, 127, 128, 311, 499):
        alone = synthetic.document(i)
        assert alone["id"] == streamed[i]["id"] and alone["text"] == streamed[i]["text"]
        assert np.array_equal(alone["vector"], streamed[i]["vector"])
    smaller = [d for batch in synthetic.generate(300) for d in batch]
    assert _digest(smaller) == _digest(streamed[:300])


def test_pinned_output_is_the_same_on_every_machine():
    """Integer hashing and fixed-order sums only: these digests must not change anywhere."""
    assert _digest(next(synthetic.generate(200, batch=200))) == (
        "4a02173afade4aa7982c085df8b2af9034512e25b49bac4c3bb4252b3b77390d"
    )
    h = hashlib.sha256()
    for q in synthetic.queries(10_000, 50):
        h.update(q["text"].encode())
        h.update(q["vector"].tobytes())
        h.update(q["source"].encode())
    assert h.hexdigest() == "0226f2f8f2922eee9e05071c0e7ec854914a7a0cb02437a741a5d92ab0fc0791"


def test_every_word_survives_the_analyzer_whole_and_distinct():
    words = synthetic.vocabulary()
    assert len(words) == synthetic.VOCAB_SIZE == len(set(words)) >= 200_000
    assert not set(words) & STOPWORDS_EN
    assert all(w.isascii() and w.isalpha() for w in words)
    analysed = analyze(" ".join(words))
    collisions = sum(a != w for a, w in zip(analysed, words))
    assert len(analysed) == len(words) and collisions == 0


def test_text_is_the_term_ids(corpus):
    words = synthetic.vocabulary()
    texts = corpus.texts()
    for i in (0, 17, N - 1):
        ids = corpus.terms[corpus.offsets[i]:corpus.offsets[i + 1]]
        assert analyze(texts[i]) == [words[t] for t in ids]


def test_term_frequencies_follow_zipf(corpus):
    counts = np.sort(np.bincount(corpus.terms, minlength=synthetic.VOCAB_SIZE))[::-1]
    ranks = np.arange(10, 3000)
    slope = np.polyfit(np.log(ranks), np.log(counts[ranks - 1]), 1)[0]
    assert -1.2 < slope < -0.8, slope
    assert counts[0] > 50 * counts[2999] > 0


def test_lengths_are_log_normal_with_a_long_tail(corpus):
    lengths = corpus.lengths
    assert lengths.min() >= synthetic.LENGTH_MIN and lengths.max() <= synthetic.LENGTH_MAX
    assert 75 <= np.median(lengths) <= 105
    assert 0.01 < np.mean(lengths > 400) < 0.05  # log-normal sigma 0.75: 2.3% above 4.4x the median
    assert np.array_equal(corpus.offsets[1:] - corpus.offsets[:-1], lengths)


def test_vectors_are_unit_and_clustered(corpus):
    v = corpus.vectors
    assert v.dtype == np.float32 and v.shape == (N, synthetic.DIM)
    assert np.allclose(np.linalg.norm(v.astype(np.float64), axis=1), 1.0, atol=1e-5)
    sims = v[:1500].astype(np.float64) @ v[:1500].T.astype(np.float64)
    c = corpus.clusters[:1500]
    same = (c[:, None] == c[None, :]) & ~np.eye(1500, dtype=bool)
    other_super = (c[:, None] // synthetic.CLUSTERS_PER_SUPER) != (c[None, :] // synthetic.CLUSTERS_PER_SUPER)
    assert same.sum() > 500
    assert sims[same].mean() > 0.5 and sims[other_super].mean() < 0.2


def test_documents_of_a_cluster_share_words(corpus):
    c = corpus.clusters
    sets = [set(corpus.terms[corpus.offsets[i]:corpus.offsets[i + 1]].tolist()) for i in range(N)]
    pairs = [(i, j) for i in range(400) for j in range(i + 1, N) if c[i] == c[j]][:300]
    rng = np.random.default_rng(0)
    random_pairs = rng.integers(0, N, size=(300, 2))

    def overlap(i: int, j: int) -> float:
        return len(sets[i] & sets[j]) / len(sets[i] | sets[j])

    assert np.mean([overlap(i, j) for i, j in pairs]) > 2 * np.mean([overlap(i, j) for i, j in random_pairs])


def test_queries_come_from_their_source_documents():
    qs = synthetic.queries(5_000, 200)
    assert [q["id"] for q in qs[:3]] == ["q0", "q1", "q2"]
    assert [q["text"] for q in synthetic.queries(5_000, 5, first=100)] == [q["text"] for q in qs[100:105]]
    sizes = Counter()
    for q in qs[:60]:
        source = synthetic.document(int(q["source"][1:]))
        terms = analyze(q["text"])
        assert terms == q["terms"] and len(set(terms)) == len(terms)
        assert set(terms) <= set(analyze(source["text"]))
        assert float(q["vector"] @ source["vector"]) > 0.8
        sizes[len(terms)] += 1
    assert set(sizes) <= {2, 3, 4, 5, 6} and len(sizes) >= 3
    assert all(abs(float(np.linalg.norm(q["vector"])) - 1) < 1e-5 for q in qs)


def test_queries_favour_frequent_terms_of_their_source():
    """Drawn in proportion to frequency: the mean frequency (in the source) of a query's terms is
    near the frequency-weighted mean sum(tf^2)/sum(tf), well above the plain mean of a uniform draw."""
    picked, uniform, weighted = [], [], []
    for q in synthetic.queries(5_000, 200):
        tf = Counter(analyze(synthetic.document(int(q["source"][1:]))["text"]))
        counts = np.array(list(tf.values()), dtype=float)
        picked.append(np.mean([tf[t] for t in q["terms"]]))
        uniform.append(counts.mean())
        weighted.append((counts**2).sum() / counts.sum())
    assert np.mean(picked) > (np.mean(uniform) + np.mean(weighted)) / 2


def test_document_frequencies_are_exact():
    df = synthetic.document_frequencies(400)
    expected = Counter(t for batch in synthetic.generate(400) for d in batch for t in set(analyze(d["text"])))
    assert df == dict(expected)
    assert int(synthetic.df_array(400).sum()) == sum(expected.values())


def test_band_boundaries():
    assert [synthetic.band_of(n) for n in (0, 999, 1_000, 100_000, 100_001)] == [
        "<1k", "<1k", "1k-100k", "1k-100k", ">100k"
    ]
    df = {"kopa": 5, "zedibu": 1_000, "tamu": 100_001}
    assert synthetic.band({"text": "kopa"}, df) == "<1k"
    assert synthetic.band("kopa zedibu", df) == "1k-100k"
    assert synthetic.band({"text": "zedibu kopa tamu"}, df) == ">100k"
    assert synthetic.band("unknown words", df) == "<1k"


def test_queries_by_band_fills_the_reachable_bands():
    by_band = synthetic.queries_by_band(5_000, 10)
    assert len(by_band["<1k"]) == len(by_band["1k-100k"]) == 10 and by_band[">100k"] == []
    df = synthetic.document_frequencies(5_000)
    for name, qs in by_band.items():
        assert all(synthetic.band(q, df) == name for q in qs)


def test_calibrated_vectors_have_the_intrinsic_dimensionality_of_real_embeddings():
    """benchmarks/lid.py's estimate: MiniLM on the shared sets gives 13-19; the calibrated model
    stays in that range where the hard one (centroid + isotropic noise) is far below it at 11k."""
    from benchmarks.lid import lid_mle

    calibrated = np.concatenate([b.vectors for b in synthetic.batches(11_000, batch=5_000, model="calibrated")])
    again = synthetic.make_batch(4_321, 4_323, model="calibrated").vectors
    np.testing.assert_array_equal(calibrated[4_321:4_323], again)  # any range gives the same vectors
    np.testing.assert_allclose(np.linalg.norm(calibrated, axis=1), 1, rtol=1e-5)
    assert 14 <= lid_mle(calibrated, points=400) <= 22
    hard = np.concatenate([b.vectors for b in synthetic.batches(11_000, batch=5_000)])
    assert lid_mle(hard, points=400) < 11
    with pytest.raises(ValueError, match="vector model 'soft'"):
        synthetic.make_batch(0, 1, model="soft")
    q = synthetic.queries(11_000, 3, model="calibrated")[0]
    source = int(q["source"][1:])
    assert float(q["vector"] @ calibrated[source]) > 0.8
