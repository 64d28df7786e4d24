"""A field's vocabulary in the memory tier: term -> (term id, df) at a catalog version.

A search whose terms are all known at the catalog's current version needs no statistics
statement of its own. The whole vocabulary is kept as three sorted arrays (terms as UTF-8 bytes,
their ids, their df), saved with the tier's snapshot and memory-mapped from it like the postings
(a Python dict of 250k terms took 53 MB in every process; the arrays take a tenth of that, once
per machine). Terms read since (their df after a write) live in a small dict beside them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

ENTRY_BYTES = 210  # one entry of the dict of terms read since: 208 by tracemalloc over 256k entries


class Vocabulary:
    def __init__(self, terms: np.ndarray, ids: np.ndarray, df: np.ndarray, whole_at: int | None) -> None:
        self.terms, self.ids, self.df = terms, ids, df
        self.whole_at = whole_at  # the version at which the arrays held every term: others were absent
        self.recent: dict[str, tuple[int, int, int]] = {}  # term -> (term id or -1, df, version read at)

    @classmethod
    def from_rows(cls, rows: list[tuple[str, int, int]], version: int) -> "Vocabulary":
        """From (term, term id, df) rows read in the snapshot whose catalog version is `version`."""
        rows = sorted((t.encode(), i, d) for t, i, d in rows)
        terms = np.array([t for t, _, _ in rows], dtype=bytes) if rows else np.zeros(0, dtype="S1")
        return cls(terms, np.array([i for _, i, _ in rows], dtype=np.int64), np.array([d for _, _, d in rows], dtype=np.int64), version)

    def _lookup(self, term: str) -> tuple[int, int] | None:
        key = term.encode()
        if not len(self.terms) or len(key) > self.terms.dtype.itemsize:
            return None
        at = int(np.searchsorted(self.terms, key))
        if at < len(self.terms) and self.terms[at] == key:
            return int(self.ids[at]), int(self.df[at])
        return None

    def known(self, terms: Iterable[str], version: int) -> list[tuple[str, int, int]] | None:
        """(term, term id, df) of the terms present, if every term is known at `version`."""
        out = []
        for term in terms:
            entry = self.recent.get(term)
            if entry is not None and entry[2] == version:
                if entry[0] >= 0:
                    out.append((term, entry[0], entry[1]))
                continue
            if self.whole_at != version:
                return None
            found = self._lookup(term)
            if found is not None:
                out.append((term, *found))
        return out

    def remember(self, terms: Iterable[str], found: dict[str, tuple[int, int]], version: int) -> None:
        for term in terms:
            term_id, df = found.get(term, (-1, 0))
            self.recent[term] = (term_id, df, version)

    def memory_bytes(self) -> int:
        return int(self.terms.nbytes + self.ids.nbytes + self.df.nbytes) + ENTRY_BYTES * len(self.recent)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"vocab_terms": self.terms, "vocab_ids": self.ids, "vocab_df": self.df}
