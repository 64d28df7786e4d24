"""The analyzer must give bm25s's tokens exactly; that is what lets SQL-side BM25 match bm25s."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparsesql.analysis import analyze, term_counts

REPOSITORY = Path(__file__).resolve().parents[1]
BEIR_DIR = Path(os.environ.get("SPARSESQL_BEIR_DIR", REPOSITORY.parent / "shared/data/beir"))
CISI = BEIR_DIR / "cisi"


def bm25s_tokens(texts: list[str]) -> list[list[str]]:
    """Tokens per text as bm25s produces them, rebuilt from its ids and vocabulary."""
    bm25s = pytest.importorskip("bm25s")
    import Stemmer

    tokenized = bm25s.tokenize(
        texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False
    )
    by_id = {token_id: token for token, token_id in tokenized.vocab.items()}
    return [[by_id[token_id] for token_id in ids] for ids in tokenized.ids]


@pytest.mark.skipif(not CISI.is_dir(), reason=f"BEIR data not found at {CISI}")
def test_matches_bm25s_on_cisi_corpus_and_queries() -> None:
    from sparsesql.eval import load_corpus, load_queries

    texts = [f"{doc['title']} {doc['text']}" for doc in load_corpus(CISI)]
    texts += list(load_queries(CISI).values())
    expected = bm25s_tokens(texts)
    mismatches = [i for i, (text, want) in enumerate(zip(texts, expected)) if analyze(text) != want]
    assert not mismatches, f"{len(mismatches)} texts differ, first: {texts[mismatches[0]][:200]!r}"


def test_rules_on_edge_cases() -> None:
    text = "The Cats, the CATS and a cat's x 42 naïve café"
    assert analyze(text) == bm25s_tokens([text])[0]
    assert analyze("") == [] == analyze("a I of")


def test_term_counts_counts_after_stopwords() -> None:
    counts, length = term_counts("Libraries and the library: a library")
    assert counts == {"librari": 3}
    assert length == 3


@pytest.mark.skipif(not CISI.is_dir(), reason=f"BEIR data not found at {CISI}")
def test_term_counts_are_the_counted_analysis_in_first_occurrence_order() -> None:
    """term_counts counts words before stemming them (and skips the stemmer while every word is
    known): the result must be exactly Counter(analyze(text)), order included, whether or not
    the stem cache holds the words."""
    from collections import Counter

    from sparsesql import analysis
    from sparsesql.eval import load_corpus

    texts = [f"{doc['title']} {doc['text']}" for doc in load_corpus(CISI)][:300]
    texts += ["", "the of and", "Index indexing indexes INDEXED index", "naïve café x 42 a"]
    for cold in (True, False):
        if cold:
            analysis._stem_cache.clear()
        for text in texts:
            counts, length = term_counts(text)  # first, so that on the cold pass its words are new
            terms = analyze(text)
            assert list(counts.items()) == list(Counter(terms).items()) and length == len(terms), text[:80]
