"""Grammar-aware fuzzing: strings generated from the dialect's own grammar (hypothesis'
from_lark, keywords in any case, comments, quoted names, stray whitespace), its numbers and
names drawn partly from the edges (integers past 64 bits, doubles past their range, names past
63 bytes), and byte-level mutations of them (which also stretch a character into a long run and
wrap a span in thousands of parentheses). Every input parses or raises QuerySyntaxError with a
line and column; every parsed statement checks or raises sparsesql.Error; nothing takes longer
than a second. A fixed corpus of such edges is also parsed, checked and run on a collection.

`make fuzz` runs the same properties for longer (benchmarks/fuzz.py)."""

from __future__ import annotations

import time
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

import sparsesql
from sparsesql.errors import QuerySyntaxError
from sparsesql.lang.parse import parse_statement
from sparsesql.resources import resource_path

# Numbers at and past what the dialect holds: bigint's ends, doubles' range, many digits.
EDGE_NUMBERS = [
    "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
    "1" + "0" * 400, "9" * 5000, "10000000000000000000000", "1e999", "-1e400", "1e-400", "0e999",
    "1." + "1" * 400, "1" * 400 + ".5", "1e308", "1.8e308", "4.9e-324", "3.5e38", "1e39",
]
# Names at and past PostgreSQL's 63 bytes, and past the 48 characters of a collection or field.
EDGE_NAMES = ["a" * 48, "a" * 49, "a" * 63, "a" * 64, "x" * 10_000]
EDGE_QUOTED_NAMES = ['"' + "é" * 31 + '"', '"' + "é" * 32 + '"', '"' + "q" * 5000 + '"']


def _now_and_then(usual: str, edges: list[str]) -> st.SearchStrategy[str]:
    """Text matching the regex `usual`, or one time in eight an edge: often enough to reach every
    place a number or a name is written, rarely enough that most statements still parse."""
    return st.integers(0, 7).flatmap(lambda i: st.sampled_from(edges) if i == 0 else st.from_regex(usual, fullmatch=True))


@cache
def statements() -> st.SearchStrategy[str]:
    grammar = (resource_path("grammar") / "sparsesql.lark").read_text(encoding="utf-8")
    return from_lark(
        Lark(grammar, parser="lalr"),
        explicit={
            "SIGNED_NUMBER": _now_and_then(r"[+-]?([0-9]{1,6}(\.[0-9]{0,3})?|\.[0-9]{1,3})([eE][+-]?[0-9]{1,3})?", EDGE_NUMBERS),
            "NAME": _now_and_then(r"[A-Za-z_][A-Za-z0-9_]{0,8}", EDGE_NAMES),
            "QUOTED_NAME": _now_and_then(r'"[a-z ]{1,8}"', EDGE_QUOTED_NAMES),
        },
    )


def mutated(text: str, data: st.DataObject) -> str:
    """Up to four byte edits: insert, delete or flip a byte; stretch one into a run of hundreds
    or thousands (a digit into a huge number, a letter into a long name); or wrap a span in
    enough parentheses to nest it far past the parser's depth limit."""
    raw = bytearray(text.encode("utf-8"))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        op = data.draw(st.sampled_from(["insert", "delete", "flip", "stretch", "nest"]))
        if op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        elif op == "nest":
            end = data.draw(st.integers(at, len(raw)))
            depth = data.draw(st.sampled_from([1, 100, 101, 2000]))
            raw[at:end] = b"(" * depth + raw[at:end] + b")" * depth
        elif at < len(raw):
            if op == "delete":
                del raw[at]
            elif op == "stretch":
                raw[at:at] = raw[at : at + 1] * data.draw(st.sampled_from([63, 400, 5000]))
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
    # a guard against blow-ups (a backtracking parse takes minutes), not a speed test: the
    # slowest edge parses in ~0.2 s, and a busy 2-core machine once took 1.05 s for one
    assert time.perf_counter() - start < 5.0, "a parse took longer than five seconds"
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


# ----------------------------------------------------------------------------- a corpus of edges

