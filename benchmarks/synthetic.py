"""A deterministic synthetic corpus for speed at scale: Zipf terms, clustered 384-d vectors, queries.

    .venv/bin/python -m benchmarks.synthetic --docs 100000 --queries 1000 --out /tmp/syn100k
    .venv/bin/python -m benchmarks.synthetic --docs 1000000 --time-only     # measure, write nothing

From Python (repository root on sys.path):

    from benchmarks import synthetic
    for batch in synthetic.generate(1_000_000, seed=0):          # lists of {"id", "text", "vector"}
        collection.add(batch)
    df = synthetic.document_frequencies(1_000_000)               # analysed term -> df, exact
    qs = synthetic.queries(1_000_000, 1000)                       # {"id", "text", "vector", "source", ...}
    synthetic.band(qs[0], df)                                     # "<1k" | "1k-100k" | ">100k"

The model
---------
- Vocabulary: VOCAB_SIZE = 256,500 made-up words of two or three consonant-vowel syllables whose
  last vowel is a, o or u ("kopa", "zedibu"). No Snowball English rule strips a final a/o/u, no
  word contains "y", and none is a stopword, so sparsesql's analyzer keeps every word whole and
  distinct (tests/test_synthetic.py checks all of them). Word id = background rank; the 3,375
  two-syllable words take the top ranks (frequent words are short), in a fixed shuffled order.
- Topics: 1,000 clusters in 100 super-topics of 10. A super-topic owns 200 words (log-uniform
  over ranks 20..20,000), a cluster 100 words (log-uniform over ranks 200..VOCAB_SIZE).
- Document d: a cluster drawn uniformly; a length drawn log-normal (median 90, sigma 0.75, the
  normal being an Irwin-Hall sum of eight uniforms; clipped to 5..1000; mean about 119); each term drawn independently from the mixture 60%
  background Zipf-Mandelbrot p(r) ~ 1/(r + 2), 20% its super-topic's words, 20% its cluster's
  words (each list Zipf over its slots).
- Vector: normalise(centroid(cluster) + 0.75 * noise), 384-d float32. A centroid mixes a
  global direction (anisotropy, as real sentence embeddings have), its super-topic's direction
  and its own. Expected cosines: about 0.64 within a cluster, 0.39 within a super-topic, 0.06
  otherwise.
- Query q: a source document drawn uniformly; 2-6 distinct terms (30/30/20/12/8%) drawn from it
  without replacement in proportion to their frequency in it, so the common, long-posting terms
  appear in queries as often as they do in text; vector = normalise(source vector + 0.5 * noise).

Measured on this 2-core machine: 100k documents (text + vectors, as dicts) in 2.9 s, 1M in 31 s,
plus 11 s for the exact df of 1M (document_frequencies); peak memory 240 MB. Rank/frequency slope
-0.97 over ranks 10..10,000 (flatter at the top, Mandelbrot's shift). At 1M documents 79 terms have
df > 100k, and of 5,000 queries 56% fall in ">100k", 42% in "1k-100k" and 2.4% in "<1k"
(queries_by_band collects a given number per band).

Determinism
-----------
Every random number is a counter-based hash (SplitMix64's finaliser) of (seed, stream, document,
position), computed with numpy uint64 arithmetic. So any document is a pure function of its index:
document(i) equals the i-th streamed document whatever the batch size, a corpus of n documents is
the prefix of every larger one, and queries() rebuilds only its source documents. numpy's
Generator is not used: NEP 19 lets its distributions change between numpy versions (only the bit
generators are frozen), and seeding one Generator per document would cost ~20 us each.
Distributions are tabulated with integer arithmetic (alias tables built with Python ints,
vector noise as Irwin-Hall sums of 16-bit integers, norms summed in a fixed order), so text and
vectors are bit-identical on every machine. The only transcendental functions are in the
document length (exp) and the topic word ranks (exp, once per table): a libm that differs in the
last bit could only change a value that sits within 1e-15 of a rounding boundary.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIM = 384
N_SUPER = 100
CLUSTERS_PER_SUPER = 10
N_CLUSTERS = N_SUPER * CLUSTERS_PER_SUPER
SUPER_WORDS = 200  # words owned by a super-topic
CLUSTER_WORDS = 100  # words owned by a cluster
MIX = (3, 1, 1)  # background : super-topic : cluster, as weights of the term mixture
ZIPF_SHIFT = 2  # p(rank r, 1-based) ~ 1 / (r + ZIPF_SHIFT)
LENGTH_MEDIAN, LENGTH_SIGMA, LENGTH_MIN, LENGTH_MAX = 90.0, 0.75, 5, 1000
DOC_NOISE = 0.75  # norm of a document's noise relative to its (unit) centroid
# The "calibrated" vector model: below its cluster a document sits in a tree of LEVELS more levels,
# BRANCHING children a node, each level's offset LEVEL_SHRINK times the one above (the first
# LEVEL_WEIGHT), then isotropic noise of CALIBRATED_NOISE. Self-similar, so its local intrinsic
# dimensionality barely moves with the corpus size: Levina-Bickel MLE (k = 20, median of 1,000
# points) 17.7 at 11k documents and 17.9 at 100k, against MiniLM's 18.7-18.9 on cisi and npl;
# the "hard" model (centroid + isotropic noise) gives 8.2 and 58.0 (benchmarks/lid.py).
VECTOR_MODELS = ("hard", "calibrated")
LEVELS, BRANCHING, LEVEL_SHRINK, LEVEL_WEIGHT, CALIBRATED_NOISE = 6, 10, 0.9, 0.6, 0.5
QUERY_NOISE = 0.5
QUERY_LENGTHS = ((2, 30), (3, 30), (4, 20), (5, 12), (6, 8))  # (terms, weight)

CONSONANTS = "bdfghklmnprstvz"
VOWELS = "aeiou"
FINAL_VOWELS = "aou"  # Snowball English strips a final e, turns y into i, and has suffixes in i
SYLLABLES = [c + v for c in CONSONANTS for v in VOWELS]
FINAL_SYLLABLES = [c + v for c in CONSONANTS for v in FINAL_VOWELS]
VOCAB_SIZE = len(SYLLABLES) * len(FINAL_SYLLABLES) * (1 + len(SYLLABLES))  # 3,375 + 253,125

BANDS = ("<1k", "1k-100k", ">100k")

# ---------------------------------------------------------------------------------------------
# Counter-based random numbers

_M64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_U = np.uint64
_S30, _S27, _S31, _S32, _S11 = _U(30), _U(27), _U(31), _U(32), _U(11)
_C1, _C2 = _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB)
_LOW32, _LOW16 = _U(0xFFFFFFFF), _U(0xFFFF)

# Streams: one independent sequence of hashes per purpose.
(_LENGTH, _LENGTH2, _CLUSTER, _TOKEN, _NOISE, _CENTROID, _TOPIC, _ORDER,
 _Q_SOURCE, _Q_SIZE, _Q_TERM, _Q_NOISE, _BRANCH, _NODE) = range(1, 15)


def _mix_int(z: int) -> int:
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _key(seed: int, stream: int) -> np.uint64:
    return _U(_mix_int(_mix_int(seed * _GAMMA + 0x632BE59BD9B4E019) + stream * 0xD1B54A32D192ED03))


def _hash(key: np.uint64, counter: np.ndarray) -> np.ndarray:
    """64 random bits per uint64 counter: SplitMix64's output for state counter * gamma + key."""
    z = counter * _U(_GAMMA) + key
    z ^= z >> _S30
    z *= _C1
    z ^= z >> _S27
    z *= _C2
    z ^= z >> _S31
    return z


