"""The text analyzer shared by ingest and query, so both sides of BM25 see the same terms.

The rules are those of bm25s's default tokenizer (bm25s, Apache-2.0/MIT, ``bm25s.tokenize`` with
``stopwords="en"`` and a PyStemmer English stemmer), so that BM25 computed in SQL over these terms
reproduces bm25s scores:

1. lowercase the whole text;
2. take every run of two or more word characters, ``\\b\\w\\w+\\b`` (the scikit-learn
   CountVectorizer pattern; one-character tokens are dropped);
3. drop tokens in the English stopword list below (checked before stemming, so a stem that
   happens to be a stopword is kept);
4. stem with the Snowball English stemmer (PyStemmer).

bm25s is deliberately not imported here: it is a benchmark dependency, not a runtime one.
tests/test_analysis.py checks that the two agree token for token on a whole corpus.
"""

from __future__ import annotations

import re
import threading

import Stemmer

# bm25s.stopwords.STOPWORDS_EN (the same 33 words as Lucene's classic English stop set).
STOPWORDS_EN: frozenset[str] = frozenset(
    """
    a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with
    """.split()
)

TOKEN = re.compile(r"(?u)\b\w\w+\b")  # a token: a run of two or more word characters

# Words seen so far -> stem. Stemming dominates analysis time and vocabularies are Zipfian, so
# the cache hit rate is high; it is dropped wholesale if it grows past this many entries.
_STEM_CACHE_LIMIT = 2_000_000
_stem_cache: dict[str, str] = {}
# A PyStemmer Stemmer is not thread-safe; the lock also guards the cache while it is filled.
_stem_lock = threading.Lock()
_stemmer = Stemmer.Stemmer("english")


def _stems(words: list[str]) -> list[str]:
    """Stem `words`: known words from the cache (a C loop), the stemmer called once for the rest."""
    stems = list(map(_stem_cache.get, words))
    if None not in stems:
        return stems
    missing = list(dict.fromkeys(w for w, stem in zip(words, stems) if stem is None))
    with _stem_lock:
        found = dict(zip(missing, _stemmer.stemWords(missing)))
        if len(_stem_cache) + len(missing) > _STEM_CACHE_LIMIT:
            _stem_cache.clear()
        _stem_cache.update(found)
    return [found[w] if stem is None else stem for w, stem in zip(words, stems)]


def stem_words(words: list[str]) -> list[str]:
    """Stem words not seen before (no cache: the batch analyzer keeps its own)."""
    with _stem_lock:
        return _stemmer.stemWords(words)


def stems(words: list[str]) -> list[str]:
    """Stem lowercased words, known ones from the query-time cache (snippets stem the same
    documents' words again and again)."""
    return _stems(words) if words else []


def analyze(text: str) -> list[str]:
    """Return the terms of `text` in order, repeats kept (they are term frequencies)."""
    words = [w for w in TOKEN.findall(text.lower()) if w not in STOPWORDS_EN]
    return _stems(words) if words else []


def analyze_positions(text: str) -> list[tuple[str, int]]:
    """The terms of `text` with their positions: every token counts a position, stopwords too
    (a phrase's stopwords keep their gap, as Lucene's StopFilter keeps position increments), so
    "war of the worlds" asks for "world" three positions after "war". Ingest stores the same
    positions (sparsesql.batch_analysis.count_terms)."""
    tokens = TOKEN.findall(text.lower())
    kept = [(w, i) for i, w in enumerate(tokens) if w not in STOPWORDS_EN]
    return list(zip(_stems([w for w, _ in kept]), (i for _, i in kept))) if kept else []
