"""Text -> AST, and the syntax errors a user reads when the text is not a statement.

Lark's exceptions speak in grammar terms (`__ANON_0`, `LPAR`, parser states). This module turns
each into a QuerySyntaxError with readable token names, a line and a column, and names common
mistakes outright, in the manner of lark's `match_examples`: a table of malformed examples, each
labelled with the message its error should get.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Iterator

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedToken, VisitError
from lark.lark import PostLex

from sparsesql.errors import QuerySyntaxError
from sparsesql.lang import ast
from sparsesql.lang.to_ast import ToAst
from sparsesql.resources import resource_path

MAX_QUERY_LENGTH = 100_000
# Deeper trees would overflow Python's recursion in the transformer or in later passes.
MAX_DEPTH = 100
# Keywords that are never names (quote them: "limit"); each is also its terminal's name.
RESERVED_WORDS = frozenset("SELECT FROM SEARCH WHERE LIMIT AND OR NOT IN IS LIKE ILIKE NULL TRUE FALSE".split())

_END = "$END"
_UNCLOSED = "unexpected end of query, expected ')'"
_SELECT_FROM = "SELECT * FROM docs"

# Message -> malformed queries whose error should carry it. An error gets a message when it
# happens in the same parser state on the same type of token as one of its examples. (Lark's
# own match_examples also accepts a same-state error on any token, which would call
# `SELECT id LIMIT 5` a missing comma.)
_COMMON_MISTAKES: dict[str, tuple[str, ...]] = {
    "empty query": ("", ";"),
    "missing comma between select items": (
        "SELECT id title FROM docs",
        'SELECT id "title" FROM docs',
        "SELECT id, title body FROM docs",
        'SELECT id, title "body" FROM docs',
    ),
    "missing FROM after the select list": (
        "SELECT id",
        "SELECT id, title",
        "SELECT *",
        "SELECT * docs",
        'SELECT * "docs"',
        "SELECT id WHERE year = 1",
        "SELECT id SEARCH SPARSE('q')",
        "SELECT id LIMIT 5",
        "SELECT * WHERE year = 1",
        "SELECT * SEARCH SPARSE('q')",
        "SELECT * LIMIT 5",
    ),
    "LIMIT needs a number or a parameter": (
        f"{_SELECT_FROM} LIMIT",
        f"{_SELECT_FROM} LIMIT n",
        f'{_SELECT_FROM} LIMIT "n"',
        f"{_SELECT_FROM} LIMIT '5'",
        f"{_SELECT_FROM} LIMIT;",
    ),
    "OFFSET needs a number or a parameter": (
        f"{_SELECT_FROM} OFFSET",
        f"{_SELECT_FROM} OFFSET n",
        f'{_SELECT_FROM} OFFSET "n"',
        f"{_SELECT_FROM} OFFSET '5'",
        f"{_SELECT_FROM} OFFSET;",
        f"{_SELECT_FROM} LIMIT 5 OFFSET",
        f"{_SELECT_FROM} LIMIT 5 OFFSET;",
    ),
    _UNCLOSED: (
        f"{_SELECT_FROM} WHERE (year = 1",
        f"{_SELECT_FROM} WHERE (year = 1 AND year = 2",
        f"{_SELECT_FROM} WHERE year IN (1",
        f"{_SELECT_FROM} WHERE (year",
        f"{_SELECT_FROM} SEARCH SPARSE('q'",
        f"{_SELECT_FROM} SEARCH SPARSE('q', k => 1",
        f"{_SELECT_FROM} SEARCH SPARSE('q', k => f(a => 1)",
        f"{_SELECT_FROM} SEARCH HYBRID(SPARSE('q'), DENSE('q')",
        f"{_SELECT_FROM} SEARCH HYBRID(SPARSE('q'), DENSE('q'), fusion => rrf(k => 1)",
        "CREATE COLLECTION c (title text",
        "CREATE COLLECTION c (title text, year double precision",
        "CREATE COLLECTION c (title text) WITH (a => 1",
    ),
    "named arguments are written name => value": (
        f"{_SELECT_FROM} SEARCH SPARSE('q', k = 1)",
        f"{_SELECT_FROM} SEARCH SPARSE('q', k 1)",
    ),
    "INSERT names its columns first: INSERT INTO collection (id, ...) VALUES (...)": (
        "INSERT INTO docs VALUES ('a')",
        "INSERT INTO docs id VALUES ('a')",
    ),
    "missing comma between VALUES rows": (
        "INSERT INTO docs (id) VALUES ('a') ('b')",
        "INSERT INTO docs (id) VALUES ('a'), ('b') ('c')",
    ),
    "strings take single quotes; double quotes are for names": (
        f'{_SELECT_FROM} SEARCH SPARSE("q")',
        f'{_SELECT_FROM} SEARCH DENSE("q")',
    ),
}

# Readable names of the terminals that are patterns, not fixed strings.
_TERMINAL_NAMES = {
    _END: "end of query",
    "NAME": "identifier",
    "QUOTED_NAME": "identifier",
    "STRING": "string",
    "SIGNED_NUMBER": "number",
    "PARAM": "parameter",
    "JSON_ARROW": "'->', '->>'",
}


class _ReservedWords(PostLex):
    """Make keywords whole words, and reserve those that start clauses or build conditions.

    The contextual lexer tries only the terminals the parser state accepts: lexing NAME in
    every state stops `FROMdocs` from reading as FROM + `docs`. A NAME spelling a reserved word
    becomes that keyword, so `SELECT FROM docs` fails at FROM rather than selecting a field
    called "from"; the other keywords (`collection`, `sparse`, `double`...) stay usable as names.
    """

    always_accept = ("NAME",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        for token in stream:
            if token.type == "NAME" and token.value.upper() in RESERVED_WORDS:
                token = token.update(type=token.value.upper())
            yield token


def parse_statement(text: str) -> ast.Statement:
    """Parse one statement; any text that is not one raises QuerySyntaxError pointing into it.

    Applications run the same parameterised text again and again, so parsed statements (frozen,
    hence shareable) are kept for the most recent texts; errors are not kept.
    """
    return _parse_cached(text)


@lru_cache(maxsize=512)
def _parse_cached(text: str) -> ast.Statement:
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"query is too long ({len(text)} characters, limit {MAX_QUERY_LENGTH})")
    try:
        tree = _parser().parse(text)
    except (UnexpectedCharacters, UnexpectedToken) as error:
        raise _syntax_error(error, text) from None
    _check_depth(tree, text)
    try:
        return ToAst(text).transform(tree)
    except VisitError as error:
        raise error.orig_exc from None


@cache
def _parser() -> Lark:
    """Build the parser once per process: compiling the LALR tables is the slow part."""
    grammar = (resource_path("grammar") / "sparsesql.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_ReservedWords(),
        g_regex_flags=re.ASCII,  # so "SELECT"i does not also match the Unicode look-alike "ſelect"
    )


@cache
def _mistakes() -> dict[tuple[object, str], str]:
    """(parser state, token type) -> message, learnt by parsing each example of _COMMON_MISTAKES."""
    index: dict[tuple[object, str], str] = {}
    for message, examples in _COMMON_MISTAKES.items():
        for example in examples:
            try:
                _parser().parse(example)
            except UnexpectedToken as error:
                index.setdefault(_situation(error), message)
    return index


def _situation(error: UnexpectedToken) -> tuple[object, str]:
    return error.interactive_parser.parser_state.position, error.token.type


def _syntax_error(error: UnexpectedCharacters | UnexpectedToken, text: str) -> QuerySyntaxError:
    if isinstance(error, UnexpectedCharacters):
        if error.char == "'":
            message = "unterminated string literal"
        elif error.char == '"':
            message = "unterminated quoted identifier"
        else:
            message = f"unexpected character {error.char!r}{_expected(error.interactive_parser.accepts())}"
        return QuerySyntaxError(message, line=error.line, column=error.column, query=text)
    token = error.token
    message = _mistakes().get(_situation(error))
    if message is None:
        message = f"unexpected {_describe(token)}{_expected(error.accepts)}"
    if token.type == _END:  # lark puts $END at the last token's start; point just past it
        line, column = (token.end_line, token.end_column) if token.end_line else (1, 1)
    else:
        line, column = token.line, token.column
    return QuerySyntaxError(message, line=line, column=column, query=text)


def _describe(token: Token) -> str:
    if token.type == _END:
        return _TERMINAL_NAMES[_END]
    if token.type in _TERMINAL_NAMES:
        shown = f'"{token.value}"' if token.type == "NAME" else token.value
        return f"{_TERMINAL_NAMES[token.type]} {_clip(shown)}"
    return _terminal_name(token.type)


def _expected(terminals: set[str]) -> str:
    names = sorted({_terminal_name(t) for t in terminals}, key=lambda name: (name.startswith("'"), name))
    if not names:
        return ""
    if len(names) == 1:
        return f", expected {names[0]}"
    return f", expected one of: {', '.join(names)}"


def _terminal_name(terminal: str) -> str:
    if terminal in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[terminal]
    return f"'{_parser().get_terminal(terminal).pattern.value.upper()}'"


def _clip(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _check_depth(tree: Tree, text: str) -> None:
    """Refuse trees nested deeper than MAX_DEPTH, iteratively, before anything recurses into them.
    Each key of a metadata path counts as a level: the path is flat here, but its SQL nests one
    operator per key, and psycopg composes that SQL recursively."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if node.data == "json_path":
            depth += (len(node.children) - 1) // 2  # column, then (arrow, key) per key
        if depth > MAX_DEPTH:
            raise QuerySyntaxError(
                f"query is nested too deeply (limit {MAX_DEPTH} levels)",
                line=node.meta.line,
                column=node.meta.column,
                query=text,
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))
