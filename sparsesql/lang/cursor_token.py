"""Result cursors: an opaque, signed name for one row of one search's ranking.

`SELECT ..., cursor FROM c SEARCH ...` gives every row a cursor; `... AFTER :cursor` starts the
next page after that row (docs/dialect.md, "Pages"). A cursor carries the row's place in the
ranking, its score and internal document id, and a fingerprint of the search it came from (the
statement's text from the collection's name up to its LIMIT / OFFSET / AFTER, and the values of
the parameters), so that a cursor handed to another search is refused rather than starting a page in the
wrong ranking. It is signed with HMAC-SHA256 under the database's key (catalog revision 0003):
a cursor altered on its way, or made up, is refused too. A cursor grants nothing a query could
not ask for itself; the signature is about mistakes, not secrecy, and the payload is readable.

This module is pure: reading the key is the executor's job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from dataclasses import dataclass

import numpy as np

VERSION = "c1"
MAX_TOKEN = 512  # a cursor is about 150 characters; anything much longer is not one


@dataclass(frozen=True)
class Cursor:
    search: str  # the fingerprint of the search the row belongs to
    position: int  # the row's place in that search's ranking, from 1
    score: float | None
    doc_id: int  # the row's internal document id: ties in score are ordered by it


class CursorError(ValueError):
    """A cursor that cannot be read: the message says why, for the user."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(value: object) -> object:
    """A parameter's value as JSON can hold it: vectors as lists of floats, mappings sorted."""
    for method in ("tolist", "to_list"):
        if hasattr(value, method):
            return getattr(value, method)()
    if isinstance(value, dict):
        return sorted((str(k), canonical(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def fingerprint(text: str, params: dict[str, object]) -> str:
    """A search: its statement's text from the collection's name to GROUP BY or the page clauses
    (a boost's ORDER BY included; surrounding whitespace trimmed) and the values of its parameters; a vector's
    by its float64 bytes, the rest as JSON. The search a cursor belongs to, and the key under
    which a connection keeps its candidate lists (sparsesql/exec/run.py)."""
    digest = hashlib.sha256(text.strip().encode("utf-8", "surrogatepass"))
    for name, value in sorted(params.items()):
        digest.update(b"\0" + name.encode("utf-8", "surrogatepass") + b"=")
        numbers = _numbers(value)
        digest.update(numbers.tobytes() if numbers is not None else json.dumps(canonical(value), default=str).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def _numbers(value: object) -> np.ndarray | None:
    """A vector (numpy, pgvector, or a list of numbers) as float64, or None."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float64, copy=False)
    if isinstance(value, (list, tuple)) and value and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return np.asarray(value, dtype=np.float64)
    return None


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, f"{VERSION}.{payload}".encode("ascii"), hashlib.sha256).digest()[:16])


def sign(key: bytes, cursor: Cursor) -> str:
    score = None if cursor.score is None or not math.isfinite(cursor.score) else cursor.score
    payload = _b64(json.dumps([cursor.search, cursor.position, score, cursor.doc_id], separators=(",", ":")).encode("ascii"))
    return f"{VERSION}.{payload}.{_mac(key, payload)}"


def read(token: object) -> tuple[Cursor, str, str]:
    """The cursor a token names, unverified, with what was signed and the signature; raises
    CursorError when the token is not a cursor sparsesql made."""
    if not isinstance(token, str):
        raise CursorError(f"a cursor is the text of a row's cursor column, got {type(token).__name__}")
    if len(token) > MAX_TOKEN:
        raise CursorError(f"a cursor is at most {MAX_TOKEN} characters, this one {len(token)}")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise CursorError("this is not a cursor sparsesql made: take it from a row's cursor column")
    try:
        search, position, score, doc_id = json.loads(_unb64(parts[1]))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise CursorError("the cursor is damaged: its content cannot be read") from None
    if not (isinstance(search, str) and isinstance(position, int) and position >= 1 and isinstance(doc_id, int)
            and (score is None or isinstance(score, (int, float)))):
        raise CursorError("the cursor is damaged: its content cannot be read")
    return Cursor(search, position, None if score is None else float(score), doc_id), parts[1], parts[2]


def genuine(key: bytes, payload: str, mac: str) -> bool:
    """Whether `mac` is the database key's signature of `payload`."""
    return hmac.compare_digest(_mac(key, payload), mac)
