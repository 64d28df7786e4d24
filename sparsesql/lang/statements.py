"""SQL text cut into statements and words without parsing it: what the server needs to route a
simple query's statements, and the engine to read a server's reply to its own statements.

`split` cuts a text at the semicolons outside quotes, quoted identifiers, dollar quotes and
comments, keeping each statement's offset, so that an error's position points into the text the
client sent; `tokens` yields a statement's words (upper-cased), quoted names and marks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


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
        elif m := WORD.match(text, i):
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