def _below(bits: np.ndarray, n: int) -> np.ndarray:
    """Uniform integers in [0, n) from the high 32 bits (multiply-shift, exact)."""
    return ((bits >> _S32) * _U(n)) >> _S32


def _gaussish(bits: np.ndarray) -> np.ndarray:
    """Irwin-Hall(4) of the four 16-bit fields, centred, unit variance: exact arithmetic only."""
    total = (bits & _LOW16) + ((bits >> _U(16)) & _LOW16) + ((bits >> _S32) & _LOW16) + (bits >> _U(48))
    return (total.astype(np.float64) - 131070.0) * _GAUSS_SCALE


_GAUSS_SCALE = 1.0 / math.sqrt(4 * (65536.0**2 - 1) / 12)


def _unit_rows(v: np.ndarray) -> np.ndarray:
    """Rows of v (d x n, one column per vector) scaled to unit norm, summed in a fixed order."""
    acc = v[0] * v[0]
    for j in range(1, v.shape[0]):
        acc += v[j] * v[j]
    return v / np.sqrt(acc)


# ---------------------------------------------------------------------------------------------
# Tables shared by every document (functions of the module constants alone)


def _alias(weights: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table from integer weights, in exact integer arithmetic.

    Sampling: i = uniform index; keep i when 32 random bits < threshold[i], else take alias[i].
    """
    n, total = len(weights), sum(weights)
    left = [w * n for w in weights]  # each bucket holds `total`
    threshold, alias = [total] * n, list(range(n))
    small = [i for i, w in enumerate(left) if w < total]
    large = [i for i, w in enumerate(left) if w >= total]
    while small and large:
        s, g = small.pop(), large.pop()
        threshold[s], alias[s] = left[s], g
        left[g] -= total - left[s]
        (small if left[g] < total else large).append(g)
    thr = np.array([(t << 32) // total for t in threshold], dtype=np.uint64)
    return thr, np.array(alias, dtype=np.int64)


def _zipf_weights(n: int) -> list[int]:
    return [(1 << 40) // (r + 1 + ZIPF_SHIFT) for r in range(n)]


@functools.lru_cache(maxsize=1)
def _term_table() -> tuple[np.ndarray, np.ndarray]:
    """One alias table over VOCAB_SIZE background ranks + super-topic slots + cluster slots."""
    bg, sup, clu = _zipf_weights(VOCAB_SIZE), _zipf_weights(SUPER_WORDS), _zipf_weights(CLUSTER_WORDS)
    t_bg, t_sup, t_clu = sum(bg), sum(sup), sum(clu)
    a, b, c = MIX
    weights = ([w * a * t_sup * t_clu for w in bg] + [w * b * t_bg * t_clu for w in sup]
               + [w * c * t_bg * t_sup for w in clu])
    return _alias(weights)


def _log_uniform_ranks(key: np.uint64, count: int, low: int, high: int) -> np.ndarray:
    u = (_hash(key, np.arange(count, dtype=np.uint64)) >> _S11).astype(np.float64) * 2.0**-53
    return np.minimum((low * np.exp(u * math.log(high / low))).astype(np.int64), high - 1)


@functools.lru_cache(maxsize=1)
def _topics() -> tuple[np.ndarray, np.ndarray]:
    """(super-topic words N_SUPER x SUPER_WORDS, cluster words N_CLUSTERS x CLUSTER_WORDS) as ids."""
    key = _key(0, _TOPIC)
    sup = _log_uniform_ranks(key, N_SUPER * SUPER_WORDS, 20, 20_000).reshape(N_SUPER, SUPER_WORDS)
    clu = _log_uniform_ranks(_key(1, _TOPIC), N_CLUSTERS * CLUSTER_WORDS, 200, VOCAB_SIZE)
    return sup, clu.reshape(N_CLUSTERS, CLUSTER_WORDS)


@functools.lru_cache(maxsize=1)
def _word_array() -> np.ndarray:
    ns, nf = len(SYLLABLES), len(FINAL_SYLLABLES)
    two = [a + b for a in SYLLABLES for b in FINAL_SYLLABLES]
    three = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in FINAL_SYLLABLES]
    assert len(two) == ns * nf and len(two) + len(three) == VOCAB_SIZE
    out: list[str] = []
    for i, words in enumerate((two, three)):  # a fixed pseudo-random order within each length
        order = np.argsort(_hash(_key(i, _ORDER), np.arange(len(words), dtype=np.uint64)), kind="stable")
        out += [words[j] for j in order.tolist()]
    return np.array(out, dtype=object)


def vocabulary() -> list[str]:
    """The words, by term id (= background frequency rank, 0 the most frequent)."""
    return _word_array().tolist()


@functools.lru_cache(maxsize=1)
def _centroids() -> np.ndarray:
    """Unit cluster centroids, DIM x N_CLUSTERS (float64)."""
    key = _key(0, _CENTROID)
    dims = np.arange(DIM, dtype=np.uint64)[:, None]

    def directions(first: int, count: int) -> np.ndarray:
        ids = np.arange(first, first + count, dtype=np.uint64)[None, :]
        return _unit_rows(_gaussish(_hash(key, ids * _U(DIM) + dims)))

    glob = directions(0, 1)
    sup = directions(1, N_SUPER)
    own = directions(1 + N_SUPER, N_CLUSTERS)
    super_of = np.arange(N_CLUSTERS) // CLUSTERS_PER_SUPER
    return _unit_rows(0.4 * glob + sup[:, super_of] + 0.8 * own)


# ---------------------------------------------------------------------------------------------
# Documents


@dataclass
class Batch:
    """Documents start .. start + len(lengths) - 1 as arrays (what generate() turns into dicts).

    terms[offsets[i]:offsets[i + 1]] are the term ids of document start + i, in text order.
    """

    start: int
    lengths: np.ndarray  # int64, terms per document (= doc_len after analysis)
    offsets: np.ndarray  # int64, len(lengths) + 1
    terms: np.ndarray  # int32 term ids (index into vocabulary())
    clusters: np.ndarray  # int64, cluster of each document
    vectors: np.ndarray | None  # float32, len(lengths) x DIM, unit rows

    def texts(self) -> list[str]:
        flat = _word_array()[self.terms].tolist()
        bounds = self.offsets.tolist()
        return [" ".join(flat[a:b]) for a, b in itertools.pairwise(bounds)]


def _lengths(seed: int, docs: np.ndarray) -> np.ndarray:
    z = (_gaussish(_hash(_key(seed, _LENGTH), docs)) + _gaussish(_hash(_key(seed, _LENGTH2), docs))) / math.sqrt(2)
    raw = np.rint(LENGTH_MEDIAN * np.exp(LENGTH_SIGMA * z))
    return np.clip(raw, LENGTH_MIN, LENGTH_MAX).astype(np.int64)


def _terms(seed: int, docs: np.ndarray, lengths: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    threshold, alias = _term_table()
    sup_words, clu_words = _topics()
    n_table = len(threshold)
    key = _key(seed, _TOKEN)
    total = int(lengths.sum())
    out = np.empty(total, dtype=np.int32)
    starts = np.cumsum(lengths) - lengths
    chunk = 1 << 20  # tokens per step: keeps the temporaries in cache
    doc_of = np.repeat(np.arange(len(docs)), lengths)
    for lo in range(0, total, chunk):
        hi = min(total, lo + chunk)
        d = doc_of[lo:hi]
        pos = np.arange(lo, hi, dtype=np.int64) - starts[d]
        bits = _hash(key, docs[d] * _U(4096) + pos.astype(np.uint64))
        slot = _below(bits, n_table).astype(np.int64)
        slot = np.where((bits & _LOW32) < threshold[slot], slot, alias[slot])
        c = clusters[d]
        is_sup = (slot >= VOCAB_SIZE) & (slot < VOCAB_SIZE + SUPER_WORDS)
        is_clu = slot >= VOCAB_SIZE + SUPER_WORDS
        word = slot.copy()
        word[is_sup] = sup_words[c[is_sup] // CLUSTERS_PER_SUPER, slot[is_sup] - VOCAB_SIZE]
        word[is_clu] = clu_words[c[is_clu], slot[is_clu] - VOCAB_SIZE - SUPER_WORDS]
        out[lo:hi] = word
    return out


def _vectors(seed: int, docs: np.ndarray, clusters: np.ndarray, model: str = "hard") -> np.ndarray:
    if model not in VECTOR_MODELS:
        raise ValueError(f"vector model {model!r}: one of {', '.join(VECTOR_MODELS)}")
    key = _key(seed, _NOISE)
    cent = _centroids()
    out = np.empty((len(docs), DIM), dtype=np.float32)
    step = 4096
    dims = np.arange(DIM, dtype=np.uint64)[:, None]
    calibrated = model == "calibrated"
    scale = (CALIBRATED_NOISE if calibrated else DOC_NOISE) / math.sqrt(DIM)
    for lo in range(0, len(docs), step):
        d = docs[lo:lo + step]
        v = cent[:, clusters[lo:lo + step]] + scale * _gaussish(_hash(key, d[None, :] * _U(DIM) + dims))
        if calibrated:
            v += _tree_offsets(seed, d, clusters[lo:lo + step])
        out[lo:lo + step] = _unit_rows(v).T
    return out


def _tree_offsets(seed: int, docs: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """The calibrated model's offsets below each document's cluster (DIM x len(docs)): at level l
    its node is its parent's child number hash(doc, l) % BRANCHING, with a direction of its own."""
    dims = np.arange(DIM, dtype=np.uint64)[:, None]
    node = clusters.astype(np.uint64)
    total = np.zeros((DIM, len(docs)))
    for level in range(1, LEVELS + 1):
        child = _below(_hash(_key(seed, _BRANCH), docs * _U(LEVELS + 1) + _U(level)), BRANCHING).astype(np.uint64)
        node = node * _U(BRANCHING) + child
        direction = _gaussish(_hash(_key(seed * 64 + level, _NODE), node[None, :] * _U(DIM) + dims)) / math.sqrt(DIM)
        total += LEVEL_WEIGHT * LEVEL_SHRINK**level * direction
    return total


def clusters_of(docs: np.ndarray | list[int], seed: int = 0) -> np.ndarray:
    """Cluster (0 .. N_CLUSTERS - 1) of each document index; its super-topic is cluster // 10."""
    docs = np.asarray(docs, dtype=np.uint64)
    return _below(_hash(_key(seed, _CLUSTER), docs), N_CLUSTERS).astype(np.int64)


def _documents(docs: np.ndarray, seed: int, vectors: bool, model: str = "hard") -> Batch:
    """The documents of the given indices (any order, repeats allowed) as arrays; start = -1."""
    docs = np.asarray(docs, dtype=np.uint64)
    lengths = _lengths(seed, docs)
    clusters = clusters_of(docs, seed)
    terms = _terms(seed, docs, lengths, clusters)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    vecs = _vectors(seed, docs, clusters, model) if vectors else None
    return Batch(-1, lengths, offsets, terms, clusters, vecs)


def make_batch(start: int, stop: int, seed: int = 0, *, vectors: bool = True, model: str = "hard") -> Batch:
    """Documents start .. stop - 1 as arrays; any range gives the same documents."""
    b = _documents(np.arange(start, stop, dtype=np.uint64), seed, vectors, model)
    b.start = start
    return b


def batches(n_docs: int, seed: int = 0, batch: int = 10_000, *, vectors: bool = True, model: str = "hard") -> Iterator[Batch]:
    """The corpus as array batches (cheaper than dicts when text is not needed)."""
    for start in range(0, n_docs, batch):
        yield make_batch(start, min(n_docs, start + batch), seed, vectors=vectors, model=model)


def generate(n_docs: int, seed: int = 0, batch: int = 10_000, *, model: str = "hard") -> Iterator[list[dict]]:
    """Lists of at most `batch` documents {"id": "d<i>", "text": str, "vector": float32[384]}."""
    for b in batches(n_docs, seed, batch, model=model):
        texts = b.texts()
        yield [{"id": f"d{b.start + i}", "text": t, "vector": b.vectors[i]} for i, t in enumerate(texts)]


def document(index: int, seed: int = 0) -> dict:
    """Document `index` alone, equal to the one generate() streams."""
    b = make_batch(index, index + 1, seed)
    return {"id": f"d{index}", "text": b.texts()[0], "vector": b.vectors[0]}


# ---------------------------------------------------------------------------------------------
# Document frequencies and query bands


@functools.lru_cache(maxsize=4)
def _df(n_docs: int, seed: int) -> np.ndarray:
    df = np.zeros(VOCAB_SIZE, dtype=np.int64)
    for b in batches(n_docs, seed, 20_000, vectors=False):
        pairs = np.sort(np.repeat(np.arange(len(b.lengths), dtype=np.int64), b.lengths) * VOCAB_SIZE + b.terms)
        first = np.ones(len(pairs), dtype=bool)  # first occurrence of each (document, term)
        first[1:] = pairs[1:] != pairs[:-1]
        df += np.bincount(pairs[first] % VOCAB_SIZE, minlength=VOCAB_SIZE)
    df.flags.writeable = False
    return df


def df_array(n_docs: int, seed: int = 0) -> np.ndarray:
    """Exact document frequency of every term id (read-only, cached per (n_docs, seed))."""
    return _df(n_docs, seed)


def document_frequencies(n_docs: int, seed: int = 0) -> dict[str, int]:
    """Analysed term -> number of documents containing it (terms that occur at least once)."""
    df = _df(n_docs, seed)
    nz = np.flatnonzero(df)
    return dict(zip(_word_array()[nz].tolist(), df[nz].tolist()))


def band_of(longest_posting: int) -> str:
    """'<1k' below 1,000 documents, '>100k' above 100,000, '1k-100k' in between (inclusive)."""
    if longest_posting < 1_000:
        return "<1k"
    return "1k-100k" if longest_posting <= 100_000 else ">100k"


def band(query: dict | str, df: Mapping[str, int]) -> str:
    """The band of a query by its longest posting list, its terms analysed as sparsesql does."""
    from sparsesql.analysis import analyze

    text = query["text"] if isinstance(query, dict) else query
    return band_of(max((df.get(t, 0) for t in analyze(text)), default=0))


# ---------------------------------------------------------------------------------------------
# Queries


def queries(n_docs: int, n_queries: int, seed: int = 1, *, corpus_seed: int = 0, first: int = 0, model: str = "hard") -> list[dict]:
    """Queries q<first> .. q<first + n_queries - 1> over the corpus generate(n_docs, corpus_seed).

    Each: {"id", "text", "vector" (float32 unit), "source" (id of the source document),
    "terms" (list of words, = analysed terms), "cluster" (source's cluster)}. Only the source
    documents are generated. Query j does not depend on n_queries or first.
    """
    qids = np.arange(first, first + n_queries, dtype=np.uint64)
    sources = _below(_hash(_key(seed, _Q_SOURCE), qids), n_docs).astype(np.int64)
    size_bits = _below(_hash(_key(seed, _Q_SIZE), qids), sum(w for _, w in QUERY_LENGTHS))
    size_bounds = np.cumsum([w for _, w in QUERY_LENGTHS])
    sizes = np.array([n for n, _ in QUERY_LENGTHS])[np.searchsorted(size_bounds, size_bits, side="right")]
    words = _word_array()
    term_key, noise_key = _key(seed, _Q_TERM), _key(seed, _Q_NOISE)
    dims = np.arange(DIM, dtype=np.uint64)[:, None]
    noise = _gaussish(_hash(noise_key, qids[None, :] * _U(DIM) + dims))
    src_docs = _documents(sources, corpus_seed, True, model)
    offsets = src_docs.offsets.tolist()
    out = []
    for j, (qid, src, size) in enumerate(zip(qids.tolist(), sources.tolist(), sizes.tolist())):
        ids = np.sort(src_docs.terms[offsets[j]:offsets[j + 1]])
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        counts = np.diff(np.append(starts, len(ids)))
        ids = ids[starts]
        size = min(size, len(ids))
        draws = _hash(term_key, _U(qid) * _U(8) + np.arange(size, dtype=np.uint64)) >> _S32
        chosen: list[int] = []
        counts = counts.astype(np.int64)
        for r in draws.tolist():  # weighted by frequency in the document, without replacement
            cum = np.cumsum(counts)
            pick = int(np.searchsorted(cum, (r * int(cum[-1])) >> 32, side="right"))
            chosen.append(int(ids[pick]))
            counts[pick] = 0
        v = src_docs.vectors[j].astype(np.float64)[:, None] + (QUERY_NOISE / math.sqrt(DIM)) * noise[:, j:j + 1]
        terms = [words[t] for t in chosen]
        out.append({
            "id": f"q{qid}",
            "text": " ".join(terms),
            "vector": _unit_rows(v)[:, 0].astype(np.float32),
            "source": f"d{src}",
            "terms": terms,
            "cluster": int(src_docs.clusters[j]),
        })
    return out


def queries_by_band(
    n_docs: int, per_band: int, seed: int = 1, *, corpus_seed: int = 0, max_queries: int | None = None, model: str = "hard"
) -> dict[str, list[dict]]:
    """Up to `per_band` queries in each band, taking queries q0, q1, ... in order.

    Stops after `max_queries` (default 200 * per_band) candidates: at 1M documents most queries
    hold a term in over 100k documents and a few percent are entirely under 1k.
    """
    df = df_array(n_docs, corpus_seed)
    limit = max_queries if max_queries is not None else 200 * per_band
    out: dict[str, list[dict]] = {b: [] for b in BANDS}
    present = df[df > 0]
    # A band no term reaches (">100k" below 100,001 documents) cannot fill; do not wait for it.
    possible = [b for b, ok in zip(BANDS, (True, bool((present >= 1_000).any()), bool((present > 100_000).any()))) if ok]
    ids = {w: i for i, w in enumerate(vocabulary())}
    first, step = 0, max(64, per_band)
    while first < limit and any(len(out[b]) < per_band for b in possible):
        for q in queries(n_docs, min(step, limit - first), seed, corpus_seed=corpus_seed, first=first, model=model):
            name = band_of(max(int(df[ids[t]]) for t in q["terms"]))
            if len(out[name]) < per_band:
                out[name].append(q)
        first += step
    return out


# ---------------------------------------------------------------------------------------------
# Script: write a corpus to disk (or only time its generation)


def _write(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vectors = np.lib.format.open_memmap(out / "vectors.npy", mode="w+", dtype=np.float32, shape=(args.docs, DIM))
    started = time.perf_counter()
    with open(out / "corpus.jsonl", "w") as f:
        for docs in generate(args.docs, args.seed, args.batch):
            start = int(docs[0]["id"][1:])
            vectors[start:start + len(docs)] = np.stack([d["vector"] for d in docs])
            f.writelines(json.dumps({"id": d["id"], "text": d["text"]}) + "\n" for d in docs)
    vectors.flush()
    corpus_s = time.perf_counter() - started
    started = time.perf_counter()
    df = df_array(args.docs, args.seed)
    words = _word_array()
    with open(out / "df.tsv", "w") as f:
        f.writelines(f"{words[t]}\t{df[t]}\n" for t in np.flatnonzero(df).tolist())
    df_s = time.perf_counter() - started
    started = time.perf_counter()
    qs = queries(args.docs, args.queries, args.query_seed, corpus_seed=args.seed)
    ids = {w: i for i, w in enumerate(words.tolist())}
    with open(out / "queries.jsonl", "w") as f:
        for q in qs:
            longest = max(int(df[ids[t]]) for t in q["terms"])
            f.write(json.dumps({"id": q["id"], "text": q["text"], "source": q["source"],
                                "longest_posting": longest, "band": band_of(longest)}) + "\n")
    np.save(out / "query_vectors.npy", np.stack([q["vector"] for q in qs]) if qs else np.zeros((0, DIM), np.float32))
    queries_s = time.perf_counter() - started
    meta = {"docs": args.docs, "seed": args.seed, "queries": args.queries, "query_seed": args.query_seed,
            "vocab_size": VOCAB_SIZE, "dim": DIM, "seconds": {"corpus": round(corpus_s, 2),
            "df": round(df_s, 2), "queries": round(queries_s, 2)}}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _time_only(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    text_bytes = 0
    for docs in generate(args.docs, args.seed, args.batch):
        text_bytes += sum(len(d["text"]) for d in docs)
    corpus_s = time.perf_counter() - started
    started = time.perf_counter()
    df = df_array(args.docs, args.seed)
    df_s = time.perf_counter() - started
    started = time.perf_counter()
    qs = queries(args.docs, args.queries, args.query_seed, corpus_seed=args.seed)
    queries_s = time.perf_counter() - started
    return {"docs": args.docs, "text_bytes": text_bytes, "distinct_terms": int(np.count_nonzero(df)),
            "queries": len(qs), "seconds": {"corpus": round(corpus_s, 2), "df": round(df_s, 2),
            "queries": round(queries_s, 2)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, required=True)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--query-seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--out", help="folder for corpus.jsonl, vectors.npy, queries.jsonl, "
                        "query_vectors.npy, df.tsv, meta.json")
    parser.add_argument("--time-only", action="store_true", help="generate everything, write nothing")
    args = parser.parse_args(argv)
    if not args.time_only and not args.out:
        parser.error("give --out DIR, or --time-only")
    print(json.dumps(_time_only(args) if args.time_only else _write(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
