"""Checking a results page's parts: its page (LIMIT, OFFSET, AFTER a cursor), its cursors and its
HIGHLIGHT columns. Kept apart from check.py, which calls these with its checker `c` (its `error`,
`param`, `args`, `number`, `value`, `text` and `params`), as check_facets.py is.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsesql.db.catalog import CollectionInfo
from sparsesql.lang import ast, cursor_token
from sparsesql.lang.cursor_token import Cursor

MAX_LIMIT = 10_000  # the result window: no ranking is read past this row
DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class SnippetStyle:
    fragments: int = 3
    size: int = 160
    tags: tuple[str, str] = ("<mark>", "</mark>")
    escape: str = "none"  # "none" | "html"
    prf_tags: tuple[str, str] = ('<mark class="prf">', "</mark>")  # PRF's expansion terms

    def text(self, piece: str) -> str:
        return html.escape(piece, quote=True) if self.escape == "html" else piece


@dataclass(frozen=True)
class CheckedCursor:
    """What a search's cursors need: the fingerprint its rows' cursors carry, whether they are a
    column of the result, and the cursor the page starts after (unverified here: the executor
    holds the key), with what was signed and its signature."""

    fingerprint: str
    column: bool
    after: Cursor | None = None
    signed: str = ""
    mac: str = ""


@dataclass(frozen=True)
class CheckedHighlight:
    """`HIGHLIGHT(field, ...)`: the column `highlight_<field>` of a text field's best passages."""

    field: str
    style: SnippetStyle

    @property
    def column(self) -> str:
        return f"highlight_{self.field}"


# DISTINCT ON looks through the ranking's first COLLAPSE_DEPTH rows (or to the page's end): a
# depth that does not change from page to page, so that pages of collapsed rows are one ranking.
COLLAPSE_DEPTH = 1000
MAX_FRAGMENTS = 20
MAX_FRAGMENT_SIZE = 2000



def _count(c: Any, node: ast.Literal | ast.Param | None, clause: str, default: int) -> int:
    if node is None:
        return default
    value = c.param(node) if isinstance(node, ast.Param) else node.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise c.error(f"{clause} expects an integer, got {value!r}", node.pos)
    if value < 0:
        raise c.error(f"{clause} must not be negative (got {value})", node.pos)
    if value > MAX_LIMIT:
        raise c.error(f"{clause} {value} exceeds the maximum of {MAX_LIMIT}", node.pos)
    return value


def page(c: Any, node: ast.Select, cursor: CheckedCursor | None, seekable: bool) -> tuple[int, int, int, bool]:
    """The ranking's depth, the rows before the page, the page's size, and whether the page
    seeks. Page k of n rows is rows [m, m + n) of the ranking `LIMIT m + n` returns, so every
    depth of the search grows with m + n; as Elasticsearch's max_result_window, the ranking ends
    at MAX_LIMIT rows. A page AFTER a cursor starts after the cursor's row, at its position when
    nothing was written; the ranking goes a page deeper, so that a page still fills when writes
    moved that row down. Past the window, a `seekable` search (SPARSE alone: every document
    scored, one order by score then doc id) pages on by cursor as search_after does: the page is
    the top n of the documents ranking after the cursor's score and doc id, at any depth."""
    limit = _count(c, node.limit, "LIMIT", DEFAULT_LIMIT)
    offset = _count(c, node.offset, "OFFSET", 0)
    where = node.offset.pos if node.offset is not None else node.limit.pos if node.limit is not None else node.pos
    if cursor is not None and cursor.after is not None:
        offset, where = cursor.after.position, node.after.pos
    if limit + offset > MAX_LIMIT:
        if seekable and node.after is not None and cursor.after.score is not None:
            return limit, 0, limit, True
        start = f"AFTER a cursor at row {offset}" if node.after is not None else f"OFFSET {offset}"
        deeper = ("page past it by cursor: select the cursor column and ask for the next page with AFTER :cursor"
                  if seekable else "only a SPARSE search (without PRF, DIVERSIFY or DISTINCT ON) pages past it, by cursor; "
                  "narrow this one with WHERE")
        raise c.error(
            f"LIMIT {limit} {start} reads to row {limit + offset} of the ranking, past its end at row {MAX_LIMIT} "
            f"(the result window); {deeper}",
            where,
        )
    if node.after is not None:
        return min(MAX_LIMIT, offset + 2 * limit), offset, limit, False
    return limit + offset, offset, limit, False


