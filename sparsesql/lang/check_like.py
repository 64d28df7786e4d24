"""Checking more-like-this: `SPARSE(LIKE 'id' ...)` and `DENSE(LIKE ('a', 'b') UNLIKE 'c')`.

A LIKE query names documents by id: the documents to find more of, and (UNLIKE) the ones whose
likeness pushes results away, as Qdrant's recommend API takes positive and negative examples.
Here the ids are checked as values (text, a parameter bound to an id or a list of ids, none in
both lists); that they exist is known only in the search's snapshot, where
sparsesql/retrieval/like.py turns them into the vector or terms the signal searches with.
Kept apart from check.py, which calls `liked` with its checker `c`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparsesql.lang import ast

MAX_LIKED = 100  # ids in LIKE and UNLIKE together
DEFAULT_TERMS = 25  # Lucene's MoreLikeThis: its maxQueryTerms
MAX_TERMS = 1000


@dataclass(frozen=True)
class Liked:
    """A signal's query by example: liked and unliked ids with where each was written, how many
    top terms a SPARSE one takes, and whether the examples may be results themselves."""

    ids: tuple[str, ...]
    unlike: tuple[str, ...]
    positions: dict[str, ast.Pos]
    pos: ast.Pos
    terms: int = DEFAULT_TERMS
    include: bool = False


def liked(c: Any, node: ast.MoreLike, got: dict[str, ast.Arg], sparse: bool) -> Liked:
    """The checked LIKE of a SPARSE (`sparse`) or DENSE signal; `got` are its other arguments
    (`terms =>` for SPARSE, `include_liked =>` for either)."""
    positions: dict[str, ast.Pos] = {}
    ids = _ids(c, node.ids, positions, "LIKE")
    unlike = _ids(c, node.unlike, positions, "UNLIKE")
    if not ids:
        raise c.error("LIKE needs at least one document id", node.pos)
    both = next((i for i in unlike if i in ids), None)
    if both is not None:
        raise c.error(f"document {both!r} is both liked and unliked", next(n.pos for n in node.unlike if _names(c, n, both)))
    if len(ids) + len(unlike) > MAX_LIKED:
        raise c.error(f"LIKE and UNLIKE name {len(ids) + len(unlike)} documents; at most {MAX_LIKED}", node.pos)
    terms = int(c.number(got["terms"], integer=True, low=1, high=MAX_TERMS)) if "terms" in got else DEFAULT_TERMS
    include = False
    if "include_liked" in got:
        include = c.value(got["include_liked"].value)
        if not isinstance(include, bool):
            raise c.error(f"include_liked => expects true or false, got {include!r}", got["include_liked"].value.pos)
    return Liked(ids, unlike, positions, node.pos, terms, include)


def _names(c: Any, node: ast.Literal | ast.Param, doc: str) -> bool:
    value = c.param(node) if isinstance(node, ast.Param) else node.value
    return value == doc or (isinstance(value, (list, tuple)) and doc in value)


def _ids(c: Any, nodes: tuple[ast.Literal | ast.Param, ...], positions: dict[str, ast.Pos], clause: str) -> tuple[str, ...]:
    out: list[str] = []
    for node in nodes:
        value = c.param(node) if isinstance(node, ast.Param) else node.value
        values = list(value) if isinstance(value, (list, tuple)) and isinstance(node, ast.Param) else [value]
        for v in values:
            if not isinstance(v, str) or not v:
                raise c.error(f"{clause} takes document ids (text), got {v!r}", node.pos)
            if v not in out:
                positions.setdefault(v, node.pos)
                out.append(v)
    return tuple(out)
