"""The in-memory sparse tier: one collection's postings in numpy, scored exactly as the SQL does.

Layout (BiDR's coarse tier; dense vectors stay in Postgres):
    terms[i]                       the i-th term id present (ascending; vocabulary ids are sparse,
                                   since an upsert that conflicts still takes an id)
    offsets[i] .. offsets[i + 1]   that term's postings in `docs` (int32 doc ids, ascending) and
                                   `weights` (uint16 term frequencies for BM25, float32 for
                                   precomputed weights): 6 bytes a posting for BM25
    doc_len[d], alive[d]           per document: its length (BM25's normalisation) and whether it
                                   still exists (deletes only clear this flag)
Documents added after the load live in a small delta (per-term arrays) until `compact()` merges
them. Document ids are never reused (an update is a delete plus an add under a new id), so a
delete is one flag and an add never touches the base arrays.

Scores are computed at query time from the current N, avgdl and df, with the SQL's formula, and
summed term by term in term-id order, as the SQL's sum is, so they equal the SQL's scores (to the
last bits of float summation) and never go stale. `top_k` is exhaustive and exact: every posting
of every query term is scored by a compiled loop (numba, releasing the interpreter lock, so a
server's concurrent searches score in parallel) into an accumulator over doc ids. Measured on
100k synthetic documents (benchmarks/speed.py's calibrated set), that loop took 0.1-0.3 ms a
query where MaxScore pruning (Turtle and Flood, 1995) written with numpy took 0.6-1.1 ms, nearly
all of it interpreter work around small arrays; at these sizes skipping postings saves less than
the bookkeeping that decides which to skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from sparsesql.tier.fields import FieldScoring, accumulate_fields


@numba.njit(nogil=True, cache=True)
def _accumulate(ids, ws, scale, bm25, k1, b, avgdl, doc_len, alive, allowed, filtered, acc, seen, touched, n):  # pragma: no cover - compiled
    """Add one term's postings' contributions to `acc` (by doc id), skipping deleted documents
    and those the filter drops; new documents are appended to `touched`. Returns its new length.
    The arithmetic is the SQL's BM25, term by term in the SQL's order, so every sum equals the SQL's."""
    for j in range(ids.shape[0]):
        d = ids[j]
        if not alive[d] or (filtered and not allowed[d]):
            continue
        w = np.float64(ws[j])
        if bm25:
            c = scale * w / (w + k1 * (1 - b + b * doc_len[d] / avgdl))
        else:
            c = scale * w
        if not seen[d]:
            seen[d] = True
            touched[n] = d
            n += 1
        acc[d] += c
    return n


def load_compiled() -> None:
    """Load (compiling on a machine's first run) the scoring loop for every postings layout now:
    a server's supervisor calls this before it forks, so the workers share LLVM and the code
    instead of each loading its own (36 MB a process, measured)."""
    alive, doc_len = np.ones(2, dtype=bool), np.ones(2, dtype=np.int32)
    for ids, ws in ((np.zeros(1, np.int32), np.ones(1, np.uint16)), (np.zeros(1, np.int32), np.ones(1, np.float32)),
                    (np.zeros(1, np.int64), np.ones(1, np.float64))):
        _accumulate(ids, ws, 1.0, True, 0.9, 0.4, 1.0, doc_len, alive, alive, False, np.zeros(2), np.zeros(2, dtype=bool),
                    np.empty(1, dtype=np.int64), 0)


@dataclass
class Scoring:
    """What BM25 needs beyond the postings, read from the catalog in the query's snapshot; a
    learned field's inference-free query (`idf`) weights each term by BM25's idf too."""

    bm25: bool
    k1: float
    b: float
    n_docs: float
    avgdl: float
    idf: bool = False

    def idf_of(self, df: int) -> float:
        return np.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))


@dataclass
class QueryTerm:
    term_id: int
    weight: float  # the query's weight for the term (its count in the analysed query)
    df: int


