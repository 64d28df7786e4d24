"""The batch analyzer must count exactly the terms `analyze` finds, text by text, whatever the
script, the word lengths, the words it has seen before, and hash collisions."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sparsesql import batch_analysis
from sparsesql.analysis import STOPWORDS_EN, TOKEN, analyze
from sparsesql.batch_analysis import Counted, count_terms

REPOSITORY = Path(__file__).resolve().parents[1]
BEIR_DIR = Path(os.environ.get("SPARSESQL_BEIR_DIR", REPOSITORY.parent / "shared/data/beir"))
CISI = BEIR_DIR / "cisi"

ODD = [
    "", "the of and", "a I x", "Index indexing indexes INDEXED index", "naïve café x 42 a",
    "ΑΣ ΣΑΣ σς_x9 İstanbul ﬁne 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 x_y __ a1 ١٢٣ 東京タワー", "x" * 300 + " " + "y" * 65 + " " + "x" * 300,
    "tab\tnew\nline\r\nend-of-line", "don't won't it's", "\u00a0nbsp\u2003em space\u200bzero width",
    "title of it\x00the body\x00\x00last field", "\x00leading break", "war of\x00",
]


def as_dicts(counted: Counted, n: int) -> list[dict[str, int]]:
    bounds = np.r_[0, np.cumsum(counted.per_text)]
    return [
        {counted.terms[t]: int(f) for t, f in zip(counted.index[bounds[i]:bounds[i + 1]], counted.tf[bounds[i]:bounds[i + 1]])}
        for i in range(n)
    ]


def streams(counted: Counted, n: int) -> list[list[str | int]]:
    bounds = np.r_[0, np.cumsum(counted.stream_lengths)]
    return [[counted.terms[v] if v >= 0 else int(v) for v in counted.stream[bounds[i]:bounds[i + 1]]] for i in range(n)]


def stream_of(text: str) -> list[str | int]:
    """A text's positions from the definition: each token's term (STOPWORD for a stopword) at
    its rank in the text plus the number of NULs (field breaks) before it, FIELD_BREAK between."""
    found = [(m.group(), text.lower().count("\x00", 0, m.start())) for m in TOKEN.finditer(text.lower())]
    out: list[str | int] = []
    for rank, (word, field) in enumerate(found):
        out += [batch_analysis.FIELD_BREAK] * (rank + field - len(out))
        out.append(batch_analysis.STOPWORD if word in STOPWORDS_EN else analyze(word)[0])
    return out


def assert_counts_analyze(texts: list[str]) -> Counted:
    counted = count_terms(texts)
    assert as_dicts(counted, len(texts)) == [dict(Counter(analyze(t))) for t in texts]
    assert counted.lengths.tolist() == [len(analyze(t)) for t in texts]
    assert streams(counted, len(texts)) == [stream_of(t) for t in texts]
    assert len(set(counted.terms)) == len(counted.terms) == len(counted.keys)
    assert set(counted.terms) == {term for t in texts for term in analyze(t)}
    return counted


def random_texts(seed: int, n: int) -> list[str]:
    """Texts over an alphabet of letters, digits, punctuation, spaces and non-ASCII letters and
    marks, so tokens start and end on every kind of character."""
    rng = random.Random(seed)
    alphabet = "abcXYZ019_ .,;'-\n\téÉßΣσςİı\u0301\u05d0\u0660\u4e00\U0001d518"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(n)]


@pytest.fixture(autouse=True)
def fresh_table():
    """Each test starts with the process's word table empty, and leaves it so."""
    batch_analysis._words = None
    yield
    batch_analysis._words = None


def test_odd_texts_and_random_texts() -> None:
    assert_counts_analyze(ODD)
    assert_counts_analyze(["words then", "", ""])
    assert_counts_analyze(["", "", "the"])
    assert_counts_analyze([])
    for seed in range(5):
        assert_counts_analyze(random_texts(seed, 300))


@pytest.mark.skipif(not CISI.is_dir(), reason=f"BEIR data not found at {CISI}")
def test_cisi_cold_then_warm() -> None:
    """The second pass finds every word in the table: same counts, same term numbers."""
    from sparsesql.eval import load_corpus

    texts = [f"{doc['title']} {doc['text']}" for doc in load_corpus(CISI)]
    cold = assert_counts_analyze(texts)
    warm = assert_counts_analyze(texts)
    assert warm.space == cold.space
    assert dict(zip(cold.terms, cold.keys.tolist())) == dict(zip(warm.terms, warm.keys.tolist()))


def test_term_numbers_are_stable_across_batches() -> None:
    first = assert_counts_analyze(["alpha beta gamma", "beta delta"])
    second = assert_counts_analyze(["delta epsilon", "gamma gamma alpha"])
    numbers = dict(zip(first.terms, first.keys.tolist()))
    for term, key in zip(second.terms, second.keys.tolist()):
        assert numbers.setdefault(term, key) == key
    assert len(set(numbers.values())) == len(numbers)


def test_table_grows_past_its_first_size() -> None:
    words = [f"w{i}x{i * 7919 % 1000}" for i in range(100_000)]
    texts = [" ".join(words[i:i + 50]) for i in range(0, len(words), 50)]
    assert_counts_analyze(texts)
    assert (1 << batch_analysis._words.bits) >= 2 * 100_000
    assert_counts_analyze(texts[::-1])


def test_hash_collisions_fall_back_to_exact_counts(monkeypatch) -> None:
    """Every token hashed alike: the table's words never match, and each batch is counted token
    by token, still exactly; known words found by a colliding hash are never taken for another."""
    assert_counts_analyze(["seed words here", "and more words"])
    monkeypatch.setattr(batch_analysis, "_hashes", lambda points, starts, lengths, joined: np.zeros(len(starts), dtype=np.uint64))
    assert_counts_analyze(ODD)
    assert_counts_analyze(random_texts(7, 200))


def test_table_starts_over_past_its_limit(monkeypatch) -> None:
    monkeypatch.setattr(batch_analysis, "_WORD_LIMIT", 10)
    first = assert_counts_analyze(["one two three four five six seven eight nine ten eleven twelve"])
    second = assert_counts_analyze(["one thirteen"])
    assert second.space != first.space
