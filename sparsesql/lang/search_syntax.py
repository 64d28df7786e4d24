"""The search syntax inside SPARSE's text: what people type into a web search box.

    words            scored, as a bag of words (BM25), and not required: a plain text is searched
                     exactly as before this syntax existed
    "a phrase"       required: the words in this order, next to each other (a stopword keeps its
                     place: "war of the worlds" wants "worlds" three words after "war"); its
                     words are scored as the bag's
    "a phrase"~N     required: the words in this order with at most N other words between them
                     in all
    -word, -"a b"    excluded: no document that holds the word (or the phrase) is listed
    x OR y           either one: a group of phrases and words joined by OR is required when it
                     holds a phrase, and is met by any of its members

A word of several terms ("covid-19", "e-mail") is a phrase of them when it is excluded or joined to
a phrase by OR, as websearch_to_tsquery makes it. A phrase or an excluded word with no searchable
term (only stopwords or one-letter words) is left out. Quotes, a leading minus and OR are the only
operators; other punctuation is what the analyzer makes of it. `parse` reads the text; terms come
later (sparsesql.retrieval.phrase), from the same analyzer as the documents'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sparsesql.analysis import analyze_positions

MAX_SLOP = 100  # a slop past a hundred words is no phrase: it would scan whole documents


class SyntaxProblem(ValueError):
    """A malformed search text; `offset` is where in the text, counted in characters from 0."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message, self.offset = message, offset


@dataclass(frozen=True)
class Unit:
    """A word or a quoted phrase, with where it starts in the text."""

    text: str
    phrase: bool
    offset: int
    slop: int = 0


@dataclass(frozen=True)
class SearchText:
    """A search text read: `scored` is the text whose terms are scored (every word and phrase
    not excluded); `required` the OR groups a document must meet (each holding a phrase);
    `excluded` the words and phrases no listed document may hold."""

    scored: str
    required: tuple[tuple[Unit, ...], ...] = ()
    excluded: tuple[Unit, ...] = ()


def shown(unit: Unit) -> str:
    """The unit as it is written."""
    if not unit.phrase:
        return unit.text
    return f'"{unit.text}"' + (f"~{unit.slop}" if unit.slop else "")


_SPACE = re.compile(r"\s+")
_WORD = re.compile(r'[^\s"]+')
_SLOP = re.compile(r"~(\d*)")


def _scan(text: str) -> list[tuple[str, Unit | None]]:
    """The text as items: ("unit", u), ("not", u) for an excluded one, ("or", None)."""
    items: list[tuple[str, Unit | None]] = []
    at = 0
    while at < len(text):
        space = _SPACE.match(text, at)
        if space:
            at = space.end()
            continue
        negated = text[at] == "-" and at + 1 < len(text) and not text[at + 1].isspace() and text[at + 1] != "-"
        start = at + 1 if negated else at
        if text[start] == '"':
            close = text.find('"', start + 1)
            if close < 0:
                raise SyntaxProblem('this quote is never closed: a phrase is written "like this"', start)
            at, slop = close + 1, 0
            tilde = _SLOP.match(text, at)
            if tilde:
                if not tilde.group(1):
                    raise SyntaxProblem('~ after a phrase takes a number of words, as in "search engine"~3', at)
                slop = int(tilde.group(1))
                if slop > MAX_SLOP:
                    raise SyntaxProblem(f"a phrase's slop is at most {MAX_SLOP} words, got {slop}", at + 1)
                at = tilde.end()
            items.append(("not" if negated else "unit", Unit(text[start + 1:close], True, start, slop)))
            continue
        word = _WORD.match(text, start)
        at = word.end()
        if word.group() == "OR" and not negated:
            items.append(("or", None))
        else:
            items.append(("not" if negated else "unit", Unit(word.group(), False, start)))
    return items


def parse(text: str) -> SearchText:
    """Read a search text; raises SyntaxProblem at a quote never closed or a bad ~N. An OR
    with nothing to join on one side is the word "or" (a stopword); an excluded word or phrase
    cannot be joined by OR."""
    items = _scan(text)
    groups: list[list[Unit]] = []
    excluded: list[Unit] = []
    joining = False
    for i, (kind, unit) in enumerate(items):
        if kind == "or":
            before = items[i - 1][0] if i else None
            after = items[i + 1][0] if i + 1 < len(items) else None
            if "not" in (before, after):
                beside = items[i - 1][1] if before == "not" else items[i + 1][1]
                raise SyntaxProblem(f"OR joins words and phrases a document may hold; the excluded -{shown(beside)} cannot be one of them",
                                    beside.offset)
            joining = before == "unit" and after == "unit"
            continue
        if kind == "not":
            excluded.append(unit)
        elif joining:
            groups[-1].append(unit)
        else:
            groups.append([unit])
        joining = False
    scored = " ".join(u.text for group in groups for u in group)
    if not any(u.phrase for group in groups for u in group) and not excluded:
        return SearchText(text)
    required = tuple(tuple(group) for group in groups if any(u.phrase for u in group))
    return SearchText(scored, required, tuple(excluded))


@dataclass(frozen=True)
class Terms:
    """A unit's analysed terms with their offsets from the first (a word of several terms is a phrase of them)."""

    unit: Unit
    terms: tuple[str, ...]
    offsets: tuple[int, ...]


def unit_terms(unit: Unit) -> Terms | None:
    """The unit's terms, None when it has none (only stopwords or one-letter words)."""
    found = analyze_positions(unit.text)
    if not found:
        return None
    first = found[0][1]
    return Terms(unit, tuple(t for t, _ in found), tuple(p - first for _, p in found))


@dataclass(frozen=True)
class SyntaxFilter:
    """The analysed requirements of a search text: each required group's units, the excluded units."""

    required: tuple[tuple[Terms, ...], ...]
    excluded: tuple[Terms, ...]

    @property
    def positional(self) -> list[Terms]:
        """The units that need stored positions (several terms)."""
        return [t for t in (*(t for g in self.required for t in g), *self.excluded) if len(t.terms) > 1]

    def describe(self) -> str:
        """What the syntax asks, for EXPLAIN."""
        parts = [" OR ".join(shown(t.unit) for t in group) for group in self.required]
        return "; ".join([*(f"requires {p}" for p in parts), *(f"excludes -{shown(t.unit)}" for t in self.excluded)])


def analysed(syntax: SearchText) -> SyntaxFilter | None:
    """The requirements with their terms; units with no term are left out, and a required group
    that is left without a phrase requires nothing. None: nothing to filter by."""
    required = []
    for group in syntax.required:
        kept = tuple(t for t in map(unit_terms, group) if t is not None)
        if any(t.unit.phrase for t in kept):
            required.append(kept)
    excluded = tuple(t for t in map(unit_terms, syntax.excluded) if t is not None)
    return SyntaxFilter(tuple(required), excluded) if required or excluded else None