@dataclass
class SparseIndex:
    terms: np.ndarray  # the term ids present, ascending: slot i holds term terms[i]
    offsets: np.ndarray
    docs: np.ndarray
    weights: np.ndarray
    doc_len: np.ndarray
    alive: np.ndarray
    delta: dict[int, tuple[list[int], list[float]]] = field(default_factory=dict)  # term id -> added postings
    delta_postings: int = 0

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, term_ids: np.ndarray, doc_ids: np.ndarray, weights: np.ndarray, lengths: tuple[np.ndarray, np.ndarray], *, integer: bool) -> "SparseIndex":
        """From postings sorted by (term_id, doc_id) and (doc_id, doc_len) pairs."""
        len_ids, len_values = lengths
        top_doc = int(max(len_ids.max(initial=0), doc_ids.max(initial=0)))
        if top_doc >= 2**31 - 1:
            raise OverflowError("document ids past 2^31 do not fit the tier's int32 postings")
        doc_len = np.zeros(top_doc + 1, dtype=np.int32)
        doc_len[len_ids] = len_values
        alive = np.zeros(top_doc + 1, dtype=bool)
        alive[len_ids] = True
        terms, counts = np.unique(term_ids, return_counts=True)
        offsets = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        stored = weights.astype(np.uint16) if integer else weights.astype(np.float32)
        return cls(terms.astype(np.int64), offsets, doc_ids.astype(np.int32), stored, doc_len, alive)

    def _grow(self, top_doc: int, term_ids: np.ndarray) -> None:
        if top_doc >= len(self.alive):
            extra = max(top_doc + 1, int(len(self.alive) * 1.25)) - len(self.alive)
            self.alive = np.concatenate([self.alive, np.zeros(extra, dtype=bool)])
            self.doc_len = np.concatenate([self.doc_len, np.zeros(extra, dtype=np.int32)])
        at = np.searchsorted(self.terms, term_ids)  # `terms` is sorted: no set operation over all of it
        known = self.terms[np.minimum(at, len(self.terms) - 1)] == term_ids if len(self.terms) else np.zeros(len(term_ids), dtype=bool)
        new = term_ids[~known].astype(np.int64)
        if len(new):  # terms with no base postings get empty slots where they sort
            at = np.searchsorted(self.terms, new)
            self.terms = np.insert(self.terms, at, new)
            self.offsets = np.insert(self.offsets, at, self.offsets[at])

    def add(self, term_ids: np.ndarray, doc_ids: np.ndarray, weights: np.ndarray, len_ids: np.ndarray, len_values: np.ndarray) -> None:
        """Documents added since the load (postings sorted by doc id within each term)."""
        if len(len_ids) == 0:
            return
        self._grow(int(len_ids.max()), np.unique(term_ids))
        self.doc_len[len_ids] = len_values
        self.alive[len_ids] = True
        for term, d, w in zip(term_ids.tolist(), doc_ids.tolist(), weights.tolist()):
            ids, ws = self.delta.setdefault(term, ([], []))
            ids.append(d)
            ws.append(w)
        self.delta_postings += len(term_ids)

    def remove(self, doc_ids: np.ndarray) -> None:
        ids = doc_ids[doc_ids < len(self.alive)]
        self.alive[ids] = False

    def compact(self) -> "SparseIndex":
        """A new index with the delta merged in and deleted documents' postings dropped."""
        term_parts, doc_parts, weight_parts = [], [], []
        per_term = np.diff(self.offsets)
        base_terms = np.repeat(self.terms, per_term)
        keep = self.alive[self.docs]
        term_parts.append(base_terms[keep])
        doc_parts.append(self.docs[keep].astype(np.int64))
        weight_parts.append(self.weights[keep].astype(np.float64))
        for t, (ids, ws) in self.delta.items():
            ids_a = np.asarray(ids, dtype=np.int64)
            live = self.alive[ids_a]
            term_parts.append(np.full(int(live.sum()), t, dtype=np.int64))
            doc_parts.append(ids_a[live])
            weight_parts.append(np.asarray(ws, dtype=np.float64)[live])
        terms, docs, weights = (np.concatenate(p) for p in (term_parts, doc_parts, weight_parts))
        order = np.lexsort((docs, terms))
        live_docs = np.flatnonzero(self.alive)
        return SparseIndex.build(
            terms[order], docs[order], weights[order], (live_docs, self.doc_len[live_docs]),
            integer=self.weights.dtype == np.uint16,
        )

    def holding(self, term_ids: list[int]) -> np.ndarray:
        """A flag per doc id (as long as `alive`): live documents with a posting of any of the
        terms, a SPARSE search's every match, found without scoring it."""
        found = np.zeros(len(self.alive), dtype=bool)
        at = np.searchsorted(self.terms, term_ids).tolist()
        for t, i in zip(term_ids, at):
            if i < len(self.terms) and self.terms[i] == t:
                found[self.docs[self.offsets[i]:self.offsets[i + 1]]] = True
            if t in self.delta:
                found[np.asarray(self.delta[t][0], dtype=np.int64)] = True
        return found & self.alive

    # ------------------------------------------------------------------ scoring

    def memory_bytes(self) -> int:
        arrays = (self.terms, self.offsets, self.docs, self.weights, self.doc_len, self.alive)
        return sum(a.nbytes for a in arrays) + self.delta_postings * 16

    def top_k(self, terms: list[QueryTerm], s: Scoring, k: int, *, allowed: np.ndarray | None = None,
              after: tuple[float, int] | None = None, fields: FieldScoring | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """Exact top k (doc ids, scores; ties to the lower doc id, as the SQL's ORDER BY score
        DESC, doc_id) and what the search did (for EXPLAIN); with `allowed` (a flag per doc id, as
        long as `alive`), among the documents a filter keeps only; with `after` (a cursor's score
        and doc id), among the documents ranking after that document's score now (the cursor's
        own while the document is no match) only; with `fields`, by BM25F (tier/fields.py), the
        postings only saying which documents hold each term."""
        terms = sorted((q for q in terms if q.weight > 0), key=lambda q: q.term_id)
        if s.bm25 and s.avgdl <= 0:  # no document has a term: nothing can match
            terms = []
        found = np.searchsorted(self.terms, [q.term_id for q in terms]).tolist()
        spans, total = [], 0
        for q, t in zip(terms, found):
            if t >= len(self.terms) or self.terms[t] != q.term_id:
                continue
            lo, hi = int(self.offsets[t]), int(self.offsets[t + 1])
            extra = self.delta.get(q.term_id)
            spans.append((q, lo, hi, extra))
            total += hi - lo + (len(extra[0]) if extra else 0)
        n_docs = len(self.alive)
        acc, seen = np.zeros(n_docs), np.zeros(n_docs, dtype=bool)
        touched = np.empty(total, dtype=np.int64)
        mask = allowed if allowed is not None else self.alive
        n = 0
        for q, lo, hi, extra in spans:
            scale = q.weight * s.idf_of(q.df) if (s.bm25 or s.idf) else q.weight
            if fields is not None:
                c = fields.counts
                args = (q.term_id, float(scale), s.k1, s.b, fields.weights, fields.avg, c.start, c.count, c.terms, c.tfs, c.lens,
                        self.alive, mask, allowed is not None, acc, seen, touched)
                n = accumulate_fields(self.docs[lo:hi], *args, n)
                if extra:
                    n = accumulate_fields(np.asarray(extra[0], dtype=np.int64), *args, n)
                continue
            args = (float(scale), s.bm25, s.k1, s.b, s.avgdl, self.doc_len, self.alive, mask, allowed is not None, acc, seen, touched)
            n = _accumulate(self.docs[lo:hi], self.weights[lo:hi], *args, n)
            if extra:
                n = _accumulate(np.asarray(extra[0], dtype=np.int64), np.asarray(extra[1], dtype=np.float64), *args, n)
        docs = touched[:n]  # in no order: `_best` breaks ties by doc id itself
        scores = acc[docs]
        if after is not None:
            score, doc = after
            if doc < n_docs and seen[doc]:
                score = acc[doc]
            later = (scores < score) | ((scores == score) & (docs > doc))
            docs, scores = docs[later], scores[later]
        return (*self._best(docs, scores, k), {"postings scored": total})

    @staticmethod
    def _best(docs: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best by score, ties to the lower doc id (the SQL's ORDER BY score DESC, doc_id)."""
        if len(docs) > k:
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = scores >= kth
            docs, scores = docs[keep], scores[keep]
        order = np.lexsort((docs, -scores))[:k]
        return docs[order], scores[order]
