"""The front end: text -> AST for every construct, readable syntax errors, and fuzzing."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesql.errors import QuerySyntaxError, highlight
from sparsesql.lang import ast, parse_statement
from sparsesql.lang.parse import _COMMON_MISTAKES, RESERVED_WORDS, _parser
from sparsesql.resources import resource_path

# Expected trees are written with a dummy position and compared by `shape`, which drops
# positions; the position tests below compare whole dataclasses.
P = ast.Pos(0, 0)


def shape(node: object) -> object:
    """The node without positions, with each scalar tagged by its type (so 1 != 1.0 != True)."""
    if dataclasses.is_dataclass(node):
        fields = (f.name for f in dataclasses.fields(node) if f.name not in ("pos", "span"))
        return (type(node).__name__, *(shape(getattr(node, name)) for name in fields))
    if isinstance(node, tuple):
        return tuple(shape(item) for item in node)
    return (type(node).__name__, node)


def lit(value: object) -> ast.Literal:
    return ast.Literal(value, P)


def col(name: str) -> ast.Column:
    return ast.Column(name, P)


def param(name: str) -> ast.Param:
    return ast.Param(name, P)


def name(text: str) -> ast.Name:
    return ast.Name(text, P)


def insert(collection: str, columns: tuple[str, ...], *rows: tuple[ast.Literal | ast.Param, ...]) -> ast.Insert:
    return ast.Insert(name(collection), tuple(map(name, columns)), tuple(ast.InsertRow(r, P) for r in rows), P)


def arg(name: str, value: ast.ArgValue) -> ast.Arg:
    return ast.Arg(name, value, P)


def cmp(op: str, left: ast.Operand, right: ast.Operand) -> ast.Compare:
    return ast.Compare(op, left, right, P)


def select(
    collection: str = "docs",
    items: tuple[str, ...] = (),
    search: ast.Search | None = None,
    where: ast.Predicate | None = None,
    limit: ast.Literal | ast.Param | None = None,
) -> ast.Select:
    return ast.Select(
        tuple(ast.SelectItem(i, P) for i in items), ast.Name(collection, P), search, where, limit, P
    )


def where(predicate: ast.Predicate) -> ast.Select:
    return select(where=predicate)


def field(name: str, type_name: str) -> ast.FieldDef:
    return ast.FieldDef(name, type_name, P)


def create(
    name: str, fields: tuple[ast.FieldDef, ...], options: tuple[ast.Arg, ...] = (), if_not_exists: bool = False
) -> ast.CreateCollection:
    return ast.CreateCollection(ast.Name(name, P), fields, options, if_not_exists, P)


A1 = cmp("=", col("a"), lit(1))
B2 = cmp("=", col("b"), lit(2))
C3 = cmp("=", col("c"), lit(3))

VALID = [
    # ---- SELECT
    ("SELECT * FROM docs", select()),
    ("SELECT id, title, text, score FROM docs", select(items=("id", "title", "text", "score"))),
    ("select ID, Title from Docs", select("Docs", ("ID", "Title"))),
    ("SeLeCt * FrOm docs LiMiT 5;", select(limit=lit(5))),
    ("SELECT * FROM docs -- comment\n;  -- another", select()),
    ('SELECT "Title", "a ""quoted"" b" FROM "My Docs"', select("My Docs", ("Title", 'a "quoted" b'))),
    (
        'SELECT "limit", sparse, collection, metadata FROM show',
        select("show", ("limit", "sparse", "collection", "metadata")),
    ),
    ("SELECT * FROM docs LIMIT :n", select(limit=param("n"))),
    ("SELECT * FROM docs LIMIT 2.5", select(limit=lit(2.5))),  # the checker wants an integer
    (
        "SELECT id,\n       title  -- the heading\nFROM docs\nWHERE year >= 2020\nLIMIT 10\n",
        select(items=("id", "title"), where=cmp(">=", col("year"), lit(2020)), limit=lit(10)),
    ),
    # ---- SEARCH
    (
        "SELECT * FROM docs SEARCH SPARSE('neural ranking', k1 => 1.2, b => 0.75) LIMIT 10",
        select(search=ast.Sparse(lit("neural ranking"), (arg("k1", lit(1.2)), arg("b", lit(0.75))), P), limit=lit(10)),
    ),
    ("SELECT * FROM docs search dense(:q)", select(search=ast.Dense(param("q"), (), P))),
    (
        "SELECT * FROM docs SEARCH HYBRID(SPARSE('q'), DENSE(:v), fusion => rrf(k => 60), weights => [0.7, 0.3])",
        select(
            search=ast.Hybrid(
                (ast.Sparse(lit("q"), (), P), ast.Dense(param("v"), (), P)),
                (
                    arg("fusion", ast.Call("rrf", (arg("k", lit(60)),), P)),
                    arg("weights", ast.ListValue((lit(0.7), lit(0.3)), P)),
                ),
                P,
            )
        ),
    ),
    (
        "SELECT * FROM docs SEARCH HYBRID(SPARSE('a'), DENSE('a'), SPARSE('b'), fusion => rrf())",
        select(
            search=ast.Hybrid(
                (ast.Sparse(lit("a"), (), P), ast.Dense(lit("a"), (), P), ast.Sparse(lit("b"), (), P)),
                (arg("fusion", ast.Call("rrf", (), P)),),
                P,
            )
        ),
    ),
    (  # nested HYBRID parses; the checker rejects it, pointing at the inner HYBRID
        "SELECT * FROM docs SEARCH HYBRID(SPARSE('a'), HYBRID(SPARSE('b'), DENSE('c')))",
        select(
            search=ast.Hybrid(
                (
                    ast.Sparse(lit("a"), (), P),
                    ast.Hybrid((ast.Sparse(lit("b"), (), P), ast.Dense(lit("c"), (), P)), (), P),
                ),
                (),
                P,
            )
        ),
    ),
    (  # every kind of named-argument value
        "SELECT * FROM docs SEARCH SPARSE('q', s => 'it''s', i => -3, f => 1e3, t => TRUE, "
        "n => null, p => :p, m => minmax, l => [1, [false], []], c => f(a => g()))",
        select(
            search=ast.Sparse(
                lit("q"),
                (
                    arg("s", lit("it's")),
                    arg("i", lit(-3)),
                    arg("f", lit(1000.0)),
                    arg("t", lit(True)),
                    arg("n", lit(None)),
                    arg("p", param("p")),
                    arg("m", ast.Name("minmax", P)),
                    arg("l", ast.ListValue((lit(1), ast.ListValue((lit(False),), P), ast.ListValue((), P)), P)),
                    arg("c", ast.Call("f", (arg("a", ast.Call("g", (), P)),), P)),
                ),
                P,
            )
        ),
    ),
    # ---- WHERE: comparisons and literals
    *[
        (f"SELECT * FROM docs WHERE a {op} 1", where(cmp(op, col("a"), lit(1))))
        for op in ("=", "!=", "<>", "<", "<=", ">", ">=")
    ],
    ("SELECT * FROM docs WHERE a=-1.5", where(cmp("=", col("a"), lit(-1.5)))),
    ("SELECT * FROM docs WHERE a = 5.0", where(cmp("=", col("a"), lit(5.0)))),
    ("SELECT * FROM docs WHERE a = ''", where(cmp("=", col("a"), lit("")))),
    ("SELECT * FROM docs WHERE flag = FALSE", where(cmp("=", col("flag"), lit(False)))),
    ("SELECT * FROM docs WHERE year > :min", where(cmp(">", col("year"), param("min")))),
    ("SELECT * FROM docs WHERE 'x' = \"Col\"", where(cmp("=", lit("x"), col("Col")))),
    (
        "SELECT * FROM docs WHERE text = 'a' AND score > 1",
        where(ast.And((cmp("=", col("text"), lit("a")), cmp(">", col("score"), lit(1))), P)),
    ),
    # ---- WHERE: precedence NOT > AND > OR, parentheses, flattening
    ("SELECT * FROM docs WHERE a = 1 OR b = 2 AND NOT c = 3", where(ast.Or((A1, ast.And((B2, ast.Not(C3, P)), P)), P))),
    ("SELECT * FROM docs WHERE (a = 1 OR b = 2) AND c = 3", where(ast.And((ast.Or((A1, B2), P), C3), P))),
    ("SELECT * FROM docs WHERE a = 1 AND b = 2 AND c = 3", where(ast.And((A1, B2, C3), P))),
    ("SELECT * FROM docs WHERE a = 1 or b = 2 or c = 3", where(ast.Or((A1, B2, C3), P))),
    ("SELECT * FROM docs WHERE NOT (a = 1 OR b = 2)", where(ast.Not(ast.Or((A1, B2), P), P))),
    ("SELECT * FROM docs WHERE NOT NOT a = 1", where(ast.Not(ast.Not(A1, P), P))),
    ("SELECT * FROM docs WHERE ((a = 1))", where(A1)),
    # ---- WHERE: IN, IS NULL, LIKE
    ("SELECT * FROM docs WHERE v IN ('a', :b, 3)", where(ast.InList(col("v"), (lit("a"), param("b"), lit(3)), False, P))),
    ("SELECT * FROM docs WHERE v NOT IN (1)", where(ast.InList(col("v"), (lit(1),), True, P))),
    ("SELECT * FROM docs WHERE v IS NULL", where(ast.IsNull(col("v"), False, P))),
    ("SELECT * FROM docs WHERE v is not null", where(ast.IsNull(col("v"), True, P))),
    ("SELECT * FROM docs WHERE t LIKE 'a%'", where(ast.Like(col("t"), lit("a%"), False, False, P))),
    ("SELECT * FROM docs WHERE t NOT LIKE :p", where(ast.Like(col("t"), param("p"), True, False, P))),
    ("SELECT * FROM docs WHERE t ILIKE '%A'", where(ast.Like(col("t"), lit("%A"), False, True, P))),
    ("SELECT * FROM docs WHERE t not ilike '%A'", where(ast.Like(col("t"), lit("%A"), True, True, P))),
    # ---- WHERE: JSON paths and casts
    (
        "SELECT * FROM docs WHERE metadata->>'venue' = 'ACL'",
        where(cmp("=", ast.JsonPath(col("metadata"), ("venue",), True, P), lit("ACL"))),
    ),
    (
        "SELECT * FROM docs WHERE metadata->'a'->>'b' IS NULL",
        where(ast.IsNull(ast.JsonPath(col("metadata"), ("a", "b"), True, P), False, P)),
    ),
    (
        "SELECT * FROM docs WHERE (metadata->>'year')::int >= 2020",
        where(cmp(">=", ast.Cast(ast.JsonPath(col("metadata"), ("year",), True, P), "int", P), lit(2020))),
    ),
    (
        "SELECT * FROM docs WHERE year::DOUBLE PRECISION < '1'::float",
        where(cmp("<", ast.Cast(col("year"), "double precision", P), ast.Cast(lit("1"), "float", P))),
    ),
    (
        "SELECT * FROM docs WHERE a::text::int = 1",
        where(cmp("=", ast.Cast(ast.Cast(col("a"), "text", P), "int", P), lit(1))),
    ),
    # ---- other statements
    ("EXPLAIN SELECT * FROM docs", ast.Explain(select(), False, P)),
    ("explain analyze select * from docs", ast.Explain(select(), True, P)),
    ("EXPLAIN SELECT analyze FROM docs", ast.Explain(select(items=("analyze",)), False, P)),
    (
        "CREATE COLLECTION c (title text, text text)",
        create("c", (field("title", "text"), field("text", "text"))),
    ),
    ("create collection c ()", create("c", ())),
    (
        "CREATE COLLECTION IF NOT EXISTS c (x DOUBLE  PRECISION, y double, t TimestampTZ) "
        "WITH (dense => minilm, dim => 384)",
        create(
            "c",
            (field("x", "double precision"), field("y", "double"), field("t", "timestamptz")),
            (arg("dense", ast.Name("minilm", P)), arg("dim", lit(384))),
            if_not_exists=True,
        ),
    ),
    ("CREATE COLLECTION c (v varchar)", create("c", (field("v", "varchar"),))),
    ("DROP COLLECTION docs", ast.DropCollection(ast.Name("docs", P), False, P)),
    ("drop collection if exists docs;", ast.DropCollection(ast.Name("docs", P), True, P)),
    ("SHOW COLLECTIONS", ast.ShowCollections(P)),
    # ---- $n parameters beside :name
    ("SELECT * FROM docs SEARCH SPARSE($1) WHERE a = $12 LIMIT $2", select(search=ast.Sparse(param("1"), (), P), where=cmp("=", col("a"), param("12")), limit=param("2"))),
    # ---- writes
    (
        "INSERT INTO docs (id, title, metadata, embedding, sparse) VALUES ('a', 'it''s', '{}', $1, NULL), (:id, -1.5, TRUE, FALSE, 3);",
        insert(
            "docs", ("id", "title", "metadata", "embedding", "sparse"),
            (lit("a"), lit("it's"), lit("{}"), param("1"), lit(None)),
            (param("id"), lit(-1.5), lit(True), lit(False), lit(3)),
        ),
    ),
    ('insert into "My Docs" (id) values (1)', insert("My Docs", ("id",), (lit(1),))),
    ("DELETE FROM docs", ast.Delete(name("docs"), None, P)),
    ("delete from docs where a = 1 or b = 2", ast.Delete(name("docs"), ast.Or((A1, B2), P), P)),
    # the write keywords are not reserved: they stay names elsewhere
    ("SELECT values, delete, insert, into FROM values", select("values", ("values", "delete", "insert", "into"))),
    ("CREATE COLLECTION insert (values text, delete int)", create("insert", (field("values", "text"), field("delete", "int")))),
]


@pytest.mark.parametrize(("query", "expected"), VALID, ids=[q for q, _ in VALID])
def test_valid_query(query: str, expected: ast.Statement) -> None:
    assert shape(parse_statement(query)) == shape(expected)


def test_positions_of_a_multi_line_query() -> None:
    query = "SELECT id,\n  title\nFROM docs\nSEARCH SPARSE(:q, k => 3)\nWHERE NOT year >= 2020\nLIMIT 10"
    pos = ast.Pos
    assert parse_statement(query) == ast.Select(
        items=(ast.SelectItem("id", pos(1, 8)), ast.SelectItem("title", pos(2, 3))),
        collection=ast.Name("docs", pos(3, 6)),
        search=ast.Sparse(
            ast.Param("q", pos(4, 15)), (ast.Arg("k", ast.Literal(3, pos(4, 24)), pos(4, 19)),), pos(4, 8)
        ),
        where=ast.Not(
            ast.Compare(">=", ast.Column("year", pos(5, 11)), ast.Literal(2020, pos(5, 19)), pos(5, 11)), pos(5, 7)
        ),
        limit=ast.Literal(10, pos(6, 7)),
        pos=pos(1, 1),
    )


def test_positions_of_writes_and_parameters_as_written() -> None:
    statement = parse_statement("INSERT INTO d (id, year)\nVALUES ($1, :y),\n  ('b', 2)")
    assert statement.collection == ast.Name("d", ast.Pos(1, 13))
    assert statement.columns[1] == ast.Name("year", ast.Pos(1, 20))
    assert statement.rows[0] == ast.InsertRow((ast.Param("1", ast.Pos(2, 9)), ast.Param("y", ast.Pos(2, 13))), ast.Pos(2, 8))
    assert statement.rows[1].pos == ast.Pos(3, 3)
    assert [p.written for p in statement.rows[0].values] == ["$1", ":y"]
    assert parse_statement("DELETE FROM d WHERE a = 1").where.pos == ast.Pos(1, 21)


def test_positions_of_create_and_json_path() -> None:
    statement = parse_statement("  CREATE COLLECTION c (a int)")
    assert statement.pos == ast.Pos(1, 3)
    assert statement.fields[0].pos == ast.Pos(1, 24)
    path = parse_statement("SELECT * FROM d WHERE metadata->>'v' = 1").where.left
    assert path == ast.JsonPath(ast.Column("metadata", ast.Pos(1, 23)), ("v",), True, ast.Pos(1, 23))


INVALID = [
    ("SELECT * FROM docs WHERE metadata->>'a'->'b' = 'x'", "only the last arrow of a path can be ->>", 1, 34),
    # (query, message substring, line, column)
    ("", "empty query", 1, 1),
    ("  -- only a comment\n", "empty query", 1, 1),
    (";", "empty query", 1, 1),
    ("SELECT FROM docs", "unexpected 'FROM', expected one of: identifier, '*'", 1, 8),
    ("FROM docs", "unexpected 'FROM', expected one of: 'BUILD', 'CREATE', 'DELETE', 'DROP', 'EXPLAIN', 'INSERT', 'SELECT', 'SET', 'SHOW'", 1, 1),
    ("SELECT id title FROM docs", "missing comma between select items", 1, 11),
    ("SELECT id, title body FROM docs", "missing comma between select items", 1, 18),
    ("SELECT * docs", "missing FROM", 1, 10),
    ("SELECT id WHERE year = 1", "missing FROM", 1, 11),
    ("SELECT id", "missing FROM", 1, 10),
    ("SELECT * FROMdocs", "missing FROM", 1, 10),  # keywords are whole words
    ("SELECT * FROM docs WHERE t = 'oops", "unterminated string literal", 1, 30),
    ("SELECT * FROM docs WHERE t = 'it''s", "unterminated string literal", 1, 34),  # 'it' then 's
    ('SELECT "oops FROM docs', "unterminated quoted identifier", 1, 8),
    ("SELECT * FROM docs LIMIT", "LIMIT needs a number or a parameter", 1, 25),
    ("SELECT * FROM docs LIMIT ten", "LIMIT needs a number or a parameter", 1, 26),
    ("SELECT * FROM docs WHERE (year = 1", "unexpected end of query, expected ')'", 1, 35),
    ("SELECT *\nFROM docs\nWHERE (year > 1 -- open\n", "unexpected end of query, expected ')'", 3, 16),
    ("SELECT * FROM docs SEARCH SPARSE('q'", "unexpected end of query, expected ')'", 1, 37),
    ("CREATE COLLECTION c (title text", "unexpected end of query, expected ')'", 1, 32),
    ("SELECT * FROM docs WHERE year", "unexpected end of query, expected one of: '!=', '::'", 1, 30),
    ("SELECT # FROM docs", "unexpected character '#', expected one of: identifier, '*'", 1, 8),
    ("SELECT * FROM docs WHERE a = 1 & b = 2", "unexpected character '&'", 1, 32),
    ("SELECT * FROM docs SEARCH SPARSE('q', k = 1)", "named arguments are written name => value", 1, 41),
    ('SELECT * FROM docs SEARCH SPARSE("q")', "strings take single quotes", 1, 34),
    ("SELECT * FROM docs SEARCH SPARSE(q)", 'unexpected identifier "q", expected one of: parameter, string', 1, 34),
    ("SELECT * FROM docs SEARCH HYBRID(SPARSE('q'))", "unexpected ')', expected ','", 1, 45),
    ("SELECT * FROM docs SEARCH BM25('q')", "unexpected identifier \"BM25\", expected one of: 'DENSE'", 1, 27),
    ("SELECT * FROM docs WHERE v IN ()", "unexpected ')'", 1, 32),
    ("SELECT * FROM docs WHERE a == 1", "unexpected '='", 1, 29),
    ("SELECT * FROM docs WHERE limit = 1", "unexpected 'LIMIT'", 1, 26),
    ("SELECT * FROM docs; SELECT * FROM docs", "unexpected 'SELECT', expected end of query", 1, 21),
    ("SELECT * FROM docs LIMIT 5 OFFSET 2 LIMIT 3", "LIMIT is given twice", 1, 37),
    ("SELECT * FROM docs LIMIT 5 OFFSET 2 WHERE y = 1", "unexpected 'WHERE'", 1, 37),
    ("DROP docs", "unexpected identifier \"docs\", expected 'COLLECTION'", 1, 6),
    ("SELECT * FROM docs LIMIT 1e999", "number 1e999 is out of range for double precision", 1, 26),
    ("SELECT * FROM docs WHERE y > 1" + "0" * 400, "integer 10000000000000000000… (401 characters) does not fit in 64 bits", 1, 30),
    ("SELECT * FROM docs WHERE y > 1" + "0" * 5000, "(5001 characters) does not fit in 64 bits", 1, 30),
    ("SELECT * FROM docs WHERE y > 9223372036854775808", "integer 9223372036854775808 does not fit in 64 bits (bigint holds", 1, 30),
    ("SELECT * FROM docs WHERE y > -9223372036854775809", "integer -9223372036854775809 does not fit", 1, 30),
    ("SELECT * FROM docs LIMIT 10000000000000000000000", "integer 10000000000000000000000 does not fit in 64 bits", 1, 26),
    ("SELECT * FROM docs WHERE y > -1e400", "number -1e400 is out of range for double precision", 1, 30),
    ("SELECT * FROM docs WHERE y > 1e-400", "number 1e-400 is out of range for double precision", 1, 30),
    ("SELECT * FROM docs WHERE y > 1" + "1" * 400 + ".5", "(403 characters) is out of range for double precision", 1, 30),
    ("SELECT * FROM docs SEARCH HYBRID(SPARSE('q'), DENSE('q'), candidates => 1e400)", "number 1e400 is out of range", 1, 73),
    ("INSERT INTO docs (id, n) VALUES ('a', 99999999999999999999)", "integer 99999999999999999999 does not fit", 1, 39),
    ("SELECT * FROM docs WHERE y IN (1, 2, 1e999)", "number 1e999 is out of range", 1, 38),
    ("SELECT " + "a" * 64 + " FROM docs", 'name "aaaaaaaaaaaaaaaaaaaa…" is 64 bytes long; names hold at most 63 bytes', 1, 8),
    ('SELECT * FROM "' + "é" * 32 + '"', "is 64 bytes long; names hold at most 63 bytes", 1, 15),
    ("SELECT * FROM docs SEARCH SPARSE('q', " + "k" * 100 + " => 1)", "is 100 bytes long", 1, 39),
    ("SELECT * FROM docs WHERE " + "y" * 10_000 + " = 1", "is 10000 bytes long", 1, 26),
    ("SELECT * FROM docs WHERE " + "NOT " * 150 + "a = 1", "nested too deeply", 1, 26 + 99 * 4),
    ("SELECT * FROM docs LIMIT $0", "unexpected character '$', expected one of: number, parameter", 1, 26),
    ("SELECT * FROM docs LIMIT $n", "unexpected character '$'", 1, 26),
    ("INSERT INTO docs VALUES ('a')", "INSERT names its columns first", 1, 18),
    ("INSERT INTO docs (id) VALUES ('a') ('b')", "missing comma between VALUES rows", 1, 36),
    ("INSERT INTO docs (id) VALUES (a)", 'unexpected identifier "a", expected one of: number, parameter, string', 1, 31),
    ("INSERT INTO docs (id) VALUES (1 + 2)", "unexpected '+', expected one of: ')', ','", 1, 33),
    ("INSERT INTO docs (id) VALUES ()", "unexpected ')'", 1, 31),
    ("INSERT INTO docs () VALUES (1)", "unexpected ')', expected identifier", 1, 19),
    ("DELETE docs", "unexpected identifier \"docs\", expected 'FROM'", 1, 8),
    ("DELETE FROM docs LIMIT 1", "unexpected 'LIMIT'", 1, 18),
    ("EXPLAIN DELETE FROM docs", 'unexpected identifier "DELETE", expected one of: \'ANALYZE\', \'SELECT\'', 1, 9),
]


@pytest.mark.parametrize(("query", "message", "line", "column"), INVALID, ids=[q[:60] for q, *_ in INVALID])
def test_invalid_query(query: str, message: str, line: int, column: int) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_statement(query)
    error = caught.value
    assert message in error.message
    assert (error.line, error.column) == (line, column)
    assert error.query == query
    assert highlight(query, line, column) in str(error)


def test_error_renders_the_caret_under_the_token() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_statement("SELECT id\nFROM docs\nWHERE year >")
    assert str(caught.value) == (
        "unexpected end of query, expected one of: identifier, number, parameter, string, "
        "'(', 'FALSE', 'NULL', 'TRUE' at line 3, column 13\n"
        "  3 | WHERE year >\n"
        "                  ^"
    )


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("000000000000000000000000042", 42),
        ("1e308", 1e308),
        ("0e-999", 0.0),
        ("0." + "0" * 400, 0.0),
        ("1." + "1" * 400, 1.1111111111111112),
        ("4.9e-324", 5e-324),
    ],
)
def test_numbers_within_bigint_and_double_precision_are_read(written: str, value: float) -> None:
    """Integers up to 64 bits and any double precision, however many digits spell them."""
    statement = parse_statement(f"SELECT * FROM docs WHERE y = {written}")
    assert statement.where.right.value == value and type(statement.where.right.value) is type(value)


def test_names_of_63_bytes_are_read() -> None:
    statement = parse_statement(f'SELECT {"a" * 63} FROM "{"é" * 31}x"')
    assert statement.items[0].name == "a" * 63 and statement.collection.name == "é" * 31 + "x"


def test_too_long_query() -> None:
    query = "SELECT * FROM docs WHERE t = '" + "x" * 100_000 + "'"
    with pytest.raises(QuerySyntaxError, match=rf"query is too long \({len(query)} characters, limit 100000\)"):
        parse_statement(query)


@pytest.mark.parametrize("message", list(_COMMON_MISTAKES))
def test_every_common_mistake_example_gets_its_message(message: str) -> None:
    for example in _COMMON_MISTAKES[message]:
        with pytest.raises(QuerySyntaxError) as caught:
            parse_statement(example)
        assert caught.value.message == message, example


def test_reserved_words_are_terminals() -> None:
    names = {terminal.name for terminal in _parser().terminals}
    assert RESERVED_WORDS <= names


def test_grammar_is_found() -> None:
    assert (resource_path("grammar") / "sparsesql.lark").is_file()


# ----------------------------------------------------------------------------- fuzzing

SAMPLES = [query for query, _ in VALID]
STATEMENTS = (
    ast.Select, ast.Explain, ast.CreateCollection, ast.DropCollection, ast.ShowCollections, ast.BuildGraph, ast.ShowGraph,
    ast.SetOption, ast.Insert, ast.Delete,
)
WORDS = ["SELECT", "*", "FROM", "docs", "WHERE", "a", "=", "1", "'x'", "(", ")", ",", "AND", "OR", "NOT",
         "SEARCH", "SPARSE", "HYBRID", "=>", "[", "]", ":p", "::", "int", "->>", "IN", "IS", "NULL", "LIMIT", ";"]


def check(text: str) -> None:
    """The property: a statement, or a QuerySyntaxError that points inside the text."""
    try:
        statement = parse_statement(text)
    except QuerySyntaxError as error:
        assert error.line is None or 1 <= error.line <= text.count("\n") + 1
        str(error)
    else:
        assert isinstance(statement, STATEMENTS)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.lists(st.sampled_from(WORDS), max_size=30).map(" ".join))
def test_arbitrary_text_parses_or_raises_syntax_error(text: str) -> None:
    check(text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.randoms(use_true_random=False), st.text(min_size=1, max_size=5))
def test_mutated_queries_parse_or_raise_syntax_error(query: str, rng: random.Random, alphabet: str) -> None:
    chars = list(query)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(chars) + 1)
        edit = rng.choice(["delete", "insert", "swap"])
        if edit == "delete" and at < len(chars):
            del chars[at]
        elif edit == "insert":
            chars.insert(at, rng.choice(alphabet + "'\"()[],;:-=<>"))
        elif at + 1 < len(chars):
            chars[at], chars[at + 1] = chars[at + 1], chars[at]
    check("".join(chars))
