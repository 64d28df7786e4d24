"""The docs stay true to the code (in the manner of sqlite-utils' tests/test_docs.py).

Every ```sql block of docs/dialect.md and README.md must parse; a block whose first line is
`-- error` must instead raise QuerySyntaxError. Every command of the `sparsesql` CLI must be
documented in docs/python.md as `sparsesql <command>`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sparsesql
from sparsesql.cli.main import cli
from sparsesql.lang.parse import parse_statement

REPO = Path(__file__).resolve().parents[1]
DIALECT = REPO / "docs" / "dialect.md"
PYTHON = REPO / "docs" / "python.md"
SQL_SOURCES = (DIALECT, REPO / "README.md")

_FENCE = re.compile(r"^```sql[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_COMMENT = re.compile(r"--[^\n]*")


def sql_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number of the opening fence, body) of each ```sql block of a Markdown file."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _FENCE.finditer(text)]


def statements(block: str) -> list[str]:
    """Split a block at `;` ending a line; parts that hold only comments or blanks are dropped."""
    return [part for part in _STATEMENT_END.split(block) if _COMMENT.sub("", part).strip()]


def is_error_block(block: str) -> bool:
    first = block.lstrip("\n").splitlines()[0] if block.strip() else ""
    return first.strip().startswith("-- error")


def _cases() -> list:
    cases = []
    for path in SQL_SOURCES:
        for line, block in sql_blocks(path):
            cases.append(pytest.param(block, id=f"{path.name}:{line}"))
    return cases


CASES = _cases()


def test_the_dialect_reference_has_examples() -> None:
    blocks = sql_blocks(DIALECT)
    assert len(blocks) > 10, "docs/dialect.md should show its statements in ```sql blocks"
    assert any(is_error_block(b) for _, b in blocks), "docs/dialect.md should show a syntax error"


@pytest.mark.parametrize("block", CASES)
def test_sql_block(block: str) -> None:
    parts = statements(block)
    assert parts, "empty ```sql block"
    if is_error_block(block):
        for part in parts:
            with pytest.raises(sparsesql.QuerySyntaxError):
                parse_statement(part)
    else:
        for part in parts:
            parse_statement(part)


def test_statement_splitting() -> None:
    block = "-- two statements\nSELECT id FROM a;\nSELECT id\nFROM b;  \n-- trailing comment\n"
    assert [p.strip() for p in statements(block)] == ["-- two statements\nSELECT id FROM a", "SELECT id\nFROM b"]
    assert is_error_block("-- error: why\nSELECT\n") and not is_error_block("SELECT 1\n-- error\n")


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_cli_command_is_documented(command: str) -> None:
    assert f"sparsesql {command}" in PYTHON.read_text(encoding="utf-8"), (
        f"docs/python.md does not mention `sparsesql {command}`"
    )


_PYTHON_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    return [m.group(1) for m in _PYTHON_FENCE.finditer(path.read_text(encoding="utf-8"))]


def test_orm_guide_runs_as_written(dsn, monkeypatch) -> None:
    """docs/orm.md's blocks, in order, in one namespace, against the test server."""
    monkeypatch.setenv("SPARSESQL_DSN", dsn)
    blocks = python_blocks(REPO / "docs" / "orm.md")
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "orm_guide"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/orm.md block {i + 1}", "exec", dont_inherit=True), namespace)
    assert namespace["report"].added == 4


def test_migrations_guide_shows_the_example_files_verbatim() -> None:
    shown = [b for b in python_blocks(REPO / "docs" / "migrations.md") if b.startswith("# examples/")]
    assert len(shown) == 4
    for block in shown:
        path, body = block.split("\n", 1)
        assert (REPO / path.removeprefix("# ")).read_text(encoding="utf-8") == body, f"docs/migrations.md's copy of {path} drifted"