def highlight(c: Any, node: ast.Highlight, info: CollectionInfo, searched: bool, unknown_field: Callable[[str, CollectionInfo], str]) -> CheckedHighlight:
    """HIGHLIGHT(field [, fragments => 3, size => 160, tags => ('<mark>', '</mark>'), prf_tags => (...), escape => none | html])."""
    if not searched:
        raise c.error("HIGHLIGHT needs a SEARCH clause: it shows why a row matched", node.pos)
    field = node.field.lower()
    kind = info.field_type(field) if field in {f.name for f in info.fields} else None
    if kind is None:
        raise c.error(unknown_field(node.field, info) + "; HIGHLIGHT takes a declared text field", node.pos)
    if kind != "text":
        raise c.error(f"HIGHLIGHT takes a text field; {field!r} is {kind}", node.pos)
    got = c.args(node.args, {"fragments", "size", "tags", "prf_tags", "escape"}, "HIGHLIGHT")
    style = SnippetStyle()
    fragments = int(c.number(got["fragments"], integer=True, low=1, high=MAX_FRAGMENTS)) if "fragments" in got else style.fragments
    size = int(c.number(got["size"], integer=True, low=20, high=MAX_FRAGMENT_SIZE)) if "size" in got else style.size
    tags = {"tags": style.tags, "prf_tags": style.prf_tags}
    for name in tags:
        if name in got:
            value = c.value(got[name].value)
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(t, str) and len(t) <= 100 for t in value)):
                raise c.error(f"{name} => expects two texts, the opening and the closing mark: {name} => ('<mark>', '</mark>')", got[name].value.pos)
            tags[name] = (value[0], value[1])
    escape = style.escape
    if "escape" in got:
        escape = str(c.value(got["escape"].value)).lower()
        if escape not in ("none", "html"):
            raise c.error(f"escape => {escape!r} is not one of none, html", got["escape"].value.pos)
    return CheckedHighlight(field, SnippetStyle(fragments, size, tags["tags"], escape, tags["prf_tags"]))


def search_fingerprint(c: Any, node: ast.Select) -> str:
    """The search's fingerprint (cursor_token.fingerprint): its own text and the values of the
    parameters the page clauses do not take."""
    page = {p.name for p in (node.limit, node.offset, node.after) if isinstance(p, ast.Param)}
    start, end = node.span or (0, len(c.text))
    return cursor_token.fingerprint(c.text[start:end], {k: v for k, v in c.params.items() if k not in page})


def cursor(c: Any, node: ast.Select, column: bool, fingerprint: str) -> CheckedCursor | None:
    """The cursors' part: the search's fingerprint, and the cursor its page starts after, checked
    to come from this search (its signature is the executor's to check)."""
    if not column and node.after is None:
        return None
    if node.search is None:
        raise c.error("cursors name rows of a ranking: AFTER and the cursor column need a SEARCH clause", (node.after or node).pos)
    if node.after is None:
        return CheckedCursor(fingerprint, column)
    token = c.param(node.after) if isinstance(node.after, ast.Param) else node.after.value
    try:
        after, signed, mac = cursor_token.read(token)
    except cursor_token.CursorError as exc:
        raise c.error(str(exc), node.after.pos) from None
    if after.search != fingerprint:
        raise c.error(
            "this cursor comes from another search; a cursor starts a page only of the search it came from "
            "(the same text from the collection's name to LIMIT, with the same parameter values)",
            node.after.pos,
        )
    return CheckedCursor(fingerprint, column, after, signed, mac)
