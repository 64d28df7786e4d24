"""Grammar-aware fuzzing: strings generated from the dialect's own grammar (hypothesis'
from_lark, keywords in any case, comments, quoted names, stray whitespace) and byte-level
mutations of them. Every input parses or raises QuerySyntaxError with a line and column; every
parsed statement checks or raises sparsesql.Error; nothing takes longer than a second.

`make fuzz` runs the same properties for longer (benchmarks/fuzz.py)."""

from __future__ import annotations

import time
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

import sparsesql
from sparsesql.errors import QuerySyntaxError
from sparsesql.lang.parse import parse_statement
from sparsesql.resources import resource_path


@cache
def statements() -> st.SearchStrategy[str]:
    grammar = (resource_path("grammar") / "sparsesql.lark").read_text(encoding="utf-8")
    return from_lark(Lark(grammar, parser="lalr"))


def mutated(text: str, data: st.DataObject) -> str:
    raw = bytearray(text.encode("utf-8"))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        op = data.draw(st.sampled_from(["insert", "delete", "flip"]))
        if op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        elif at < len(raw):
            if op == "delete":
                del raw[at]
            else:
                raw[at] ^= 1 << data.draw(st.integers(0, 7))
    return raw.decode("utf-8", errors="replace")


def parse_or_error(text: str):
    """The property of the parser; returns the statement or None."""
    start = time.perf_counter()
    try:
        statement = parse_statement(text)
    except QuerySyntaxError as error:
        assert error.line is None or 1 <= error.line <= text.count("\n") + 1
        assert error.column is None or error.column >= 1
        str(error)
        statement = None
    assert time.perf_counter() - start < 1.0, "a parse took longer than a second"
    return statement


def check_or_error(db: sparsesql.Database, text: str) -> None:
    try:
        db.check(text, q="x", v=[1.0, 0.0, 0.0], n=5)
    except sparsesql.Error as error:
        str(error)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_statements_parse_or_raise(session_db, data):
    text = data.draw(statements())
    if parse_or_error(text) is not None:
        check_or_error(session_db, text)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_statements_parse_or_raise(session_db, data):
    text = mutated(data.draw(statements()), data)
    if parse_or_error(text) is not None:
        check_or_error(session_db, text)
