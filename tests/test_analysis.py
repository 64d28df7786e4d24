"""The analyzer must give bm25s's tokens exactly; that is what lets SQL-side BM25 match bm25s."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparsesql.analysis import analyze

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


