"""Which engine a statement is for: sparsesql's dialect, or the backing PostgreSQL.

A simple-query message may hold several statements (sparsesql/lang/statements.py cuts them
apart); each is routed by its words, without parsing it: the dialect owns CREATE / DROP COLLECTION, BUILD GRAPH,
SHOW COLLECTIONS / GRAPH, SET of its own settings, any SELECT or EXPLAIN with a SEARCH clause,
and SELECT / INSERT / DELETE whose table is a collection. Everything else (transactions, the
app's own tables, joins, catalog queries that drivers send) is PostgreSQL's. A collection and a
plain table of the same name: the collection wins, as it lives in the schema the dialect names.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from sparsesql.lang.check_ddl import SETTINGS
from sparsesql.lang.statements import WORD, Token, tokens

DIALECT_SETTINGS = {name.upper() for name in SETTINGS}


def _name(tok: Token | None) -> str | None:
    if tok is None:
        return None
    if tok.quoted:
        return tok.text[1:-1].replace('""', '"')
    return tok.text.lower() if WORD.fullmatch(tok.text) else None


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
