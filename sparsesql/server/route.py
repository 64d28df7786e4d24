"""Which engine a statement is for: sparsesql's dialect, or the backing PostgreSQL.

A simple-query message may hold several statements; `split` cuts it at the semicolons that are
outside quotes, quoted identifiers, dollar quotes and comments, keeping each statement's offset
so an error's position points into the text the client sent. `route` then decides by the
statement's words, without parsing it: the dialect owns CREATE / DROP COLLECTION, BUILD GRAPH,
SHOW COLLECTIONS / GRAPH, SET of its own settings, any SELECT or EXPLAIN with a SEARCH clause,
and SELECT / INSERT / DELETE whose table is a collection. Everything else (transactions, the
app's own tables, joins, catalog queries that drivers send) is PostgreSQL's. A collection and a
plain table of the same name: the collection wins, as it lives in the schema the dialect names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator

from sparsesql.lang.check import SETTINGS

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
DIALECT_SETTINGS = {name.upper() for name in SETTINGS}


@dataclass(frozen=True)
class Token:
    """A bare word (upper-cased), a quoted identifier (`"name"` as written) or a punctuation mark,
    with its offset and parenthesis depth."""

    text: str
    at: int
    depth: int
    quoted: bool = False


def tokens(text: str) -> Iterator[Token]:
    """The words and marks of a statement, skipping strings and comments."""
    i, n, depth = 0, len(text), 0
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            i = _block_comment_end(text, i)
        elif ch == "'" or (ch in "eE" and text.startswith("'", i + 1)):
            i = _closing(text, i + 1 if ch != "'" else i, "'", backslashes=ch != "'")
        elif ch == '"':
            end = _closing(text, i, '"')
            yield Token(text[i:end], i, depth, quoted=True)
            i = end
        elif ch == "$" and (m := _DOLLAR_TAG.match(text, i)):
            end = text.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
        elif m := _WORD.match(text, i):
            yield Token(m.group(0).upper(), i, depth)
            i = m.end()
        else:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth = max(depth - 1, 0)
            yield Token(ch, i, depth)
            i += 1


def _block_comment_end(text: str, i: int) -> int:
    level, i = 0, i
    while i < len(text):
        if text.startswith("/*", i):
            level, i = level + 1, i + 2
        elif text.startswith("*/", i):
            level, i = level - 1, i + 2
            if level == 0:
                return i
        else:
            i += 1
    return len(text)


def _closing(text: str, i: int, quote: str, *, backslashes: bool = False) -> int:
    """The offset just past the quote closing the one at `i` (a doubled quote is part of the text)."""
    i += 1
    while i < len(text):
        if backslashes and text[i] == "\\":
            i += 2
        elif text[i] == quote:
            if text.startswith(quote * 2, i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return len(text)


@lru_cache(maxsize=4096)
def split(text: str) -> tuple[tuple[int, str], ...]:
    """(offset, statement) for each non-empty statement of a simple query, semicolons dropped.
    Kept for recent texts, as apps send the same ones again and again."""
    out, start = [], 0
    for tok in tokens(text):
        if tok.text == ";" and tok.depth == 0:
            out.append((start, text[start:tok.at]))
            start = tok.at + 1
    out.append((start, text[start:]))
    return tuple((at, s) for at, s in out if any(True for _ in tokens(s)))


def _name(tok: Token | None) -> str | None:
    if tok is None:
        return None
    if tok.quoted:
        return tok.text[1:-1].replace('""', '"')
    return tok.text.lower() if _WORD.fullmatch(tok.text) else None


def _table_after(words: list[Token], keyword: str) -> str | None:
    """The unqualified table named after the first top-level `keyword` (FROM, INTO), if any."""
    for i, tok in enumerate(words):
        if tok.text == keyword and not tok.quoted and tok.depth == 0:
            following = words[i + 2] if i + 2 < len(words) else None
            if following is not None and following.text == ".":
                return None  # schema-qualified: the app's own table
            return _name(words[i + 1] if i + 1 < len(words) else None)
    return None


def is_dialect(statement: str, is_collection: Callable[[str], bool]) -> bool:
    """True when sparsesql runs the statement; `is_collection` is asked only when the words leave
    it open (a SELECT, INSERT or DELETE without SEARCH)."""
    verdict = _verdict(statement)
    return verdict if isinstance(verdict, bool) else is_collection(verdict)


@lru_cache(maxsize=4096)
def _verdict(statement: str) -> bool | str:
    """True or False from the words alone, else the table whose being a collection decides."""
    words = list(tokens(statement))
    if not words:
        return False
    first = words[0].text
    second = words[1].text if len(words) > 1 else ""
    if first in ("CREATE", "DROP") and second == "COLLECTION":
        return True
    if first == "BUILD" and second == "GRAPH":
        return True
    if first == "SHOW" and second in ("COLLECTIONS", "GRAPH"):
        return True
    if first == "SET" and second in DIALECT_SETTINGS:
        return True
    if first in ("SELECT", "EXPLAIN"):
        if any(t.text == "SEARCH" and not t.quoted and t.depth == 0 for t in words):
            return True
        if first == "EXPLAIN":
            words = [t for t in words[1:] if t.text != "ANALYZE"]
            if not words or words[0].text != "SELECT":
                return False
        table = _table_after(words, "FROM")
        joined = any(t.text in ("JOIN", "UNION", "GROUP", "ORDER", "HAVING", "OFFSET") and t.depth == 0 for t in words)
        if table is None or joined or any(t.text == "," for t in _after(words, "FROM")):
            return False
        return table
    if (first, second) in (("INSERT", "INTO"), ("DELETE", "FROM")):
        table = _table_after(words, "INTO" if first == "INSERT" else "FROM")
        return False if table is None else table
    return False


def _after(words: list[Token], keyword: str) -> list[Token]:
    for i, tok in enumerate(words):
        if tok.text == keyword and tok.depth == 0:
            rest = words[i + 1:]
            stop = next((j for j, t in enumerate(rest) if t.text == "WHERE" and t.depth == 0), len(rest))
            return [t for t in rest[:stop] if t.depth == 0]
    return []