DEEP = 1000
# `@c` is the collection (title text, year int, vectors of 3 supplied); each input parses,
# checks and runs, or raises sparsesql.Error; the comment says what it reaches.
EDGE_CORPUS = [
    # numbers: a WHERE literal, LIMIT, named arguments, SET, vectors written as text
    "SELECT id FROM @c SEARCH SPARSE(:q) WHERE year > 1" + "0" * 400 + " LIMIT 5",
    "SELECT id FROM @c WHERE year > " + "9" * 5000,
    "SELECT id FROM @c WHERE year > 9223372036854775807 OR year < -9223372036854775808",
    "SELECT id FROM @c WHERE year > 9223372036854775808",
    "SELECT id FROM @c WHERE year IN (1, 1e999)",
    "SELECT id FROM @c WHERE year > -1e400",
    "SELECT id FROM @c WHERE year > 1e-400",
    "SELECT id FROM @c WHERE year > 1." + "1" * 400,
    "SELECT id FROM @c WHERE year > " + "1" * 400 + ".5",
    "SELECT id FROM @c WHERE year > 1e308 AND metadata->>'n' < 1.7e308",
    "SELECT id FROM @c SEARCH SPARSE(:q) LIMIT 10000000000000000000000",
    "SELECT id FROM @c SEARCH SPARSE(:q) LIMIT 9223372036854775807",
    "SELECT id FROM @c SEARCH HYBRID(SPARSE(:q), DENSE(:v), candidates => 1e400)",
    "SELECT id FROM @c SEARCH HYBRID(SPARSE(:q), DENSE(:v), candidates => 9223372036854775807)",
    "SELECT id FROM @c SEARCH HYBRID(SPARSE(:q), DENSE(:v), fusion => rrf(k => 99999999999999999999))",
    "SELECT id FROM @c SEARCH HYBRID(SPARSE(:q), DENSE(:v), fusion => linear(weights => [1e999, 1]))",
    "SELECT id FROM @c SEARCH HYBRID(SPARSE(:q), DENSE(:v), fusion => linear(alpha => 1e-400))",
    "SELECT id FROM @c SEARCH DENSE(:v, ef_search => 1" + "0" * 30 + ")",
    "SELECT id FROM @c SEARCH SPARSE(:q) WITH PRF(depth => 1e300) LIMIT 5",
    "SELECT id FROM @c SEARCH SPARSE(:q) DIVERSIFY BY MMR(lambda => 1e999)",
    "SELECT id FROM @c SEARCH DENSE('[1e999, 0, 0]')",
    "SELECT id FROM @c SEARCH DENSE('[1e39, 0, 0]')",
    "SELECT id FROM @c SEARCH DENSE('[1e-50, 0, 0]')",
    "SELECT id FROM @c SEARCH DENSE('[0, 0, 0]')",
    "SELECT id FROM @c SEARCH DENSE('[1..2, 0, 0]')",
    "SELECT id FROM @c SEARCH DENSE('[" + "1" * 400 + ", 0, 0]')",
    "SET sparse_tier_memory = 1e400",
    "SET sparse_tier_memory = 99999999999999999999",
    "BUILD GRAPH ON @c WITH (k => 1e999)",
    "CREATE COLLECTION fuzz_never (t text) WITH (dense => 'none', dim => 99999999999999999999)",
    "CREATE COLLECTION fuzz_never (t text) WITH (dense => 'none', dim => 1e400)",
    "INSERT INTO @c (id, year, embedding) VALUES ('big', 1" + "0" * 400 + ", '[1, 0, 0]')",
    "INSERT INTO @c (id, year, embedding) VALUES ('big', 9223372036854775807, '[1, 0, 0]')",
    "INSERT INTO @c (id, embedding) VALUES ('inf', '[1e999, 0, 0]')",
    "INSERT INTO @c (id, embedding) VALUES ('f4', '{1e39, 0, 0}')",
    "INSERT INTO @c (id, embedding) VALUES ('zero', '[0, 0, 0]')",
    "INSERT INTO @c (id, embedding) VALUES ('tiny', '[1e-50, 0, 0]')",
    "DELETE FROM @c WHERE year = 1" + "0" * 400,
    # nesting: parentheses that build no tree, and every construct that does
    "SELECT id FROM @c WHERE " + "(" * 10_000 + "year > 1" + ")" * 10_000,
    "SELECT id FROM @c WHERE " + "(" * 10_000 + "year" + ")" * 10_000 + " > 1",
    "SELECT id FROM @c WHERE " + "(" * 10_000 + "year > 1",
    "SELECT id FROM @c WHERE year > 1" + ")" * 10_000,
    "SELECT id FROM @c WHERE " + "NOT " * 10_000 + "year > 1",
    "SELECT id FROM @c WHERE " + "(year > 1 AND (year < 2 OR " * DEEP + "year = 3" + "))" * DEEP,
    "SELECT id FROM @c WHERE year" + "::int" * DEEP + " > 1",
    "SELECT id FROM @c WHERE metadata" + "->'a'" * DEEP + " = 'x'",
    "SELECT id FROM @c WHERE year IN (" + ", ".join(["1"] * 5000) + ")",
    "SELECT id FROM @c WHERE " + " OR ".join(["year = 1"] * 2000),
    "SELECT id FROM @c SEARCH SPARSE(:q, k => " + "[" * 10_000 + "1" + "]" * 10_000 + ")",
    "SELECT id FROM @c SEARCH SPARSE(:q, k => " + "f(a => " * DEEP + "1" + ")" * DEEP + ")",
    "SELECT id FROM @c SEARCH " + "HYBRID(SPARSE(:q), " * DEEP + "DENSE(:v)" + ")" * DEEP,
    # names: at and past 48 characters and 63 bytes, in every place a name is written
    "SELECT " + "a" * 63 + " FROM @c",
    "SELECT " + "a" * 64 + " FROM @c",
    'SELECT "' + "é" * 32 + '" FROM @c',
    "SELECT id FROM " + "c" * 10_000,
    "SELECT id FROM @c WHERE " + "y" * 10_000 + " = 1",
    "SELECT id FROM @c WHERE year::" + "t" * 100 + " = 1",
    "SELECT id FROM @c SEARCH SPARSE(:q, " + "k" * 100 + " => 1)",
    "SELECT id FROM @c SEARCH SPARSE(:q) DIVERSIFY BY " + "m" * 100,
    "SELECT id FROM @c SEARCH SPARSE(:" + "p" * 10_000 + ")",
    "SELECT id FROM @c SEARCH SPARSE($" + "9" * 1000 + ")",
    "SELECT id FROM @c WHERE metadata->'" + "k" * 10_000 + "' = 'x'",
    "CREATE COLLECTION " + "x" * 49 + " (t text) WITH (dense => 'none', dim => 3)",
    "CREATE COLLECTION fuzz_never (" + "f" * 64 + " text) WITH (dense => 'none', dim => 3)",
    "DROP COLLECTION IF EXISTS " + "x" * 63,
    "INSERT INTO @c (id, " + "f" * 64 + ") VALUES ('a', 1)",
    "SET " + "s" * 64 + " = on",
]


