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

import html
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparsesql.analysis import STOPWORDS_EN, stems

JOIN = " … "
_WORD = re.compile(r"(?u)\b\w\w+\b")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


@dataclass(frozen=True)
class SnippetStyle:
    fragments: int = 3
    size: int = 160
    tags: tuple[str, str] = ("<mark>", "</mark>")
    escape: str = "none"  # "none" | "html"
    prf_tags: tuple[str, str] = ('<mark class="prf">', "</mark>")  # PRF's expansion terms

    def text(self, piece: str) -> str:
        return html.escape(piece, quote=True) if self.escape == "html" else piece


def _words(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, stem) of every token; stem None for a stopword, as the analyzer drops it.
    Each distinct word is stemmed once."""
    spans = [m.span() for m in _WORD.finditer(text)]
    lowered = [text[s:e].lower() for s, e in spans]
    distinct = list(set(lowered) - STOPWORDS_EN)
    stem_of = dict(zip(distinct, stems(distinct)))
    return [(s, e, stem_of.get(w)) for (s, e), w in zip(spans, lowered)]


def _windows(words: list[tuple[int, int, str | None]], terms: frozenset[str], expansion: frozenset[str], size: int,
             count: int) -> list[tuple[int, int]]:
    """The best `count` non-overlapping windows (word index ranges): by distinct query terms,
    then distinct expansion terms, then marks. A window starts at a marked word (one starting
    before it holds no more) and grows to `size` characters; both ends only move forward and the
    counts of the marked words inside follow them, so the search is linear in the words. Each
    chosen window then takes in the words before it that still fit, for context."""
    flags = [w[2] in terms or w[2] in expansion for w in words]
    marks = flags.__getitem__
    inside: Counter[str] = Counter()
    scored = []
    j, previous = -1, None
    for i in (k for k, flag in enumerate(flags) if flag):
        for k in range(previous if previous is not None else i, min(i, j + 1)):  # the words the start passed
            if marks(k):
                inside[words[k][2]] -= 1
        if j < i:  # the window is empty: it starts again at this word, however long
            j = i
            inside[words[i][2]] += 1
        while j + 1 < len(words) and words[j + 1][1] - words[i][0] <= size:
            j += 1
            if marks(j):
                inside[words[j][2]] += 1
        found = [t for t, c in inside.items() if c > 0]
        scored.append((-sum(t in terms for t in found), -sum(t in expansion for t in found), -sum(inside.values()), i, j))
        previous = i
    chosen: list[tuple[int, int]] = []
    for *_, i, j in sorted(scored):
        if len(chosen) == count:
            break
        if all(j < a or i > b for a, b in chosen):
            chosen.append((i, j))
    chosen.sort()
    out, floor = [], 0
    for i, j in chosen:
        while i > floor and words[j][1] - words[i - 1][0] <= size:
            i -= 1
        out.append((i, j))
        floor = j + 1
    return out


def lexical(text: str, terms: frozenset[str], style: SnippetStyle, expansion: frozenset[str] = frozenset()) -> str:
    """The passages of `text` holding the most of `terms` (stems), those words marked with the
    style's tags, and the words of PRF's `expansion` (stems, not the query's) with its prf_tags."""
    if not text:
        return ""
    expansion = expansion - terms
    words = _words(text)
    chosen = _windows(words, terms, expansion, style.size, style.fragments)
    if not chosen:
        return style.text(_leading(text, style.size))
    out = []
    for i, j in chosen:
        pieces, at = [], words[i][0]
        for start, end, stem in words[i : j + 1]:
            tags = style.tags if stem in terms else style.prf_tags if stem in expansion else None
            if tags is not None:
                pieces += [style.text(text[at:start]), tags[0], style.text(text[start:end]), tags[1]]
                at = end
        pieces.append(style.text(text[at : words[j][1]]))
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
