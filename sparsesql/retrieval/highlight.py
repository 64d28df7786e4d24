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


def _tokens(text: str, marking: frozenset[str]) -> tuple[list[tuple[int, int]], list[str | None]]:
    """Every token's span, and for each the stem it is marked by (one of `marking`), else None.
    Words are lowercased once with the whole text (token by token only when lowercasing changes
    the text's length, as a few Unicode letters do) and each distinct word is stemmed once."""
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = None
    found = _WORD.finditer(text if lowered is None else lowered)
    spans = [m.span() for m in found]
    words = [text[a:b].lower() for a, b in spans] if lowered is None else _WORD.findall(lowered)
    distinct = list(set(words) - STOPWORDS_EN)
    stem_of = {w: t for w, t in zip(distinct, stems(distinct)) if t in marking}
    return spans, [stem_of.get(w) for w in words] if stem_of else [None] * len(words)


def _windows(spans: list[tuple[int, int]], marked: list[str | None], terms: frozenset[str], size: int,
             count: int) -> list[tuple[int, int]]:
    """The best `count` non-overlapping windows (token index ranges): by distinct query terms,
    then distinct expansion terms (the other marked stems), then marks. A window starts at a
    marked word (one starting before it holds no more) and grows to `size` characters; both ends
    only move forward and the counts of the marked words inside follow them, so the search is
    linear in the words. Each chosen window then takes in the words before it that still fit."""
    inside: Counter[str] = Counter()
    scored = []
    j, previous = -1, None
    for i in (k for k, stem in enumerate(marked) if stem is not None):
        for k in range(previous if previous is not None else i, min(i, j + 1)):  # the words the start passed
            if marked[k] is not None:
                inside[marked[k]] -= 1
        if j < i:  # the window is empty: it starts again at this word, however long
            j = i
            inside[marked[i]] += 1
        while j + 1 < len(spans) and spans[j + 1][1] - spans[i][0] <= size:
            j += 1
            if marked[j] is not None:
                inside[marked[j]] += 1
        found = [t for t, c in inside.items() if c > 0]
        ours = sum(t in terms for t in found)
        scored.append((-ours, ours - len(found), -sum(inside.values()), i, j))
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
        while i > floor and spans[j][1] - spans[i - 1][0] <= size:
            i -= 1
        out.append((i, j))
        floor = j + 1
    return out


def lexical(text: str, terms: frozenset[str], style: SnippetStyle, expansion: frozenset[str] = frozenset()) -> str:
    """The passages of `text` holding the most of `terms` (stems), those words marked with the
    style's tags, and the words of PRF's `expansion` (stems, not the query's) with its prf_tags."""
    if not text:
        return ""
    spans, marked = _tokens(text, terms | expansion)
    chosen = _windows(spans, marked, terms, style.size, style.fragments)
    if not chosen:
        return style.text(_leading(text, style.size))
    out = []
    for i, j in chosen:
        pieces, at = [], spans[i][0]
        for (start, end), stem in zip(spans[i : j + 1], marked[i : j + 1]):
            if stem is not None:
                tags = style.tags if stem in terms else style.prf_tags
                pieces += [style.text(text[at:start]), tags[0], style.text(text[start:end]), tags[1]]
                at = end
        pieces.append(style.text(text[at : spans[j][1]]))
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