@pytest.fixture(scope="module")
def edges(session_db):
    """The corpus's collection, with two documents so that every search has rows to rank."""
    session_db.drop_collection("fuzz_edges", if_exists=True)
    coll = session_db.create_collection("fuzz_edges", {"title": "text", "year": "int"}, dense="none", dim=3)
    coll.add([{"id": "a", "title": "sparse x", "year": 2020, "vector": [1, 0, 0]}, {"id": "b", "title": "dense x", "year": 2021, "vector": [0, 1, 0]}])
    yield session_db
    session_db.drop_collection("fuzz_edges", if_exists=True)


@pytest.mark.parametrize("template", EDGE_CORPUS, ids=[t[:50] for t in EDGE_CORPUS])
def test_a_corpus_of_edges_raises_only_sparsesql_errors(edges, template):
    """Huge numbers, deep nesting and long names: each statement runs or raises sparsesql.Error
    (never OverflowError, RecursionError or another type) pointing inside the text."""
    text = template.replace("@c", "fuzz_edges")
    if parse_or_error(text) is None:
        return
    try:
        edges.query(text, q="x", v=[1.0, 0.0, 0.0], n=5)
    except sparsesql.Error as error:
        assert error.line is None or 1 <= error.line <= text.count("\n") + 1
        str(error)
