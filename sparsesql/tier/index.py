"""The in-memory sparse tier: one collection's postings in numpy, scored exactly as the SQL does.

Layout (BiDR's coarse tier; dense vectors stay in Postgres):
    terms[i]                       the i-th term id present (ascending; vocabulary ids are sparse,
                                   since an upsert that conflicts still takes an id)
    offsets[i] .. offsets[i + 1]   that term's postings in `docs` (int32 doc ids, ascending) and
                                   `weights` (uint16 term frequencies for BM25, float32 for
                                   precomputed weights): 6 bytes a posting for BM25
    doc_len[d], alive[d]           per document: its length (BM25's normalisation) and whether it
                                   still exists (deletes only clear this flag)
    max_weight[i], min_len[i]      per term: the largest weight and the shortest document among its
                                   postings, so max_weight / (max_weight + k1 (1 - b + b min_len /
                                   avgdl)) bounds any of its postings' BM25 contribution
Documents added after the load live in a small delta (per-term arrays) until `compact()` merges
them. Document ids are never reused (an update is a delete plus an add under a new id), so a
delete is one flag and an add never touches the base arrays.

Scores are computed at query time from the current N, avgdl and df, with the SQL's formula, and
summed term by term in the query's order, so they equal the SQL's scores (to the last bits of
float summation) and never go stale. `top_k` is exact: either every posting of every query term is
accumulated, or MaxScore-style pruning (Turtle and Flood, 1995) stops accumulating new documents
once the terms left cannot lift an unseen document above the current k-th score, then scores the
surviving candidates exactly over all terms; both return the same documents in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_SAFETY = 1e-9  # relative slack on the pruning bound, so float rounding never prunes a true top-k document


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
    max_weight: np.ndarray
    min_len: np.ndarray
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
        n_terms = len(terms)
        offsets = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        stored = weights.astype(np.uint16) if integer else weights.astype(np.float32)
        docs = doc_ids.astype(np.int32)
        max_weight = np.zeros(n_terms, dtype=np.float32)
        min_len = np.zeros(n_terms, dtype=np.int32)
        if len(docs):
            max_weight[:] = np.maximum.reduceat(stored.astype(np.float32), offsets[:-1])
            min_len[:] = np.minimum.reduceat(doc_len[docs], offsets[:-1])
        return cls(terms.astype(np.int64), offsets, docs, stored, max_weight, min_len, doc_len, alive)

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    def slot(self, term_id: int) -> int | None:
        """Where a term's arrays are, or None when no posting of it was ever loaded."""
        i = int(np.searchsorted(self.terms, term_id))
        return i if i < len(self.terms) and self.terms[i] == term_id else None

    def _grow(self, top_doc: int, term_ids: np.ndarray) -> None:
        if top_doc >= len(self.alive):
            extra = max(top_doc + 1, int(len(self.alive) * 1.25)) - len(self.alive)
            self.alive = np.concatenate([self.alive, np.zeros(extra, dtype=bool)])
            self.doc_len = np.concatenate([self.doc_len, np.zeros(extra, dtype=np.int32)])
        new = np.setdiff1d(term_ids, self.terms).astype(np.int64)
        if len(new):  # terms with no base postings get empty slots where they sort
            at = np.searchsorted(self.terms, new)
            self.terms = np.insert(self.terms, at, new)
            self.offsets = np.insert(self.offsets, at, self.offsets[at])
            self.max_weight = np.insert(self.max_weight, at, 0)
            self.min_len = np.insert(self.min_len, at, 0)

    def add(self, term_ids: np.ndarray, doc_ids: np.ndarray, weights: np.ndarray, len_ids: np.ndarray, len_values: np.ndarray) -> None:
        """Documents added since the load (postings sorted by doc id within each term)."""
        if len(len_ids) == 0:
            return
        self._grow(int(len_ids.max()), np.unique(term_ids))
        self.doc_len[len_ids] = len_values
        self.alive[len_ids] = True
        slots = np.searchsorted(self.terms, term_ids)
        for term, t, d, w in zip(term_ids.tolist(), slots.tolist(), doc_ids.tolist(), weights.tolist()):
            ids, ws = self.delta.setdefault(term, ([], []))
            ids.append(d)
            ws.append(w)
            if w > self.max_weight[t]:
                self.max_weight[t] = w
            dl = self.doc_len[d]
            if self.min_len[t] == 0 or dl < self.min_len[t]:
                self.min_len[t] = dl
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

    # ------------------------------------------------------------------ scoring

    def memory_bytes(self) -> int:
        arrays = (self.terms, self.offsets, self.docs, self.weights, self.max_weight, self.min_len, self.doc_len, self.alive)
        return sum(a.nbytes for a in arrays) + self.delta_postings * 16

    def postings(self, term_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Term's live-or-dead postings (doc ids ascending) as (ids int64, weights float64)."""
        t = self.slot(term_id)
        if t is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        lo, hi = self.offsets[t], self.offsets[t + 1]
        ids, ws = self.docs[lo:hi].astype(np.int64), self.weights[lo:hi].astype(np.float64)
        if term_id in self.delta:
            extra_ids, extra_ws = self.delta[term_id]
            ids = np.concatenate([ids, np.asarray(extra_ids, dtype=np.int64)])
            ws = np.concatenate([ws, np.asarray(extra_ws, dtype=np.float64)])
        return ids, ws

    def _contribution(self, q: QueryTerm, ids: np.ndarray, ws: np.ndarray, s: Scoring) -> np.ndarray:
        if not s.bm25:
            return q.weight * s.idf_of(q.df) * ws if s.idf else q.weight * ws
        idf = s.idf_of(q.df)
        norm = s.k1 * (1 - s.b + s.b * self.doc_len[ids] / s.avgdl)
        return q.weight * idf * ws / (ws + norm)

    def bound(self, q: QueryTerm, s: Scoring) -> float:
        """No posting of the term contributes more than this."""
        t = self.slot(q.term_id)
        if t is None:
            return 0.0
        w = float(self.max_weight[t])
        if not s.bm25:
            return float(q.weight * s.idf_of(q.df) * w) if s.idf else q.weight * w
        idf = s.idf_of(q.df)
        return float(q.weight * idf * w / (w + s.k1 * (1 - s.b + s.b * float(self.min_len[t]) / s.avgdl)))

    def _part(self, q: QueryTerm, s: Scoring, only: np.ndarray | None = None, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One term's live postings and their contributions; with `only` (sorted ids), just those;
        with `allowed` (a flag per doc id), just the documents a filter keeps."""
        ids, ws = self.postings(q.term_id)
        if only is not None:
            at = np.searchsorted(ids, only)
            at[at >= len(ids)] = 0
            hit = (ids[at] == only) if len(ids) else np.zeros(len(only), dtype=bool)
            ids, ws = only[hit], ws[at[hit]]
        live = self.alive[ids] if allowed is None else self.alive[ids] & allowed[ids]
        ids, ws = ids[live], ws[live]
        return ids, self._contribution(q, ids, ws, s)

    def _aggregate(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """(doc ids ascending, sums); each document's contributions are added in `parts` order."""
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ids = np.concatenate([i for i, _ in parts])
        contrib = np.concatenate([c for _, c in parts])
        if len(ids) > len(self.alive) // 4:
            sums = np.bincount(ids, weights=contrib, minlength=len(self.alive))
            docs = np.flatnonzero(np.bincount(ids, minlength=len(self.alive)))
            return docs, sums[docs]
        docs, inverse = np.unique(ids, return_inverse=True)
        return docs, np.bincount(inverse, weights=contrib, minlength=len(docs))

    @staticmethod
    def _best(docs: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best by score, ties to the lower doc id (the SQL's ORDER BY score DESC, doc_id)."""
        if len(docs) > k:
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = scores >= kth
            docs, scores = docs[keep], scores[keep]
        order = np.lexsort((docs, -scores))[:k]
        return docs[order], scores[order]

    def top_k(self, terms: list[QueryTerm], s: Scoring, k: int, *, prune: bool = True,
              allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """Exact top k (doc ids, scores) and what the search did (for EXPLAIN); with `allowed` (a
        flag per doc id, as long as `alive`), among the documents a filter keeps only.

        Pruning takes terms largest bound first; every final score is then summed in term-id
        order, the order the SQL's sum uses, so both paths and the SQL add the same numbers in the
        same order. The bounds hold for any subset of documents, so pruning stays exact under a filter.
        """
        terms = [q for q in terms if self.slot(q.term_id) is not None and q.weight > 0]
        if s.bm25 and s.avgdl <= 0:  # no document has a term: nothing can match
            terms = []
        bounds = {q.term_id: self.bound(q, s) for q in terms}
        order = sorted(terms, key=lambda q: (-bounds[q.term_id], q.term_id))
        by_id = sorted(range(len(order)), key=lambda i: order[i].term_id)
        if not prune or len(order) < 2:
            docs, scores = self._aggregate([self._part(order[i], s, allowed=allowed) for i in by_id])
            return (*self._best(docs, scores, k), {"pruned terms": 0})
        ub = [bounds[q.term_id] for q in order]
        suffix = np.concatenate([np.cumsum(ub[::-1])[::-1], [0.0]])
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for i, q in enumerate(order, start=1):
            parts.append(self._part(q, s, allowed=allowed))
            # The k-th partial score is at most the processed terms' bounds: test only when that could beat the rest.
            if i == len(order) or sum(ub[:i]) * (1 - _SAFETY) <= suffix[i] * (1 + _SAFETY):
                continue
            docs, partial = self._aggregate(parts)
            if len(docs) < k:
                continue
            theta = np.partition(partial, len(partial) - k)[len(partial) - k]
            if suffix[i] * (1 + _SAFETY) < theta * (1 - _SAFETY):
                every = parts + [self._part(r, s, only=docs, allowed=allowed) for r in order[i:]]
                docs, scores = self._aggregate([every[j] for j in by_id])
                return (*self._best(docs, scores, k), {"pruned terms": len(order) - i, "candidates": int(len(docs))})
        docs, scores = self._aggregate([parts[j] for j in by_id])
        return (*self._best(docs, scores, k), {"pruned terms": 0})
