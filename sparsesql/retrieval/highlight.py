"""Snippets: the passages of a document's text that best match the search, for a results page.

Lexical (a search with a sparse side): the text's words are analysed as BM25 analyses them
(sparsesql.analysis: lowercase, two or more word characters, English stopwords out, Snowball
stems), so a word is marked exactly when its stem is one of the query's terms: "retrieving"
marks for "retrieval". After PRF, the expansion terms RM3 added are marked apart (prf_tags). Passages are windows of at most `size` characters on word boundaries,
scored by the distinct query terms they hold (then by how many marks), chosen best first without
overlap and shown in text order, as Elasticsearch's plain highlighter and PostgreSQL's
ts_headline do. A text with no match shows its beginning, so a result always has a snippet.

Semantic (a DENSE-only search: no terms to mark): the text is cut into passages of whole
sentences up to `size` characters, each embedded with the collection's dense model, and the
passages closest to the query vector by cosine are shown, unmarked.

Text is escaped for HTML only when asked (`escape => html`): the tags are written as given,
everything between them escaped. Fragments are joined by " … ".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
import numpy as np

from sparsesql.analysis import STOPWORDS_EN, stems
from sparsesql.lang.check_page import SnippetStyle

JOIN = " … "
_WORD = re.compile(r"(?u)\b\w\w+\b")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def _marked(text: str, marking: frozenset[str]) -> list[tuple[int, int, str]]:
    """The spans of the words whose stem is one of `marking`, with that stem, in text order.
    Words are lowercased once with the whole text and each distinct word is stemmed once; the
    marked words are then found as whole words by str.find.
    Where lowercasing changes the text's length (a few Unicode letters), word by word instead."""
    lowered = text.lower()
    if len(lowered) != len(text):
        found = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
        stem_of = _stems_in({w for *_, w in found}, marking)
        return [(a, b, stem_of[w]) for a, b, w in found if w in stem_of]
    stem_of = _stems_in(set(_WORD.findall(lowered)), marking)
    found = []
    for word, stem in stem_of.items():  # a few words, found by str.find: no span made for the others
        at = lowered.find(word)
        while at >= 0:
            end = at + len(word)
            if (at == 0 or not _is_word(lowered[at - 1])) and (end == len(lowered) or not _is_word(lowered[end])):
                found.append((at, end, stem))
            at = lowered.find(word, at + 1)
    found.sort()
    return found


def _stems_in(words: set[str], marking: frozenset[str]) -> dict[str, str]:
    distinct = list(words - STOPWORDS_EN)
    return {w: t for w, t in zip(distinct, stems(distinct)) if t in marking}


def _is_word(char: str) -> bool:
    """A character of _WORD's \\w: alphanumeric in Unicode, or the underscore."""
    return char.isalnum() or char == "_"


def _windows(text: str, marked: list[tuple[int, int, str]], terms: frozenset[str], size: int,
             count: int) -> list[tuple[int, int]]:
    """The best `count` non-overlapping passages (character ranges on word boundaries): by
    distinct query terms, then distinct expansion terms (the other marked stems), then marks. A
    passage starts at a marked word and takes every word that ends within `size` characters of
    its start (at least that word). Both ends only move forward over the marked words, with the
    counts of the stems inside, so the search is linear in them; only the chosen passages look
    at the words between: each ends at its last word that fits, then takes in the words before
    it that still fit, back to the passage before."""
    inside: Counter[str] = Counter()
    scored = []
    j = -1
    for i, (start, end, stem) in enumerate(marked):
        if i > 0:
            inside[marked[i - 1][2]] -= 1
        if j < i:
            j = i
            inside[stem] += 1
        while j + 1 < len(marked) and marked[j + 1][1] - start <= size:
            j += 1
            inside[marked[j][2]] += 1
        found = [t for t, c in inside.items() if c > 0]
        ours = sum(t in terms for t in found)
        scored.append((-ours, ours - len(found), -sum(inside.values()), i))
    chosen: list[int] = []
    for *_, i in sorted(scored):
        if len(chosen) == count:
            break
        if all(not _overlap(marked, i, c, size) for c in chosen):
            chosen.append(i)
    out, floor = [], 0
    for i in sorted(chosen):
        start = marked[i][0]
        stop = marked[i][1]
        for m in _WORD.finditer(text, stop):
            if m.end() - start > size:
                break
            stop = m.end()
        first = next((m.start() for m in _WORD.finditer(text, max(floor, stop - size), start)), start)
        out.append((first, stop))
        floor = stop
    return out


def _overlap(marked: list[tuple[int, int, str]], x: int, y: int, size: int) -> bool:
    """Whether the passages starting at marked words x and y share a word: the later one's first
    word ends within `size` of the earlier one's start."""
    early, late = min(x, y), max(x, y)
    return marked[late][1] - marked[early][0] <= size


def lexical(text: str, terms: frozenset[str], style: SnippetStyle, expansion: frozenset[str] = frozenset()) -> str:
    """The passages of `text` holding the most of `terms` (stems), those words marked with the
    style's tags, and the words of PRF's `expansion` (stems, not the query's) with its prf_tags."""
    if not text:
        return ""
    marked = _marked(text, terms | expansion)
    chosen = _windows(text, marked, terms, style.size, style.fragments)
    if not chosen:
        return style.text(_leading(text, style.size))
    out = []
    for first, stop in chosen:
        pieces, at = [], first
        for start, end, stem in marked:
            if first <= start and end <= stop:
                tags = style.tags if stem in terms else style.prf_tags
                pieces += [style.text(text[at:start]), tags[0], style.text(text[start:end]), tags[1]]
                at = end
        pieces.append(style.text(text[at:stop]))
        out.append("".join(pieces))
    return JOIN.join(out)


def _leading(text: str, size: int) -> str:
    """The text's beginning, at most `size` characters, cut at a word boundary."""
    if len(text) <= size:
        return text
    cut = text.rfind(" ", 0, size + 1)
    return text[: cut if cut > 0 else size].rstrip()


def passages(text: str, size: int) -> list[str]:
    """Whole sentences grouped up to `size` characters; a longer sentence is cut at words."""
    out: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        while len(sentence) > size:
            head = _leading(sentence, size)
            out.append(head)
            sentence = sentence[len(head) :].strip()
        if not sentence:
            continue
        if out and len(out[-1]) + 1 + len(sentence) <= size:
            out[-1] = f"{out[-1]} {sentence}"
        else:
            out.append(sentence)
    return out


def semantic(texts: list[str], query: np.ndarray, embed: Callable[[list[str]], np.ndarray], style: SnippetStyle) -> list[str]:
    """For each text, its passages nearest the query vector (cosine), in text order; the
    passages of every text embedded in one batch."""
    cut = [passages(t or "", style.size) for t in texts]
    flat = [p for parts in cut for p in parts]
    vectors = embed(flat) if flat else np.zeros((0, query.size), dtype=np.float32)
    q = query / (np.linalg.norm(query) or 1.0)
    out, at = [], 0
    for parts in cut:
        sims = vectors[at : at + len(parts)] @ q if parts else np.zeros(0)
        at += len(parts)
        best = sorted(np.argsort(-sims, kind="stable")[: style.fragments].tolist())
        out.append(JOIN.join(style.text(parts[i]) for i in best))
    return out
