"""Runs a plan in a search's snapshot: one function per stage kind, results passed through a context.

Every statement goes through the `Snapshot` the search was checked in (its catalog read opened
it), so candidates and fetched rows see the same committed state: a document deleted or replaced
by a concurrent writer is either wholly there or wholly absent, never half of each. The final
statement commits the snapshot in the same round trip.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from collections.abc import Callable, Iterable

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql

from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.errors import DatabaseError
from sparsesql.exec.list_cache import ListCache, list_key
from sparsesql.exec.row import Row
from sparsesql.exec.row_extras import cursor_key, highlight_rows
from sparsesql.encoders.cross import load_cross_encoder
from sparsesql.exec.snapshot import Snapshot
from sparsesql.exec.tier_sparse import score_sparse
from sparsesql.plan.trace import StageRecord, short
from sparsesql.lang import cursor_token
from sparsesql.lang.cursor_token import Cursor
from sparsesql.plan import stages as st
from sparsesql.retrieval.diversify import coverage_select, mmr_select, relevance_scale, similarity
from sparsesql.retrieval.boost import column_values, rerank
from sparsesql.retrieval.fusion import fuse
from sparsesql.retrieval.prf import feedback, flatness, selective_weight
from sparsesql.retrieval.sparse import tier_stats_sql
from sparsesql.tier.cache import Tiers
from sparsesql.tier.changes import TierAhead, TierRefused
from sparsesql.tier.dense import brute_max
from sparsesql.tier.filters import NotInMemory
from sparsesql.tier.groups import facet_hits, facet_rows

Tracer = Callable[[str, dict], None] | None


class _Run:
    def __init__(self, snap: Snapshot, tracer: Tracer, tiers: Tiers | None, server_plans: bool,
                 distributed: bool, retry_ahead: bool, plan: st.Plan) -> None:
        self.snap = snap
        self.plan = plan  # its page: the stage that yields the rows keeps only the page's rows
        self.retry_ahead = retry_ahead
        self.distributed = distributed
        self.server_plans = server_plans
        self.explained: list[tuple] = []
        self.conn = snap.conn
        self.tracer = tracer
        self.tiers = tiers
        self.slots: dict[str, object] = {}
        self.records: list[StageRecord] = []

    def execute(self, record: StageRecord, statement, params: dict, *, binary: bool = False, last: bool = False,
                settings: dict[str, str] | None = None) -> list[tuple]:
        """Run one statement in the snapshot; `settings` (transaction-local, such as an HNSW
        scan's ef_search) are set in the same round trip, just before it."""
        text = statement.as_string(self.conn)
        record.sql = text
        record.params = {k: short(v) for k, v in params.items()}
        prelude = self.setting_statements(settings) if settings else []
        if settings:
            record.detail = ", ".join(f"{k} = {v}" for k, v in settings.items())
        if self.tracer:
            for before, values in prelude:
                self.tracer(before.as_string(self.conn), values)
            self.tracer(text, params)
        try:
            rows = self.snap.execute(statement, params, binary=binary, last=last, prelude=prelude).fetchall()
        except psycopg.Error as exc:
            raise database_error(exc, record.stage) from exc
        if self.server_plans:
            self.explained.append((record, statement, params, prelude))
        return rows

    def server_plans_after(self) -> None:
        """PostgreSQL's EXPLAIN ANALYZE of each statement the plan ran, each in a transaction of
        its own once the search's snapshot is over (it may see later commits): Citus' EXPLAIN
        ANALYZE fails in a transaction that already read a reference table locally, as every
        search's catalog read does, so the plans come with local execution off."""
        for record, statement, params, prelude in self.explained:
            try:
                with self.conn.transaction(force_rollback=True):
                    self.conn.execute("SELECT set_config('citus.enable_local_execution', 'off', true)")
                    for before, values in prelude:
                        self.conn.execute(before, values)
                    explained = self.conn.execute(sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) {}").format(statement), params)
                    record.plan = "\n".join(r[0] for r in explained.fetchall())
            except psycopg.Error as exc:
                record.plan = f"(not available: {exc.diag.message_primary or exc})"

    def setting_statements(self, settings: dict[str, str]) -> list[tuple[sql.Composable, dict | None]]:
        """Statements that make `settings` transaction-local. Citus passes SET LOCAL on to the
        shards' connections (with citus.propagate_set_commands = 'local'), not set_config(), so a
        distributed collection's shards get them as SET LOCAL; the names are the planner's own."""
        if self.distributed:
            return [(sql.SQL("SET LOCAL citus.propagate_set_commands = 'local'"), None),
                    *((sql.SQL("SET LOCAL {} = {}").format(sql.SQL(k), sql.Literal(v)), None) for k, v in settings.items())]
        names = sql.SQL(", ").join(sql.SQL("set_config({}, {}, true)").format(sql.Literal(k), sql.Placeholder(f"s{i}")) for i, k in enumerate(settings))
        return [(sql.SQL("SELECT {}").format(names), {f"s{i}": v for i, v in enumerate(settings.values())})]

    def bind_vector(self, params: dict, slot: str | None) -> dict:
        if slot is None:
            return params
        return {**params, slot: Vector(np.asarray(self.slots[slot], dtype=np.float32))}

    def encode(self, stage: st.EncodeQuery, record: StageRecord) -> None:
        from sparsesql.encoders.dense import encode_query

        self.slots[f"{stage.label}_vector"] = encode_query(stage.text, stage.model)
        record.rows = 1

    def candidates(self, stage: st.Candidates, record: StageRecord) -> None:
        rows = self.execute(record, stage.statement, self.bind_vector(stage.params, stage.vector_slot), settings=stage.settings)
        self.ranked(stage, [(int(d), float(s)) for d, s in rows], stage.params)
        record.rows = len(rows)

    def ranked(self, stage: st.Candidates | st.TierCandidates | st.Feedback, ranked: list[tuple[int, float]], params: dict) -> None:
        """Keep a list (without the plan's excluded documents), its parameters (for rescoring),
        and its floor when it is exhaustive."""
        self.slots[f"floor:{stage.label}"] = stage.absent if len(ranked) < stage.k else None
        self.slots[f"ranked:{stage.label}"] = self.kept(ranked)
        self.slots[f"params:{stage.label}"] = params

    def kept(self, ranked: list[tuple[int, float | None]]) -> list[tuple[int, float | None]]:
        """`ranked` without the documents the plan leaves out (LIKE's examples)."""
        return [x for x in ranked if x[0] not in self.plan.exclude] if self.plan.exclude else ranked

    def tier_candidates(self, stage: st.TierCandidates, record: StageRecord) -> None:
        """Top k from memory, scored in numpy. The index follows the change log to the version the
        search's catalog row shows; the query terms' df comes from the index's vocabulary when it
        knows them at that version, else from one statement that also reads the statistics.

        The tier's lock is held only while the index is brought to the search's version and
        scored, never across a round trip that other sessions' searches could not overlap."""
        info = stage.collection
        refused = self._refusal(lambda: self.tiers.why_not(self.conn, info, stage.field))
        kept, source = (None, "") if refused or stage.allowed is None else self.allowed_ids(stage, record)
        denied, words = None, stage.syntax.words if stage.syntax is not None else ()  # words: excluded in memory (score_sparse)
        if not refused and stage.syntax is not None and not words:
            ids = self._sql_ids(stage.syntax.statement, None, record)
            if stage.syntax.keeps:
                kept, source = (ids, "") if kept is None else (np.intersect1d(kept, ids), source + "; ")
                source += f"the search syntax {stage.syntax.text}: ids from SQL"
            else:
                denied = ids
        counts = None
        if not refused and stage.fields is not None and len(stage.fields) > 1:
            try:
                with self.tiers.lock:
                    counts = self.tiers.fields.get(self.conn, info)
            except TierRefused as exc:
                refused = self._refused_by(exc)
        if not refused:
            served = self._with_sparse_index(info, stage.field, [*stage.terms, *words], record,
                                             lambda *index: score_sparse(stage, *index, kept, denied, counts))
            refused = served if isinstance(served, str) else None
        if refused:
            self.candidates(st.Candidates(stage.label, stage.fallback, stage.params, stage.k, absent=stage.absent), record)
            record.detail = f"memory tier not used: {refused}"
            return
        (loaded, docs, scores, how), from_memory = served
        if kept is not None:
            how = {"filter keeps": f"{len(kept)} documents ({source})", **how}
        if denied is not None:
            how = {"the search syntax drops": f"{len(denied)} documents ({stage.syntax.text}: ids from SQL)", **how}
        if counts is not None:
            how = {"BM25F from field counts": f"{counts.data.memory_bytes() / 2**20:.1f} MB (from {counts.source} in {counts.load_ms:.0f} ms)", **how}
        self.ranked(stage, [(int(d), float(s)) for d, s in zip(docs, scores)], stage.params)
        record.rows = len(docs)
        record.detail = (
            f"{loaded.memory_bytes() / 2**20:.1f} MB in memory (from {loaded.source} in {loaded.load_ms:.0f} ms), change log at {loaded.seq}, "
            + ("statistics from memory, " if from_memory else "")
            + ", ".join(f"{k} {v}" for k, v in how.items())
        )

    def _with_sparse_index(self, info: CollectionInfo, field: SparseField, terms: Iterable[str], record: StageRecord,
                           use: Callable[..., object]) -> tuple[object, bool] | str:
        """`use(index, known terms, n_docs, sum_len, field_len)` over the field's index brought to the search's
        version, under the tier's lock; returns its result and whether the statistics came from
        memory, or why the tier refused. Statistics come from one statement when the index does
        not know the terms at that version."""
        with self.tiers.lock:
            current = self.tiers.current(info, field, terms)
            if current is not None:
                return use(*current, info.n_docs, info.sum_len, info.field_len), True
        rows = self.execute(record, tier_stats_sql(info, field), {"name": info.name, "terms": list(terms)})
        identity, version, n_docs, sum_len, field_len = rows[0][:5]
        with self.tiers.lock:
            try:
                loaded = self.tiers.get(self.conn, info, field, identity, version)
            except TierRefused as exc:
                return self._refused_by(exc)
            known = [(term, t, df) for *_, term, t, df in rows if t is not None]
            loaded.remember(terms, {term: (t, df) for term, t, df in known}, version)
            return use(loaded, known, n_docs, sum_len, tuple(field_len or ())), False

    def tier_dense(self, stage: st.TierDense, record: StageRecord) -> None:
        """Candidates from the codes, and every document of the union's lists, scored exactly from
        the tier's full vectors: both brought to the search's version by the change log, so no
        round trip is needed unless a DENSE-only search fetches its rows. The tier's lock covers
        the tier's use, not that statement."""
        info = stage.collection
        params = self.bind_vector(stage.params, stage.vector_slot)
        refused, loaded = self._refusal(lambda: self.tiers.dense.why_not(self.conn, info)), None
        kept, source = (None, "") if refused or stage.allowed is None else self.allowed_ids(stage, record)
        if refused is None:
            vector = params[f"{stage.label}_vector"].to_numpy()
            with self.tiers.lock:
                try:
                    loaded = self.tiers.dense.get(self.conn, info)
                except TierRefused as exc:
                    refused = self._refused_by(exc)
                else:
                    start = time.perf_counter()
                    found = loaded.data.codes.candidates(vector, stage.search_k, kept)
                    codes_ms = (time.perf_counter() - start) * 1000
                    ids = dict.fromkeys(found.tolist())
                    for label in stage.union:
                        ids.update(dict.fromkeys(d for d, _ in self.slots[f"ranked:{label}"]))
                    start = time.perf_counter()
                    top, scores = loaded.data.full.top(vector, np.fromiter(ids, dtype=np.int64, count=len(ids)), stage.k)
                    exact_ms = (time.perf_counter() - start) * 1000
                    tier = (f"{loaded.data.codes.describe()}, {loaded.data.memory_bytes() / 2**20:.1f} MB in memory (from {loaded.source} in "
                            f"{loaded.load_ms:.0f} ms), change log at {loaded.seq}; ")
        if loaded is None:
            if stage.columns is not None:
                self.rows(st.SqlRows(stage.fallback, stage.params, stage.columns, True, stage.vector_slot), record)
            else:
                self.candidates(st.Candidates(stage.label, stage.fallback, stage.params, stage.k, stage.vector_slot), record)
            record.detail = f"memory tier not used: {refused}"
            return
        ranked = list(zip(top.tolist(), scores.tolist()))
        if stage.columns is not None:
            self.fetched_page(record, stage.statement, ranked)
        else:
            self.ranked(stage, ranked, stage.params)
        record.rows = len(ranked)
        record.detail = (
            tier
            + ("" if kept is None else f"filter keeps {len(kept)} documents ({source}){', all scored exactly' if len(kept) <= brute_max(stage.search_k) else ''}, ")
            + f"{len(found)} candidates from the codes in {codes_ms:.2f} ms"
            + (f" + {len(ids) - len(found)} more from {', '.join(stage.union)}" if stage.union else "")
            + f", {len(ids)} scored exactly from full vectors in {exact_ms:.2f} ms"
        )

    def allowed_ids(self, stage: st.TierCandidates | st.TierDense, record: StageRecord) -> tuple[np.ndarray, str]:
        """The sorted doc ids the search's filter keeps, once per search, and where they came
        from: the tier's filter columns when they can evaluate it (brought to the search's
        version, as the other halves are), else one binary COPY in the search's snapshot."""
        allowed = stage.allowed
        key = f"allowed:{allowed.statement.as_string(self.conn)}"
        if key not in self.slots:
            try:
                with self.tiers.lock:
                    loaded = self.tiers.filters.get(self.conn, stage.collection)
                    kept = loaded.data.keep(allowed.where, allowed.params)
                    how = f"evaluated in memory ({loaded.data.memory_bytes() / 2**20:.1f} MB of filter columns, from {loaded.source} in {loaded.load_ms:.0f} ms)"
            except (NotInMemory, TierRefused) as exc:
                if isinstance(exc, TierRefused):
                    self._refused_by(exc)
                kept, how = self._sql_ids(allowed.statement, stage.params, record), f"ids from SQL: {exc}"
            self.slots[key] = (kept, how)
        return self.slots[key]

    def _sql_ids(self, statement: sql.Composed, params: dict, record: StageRecord) -> np.ndarray:
        if self.tracer:
            self.tracer(statement.as_string(self.conn), params)
        try:
            rows = copy_binary.copy_rows(self.conn, statement, params, copy_binary.DOC_ID)
        except psycopg.Error as exc:
            raise database_error(exc, record.stage) from exc
        return np.sort(rows["doc"].astype(np.int64))

    def _refused_by(self, exc: TierRefused) -> str:
        """Why a tier refused; a tier ahead of this search's snapshot ends the search (it starts
        again in a new snapshot, `Database._select`) unless this is its last attempt."""
        if isinstance(exc, TierAhead) and self.retry_ahead:
            raise exc
        return str(exc)

    def _refusal(self, why_not: Callable[[], str | None]) -> str | None:
        """Why the memory tier cannot serve this search (`why_not`: the collection's own reasons)."""
        if self.tiers is None:
            return "no memory tier on this connection"
        if self.snap.in_callers_transaction:
            # A caller's transaction may hold writes of its own, which the shared index must not
            # take in from the change log (they could still roll back).
            return "the search runs inside the caller's transaction"
        return why_not()

    def feedback(self, stage: st.Feedback, record: StageRecord) -> None:
        ids, weights = feedback(self.slots[f"ranked:{stage.source}"], stage.depth)
        params = {**stage.params, stage.prefix + "fb_ids": ids, stage.prefix + "fb_weights": weights}
        if stage.selective:
            own = [score for _, score in self.slots[f"ranked:{stage.side}"][: stage.depth]]
            configured = params[stage.prefix + "rm3_weight"]
            params[stage.prefix + "rm3_weight"] = kept = selective_weight(own, configured)
            h = flatness(own)
            why = "fewer than two first-pass matches" if h is None else f"flatness {h:.3f} of its top {len(own)} first-pass scores"
            record.detail = f"selective: the query keeps {kept:.3f} of its weight against the expansion (weight => {configured}; {why})"
        rows = self.execute(record, stage.statement, self.bind_vector(params, stage.vector_slot))
        self.ranked(stage, [(int(d), float(s)) for d, s in rows], params)
        record.rows = len(rows)
        if stage.terms_statement is not None:  # HIGHLIGHT marks the expansion terms apart: read them in the snapshot
            terms = self.execute(StageRecord("prf terms", stage.label), stage.terms_statement, params)
            self.slots.setdefault("expansion", set()).update(t for (t,) in terms)

    def fuse(self, stage: st.Fuse, record: StageRecord, *, keep_all: bool = False) -> None:
        lists = [self.slots[f"ranked:{label}"] for label in stage.labels]
        floors = [self.slots.get(f"floor:{label}") for label in stage.labels]
        f = stage.fusion
        fused, weights = fuse(lists, f.method, k=f.k, weights=f.weights, norm=f.norm, adaptive=f.adaptive, floors=floors)
        self.slots[f"fused:{stage.out}"] = fused
        self.slots[f"ranked:{stage.out}"] = fused if keep_all else fused[: stage.limit]
        record.rows = len(self.slots[f"ranked:{stage.out}"])
        if f.adaptive:
            record.detail = "weights " + ", ".join(f"{label} {w:.3f}" for label, w in zip(stage.labels, weights))

    def expand(self, stage: st.Diversify, record: StageRecord, pool: list[int]) -> list[int]:
        """Graph neighbours of the pool, scored by every list the result is fused from (as are
        pool members a list had cut off, so that every pool score is exact), fusions replayed
        without truncation; returns the newcomers."""
        found = self.execute(record, stage.expand, {**stage.params, "pool_ids": pool, "hops": stage.hops})
        if stage.expand_filter is not None and found:
            found = self.execute(record, stage.expand_filter, {**stage.params, "walked": [r[0] for r in found]})
        added = [int(r[0]) for r in found]
        if not added:
            return []
        for r in stage.rescore:
            ranked = self.slots[f"ranked:{r.label}"]
            listed = {d for d, _ in ranked}
            wanted = added + [d for d in pool if d not in listed]
            params = {**self.slots[f"params:{r.label}"], "rescore_ids": wanted, r.prefix + "k": len(wanted)}
            rows = self.execute(record, r.statement, self.bind_vector(params, r.vector_slot))
            self.slots[f"ranked:{r.label}"] = ranked + [(int(d), float(s)) for d, s in rows]
        for f in stage.replay:
            self.fuse(f, StageRecord(f.name), keep_all=True)
        return added

    def diversify(self, stage: st.Diversify, record: StageRecord) -> None:
        pool = [d for d, _ in self.slots[f"ranked:{stage.source}"][: stage.candidates]]
        added = self.expand(stage, record, pool) if stage.hops and pool else []
        scores = dict(self.slots[f"ranked:{stage.source}"])
        pool += [d for d in added if d in scores]
        rows = self.execute(record, stage.vectors, {"pool_ids": pool}, binary=True) if pool else []
        vectors = {int(d): v.to_numpy().astype(np.float64) for d, v in rows}
        start = time.perf_counter()
        chosen: list[tuple[int, float]] = []
        if pool:
            dim = len(next(iter(vectors.values()))) if vectors else 1
            matrix = np.array([vectors.get(d, np.zeros(dim)) for d in pool])
            relevance = relevance_scale(np.array([scores[d] for d in pool]))
            select = coverage_select if stage.method == "coverage" else mmr_select
            picked = select(relevance, similarity(matrix), stage.limit, stage.lam)
            chosen = [(pool[i], scores[pool[i]]) for i in picked]
        self.slots[f"ranked:{stage.out}"] = chosen
        record.rows = len(chosen)
        record.detail = (
            f"pool={len(pool)}, hops={stage.hops}, added by graph={len(added)}, "
            f"selection={(time.perf_counter() - start) * 1000:.2f} ms"
        )

    def page(self, ranked: list[tuple[int, float | None]]) -> list[tuple[int, float | None]]:
        """The page of a ranking (doc id, score) computed to the page's end; sets the slot
        `start`, the ranking's rows before it.

        After a cursor, the page starts past the cursor's row: at its position when the row is
        still there (nothing was written: the same page as OFFSET), else past wherever the row now
        ranks, else (the row is gone) past the rows that rank before its score and document, as
        Elasticsearch's search_after, or at its position after DIVERSIFY, whose order is not by
        score."""
        ranked = self.kept(ranked)
        start = self.plan.offset
        after = self.plan.cursor.after if self.plan.cursor else None
        size = self.plan.size if self.plan.size is not None else len(ranked)
        if self.plan.seek:  # the ranking starts after the cursor's row: its rows count on from there
            self.slots["start"] = after.position
            return ranked[:size]
        if after is not None and not (len(ranked) >= after.position and ranked[after.position - 1][0] == after.doc_id):
            moved = next((i for i, (d, _) in enumerate(ranked) if d == after.doc_id), None)
            if moved is not None:
                start = moved + 1
            elif self.plan.ordered_by_score and after.score is not None:
                start = next((i for i, (d, s) in enumerate(ranked) if s < after.score or (s == after.score and d > after.doc_id)), len(ranked))
        self.slots["start"] = start
        return ranked[start : start + size]

    def fetched_page(self, record: StageRecord, statement: sql.Composed, ranked: list[tuple[int, float | None]]) -> None:
        """The page's rows, fetched by id in one round trip. To collapse (DISTINCT ON), every row
        of the ranking is fetched, since the page is known only once the values are."""
        if self.plan.collapse:
            rows = self.execute(record, statement, {"ids": [d for d, _ in ranked]}, last=True) if ranked else []
            by_id = {r[0]: r[1:] for r in rows}
            page = self.page(self.collapsed([x for x in ranked if x[0] in by_id], by_id))
        else:
            page = self.page(ranked)
            rows = self.execute(record, statement, {"ids": [d for d, _ in page]}, last=True) if page else []
            by_id = {r[0]: r[1:] for r in rows}
        self.slots["rows"] = [(d, by_id[d], s) for d, s in page if d in by_id]

    def collapsed(self, ranked: list[tuple[int, float | None]], values: dict[int, tuple]) -> list[tuple[int, float | None]]:
        """The first (best) row of each value of the collapse column, in ranking order; rows
        without a value (NULL) are one value, as in PostgreSQL's DISTINCT ON."""
        at = self.plan.columns.index(self.plan.collapse)
        seen: set = set()
        out = []
        for doc, score in self.kept(ranked):
            value = values[doc][at]
            if value not in seen:
                seen.add(value)
                out.append((doc, score))
        return out

    def boost(self, stage: st.Boost, record: StageRecord) -> None:
        """The top of the ranking reordered by ORDER BY's expression: its fields from the filter
        columns in memory where they all are (a document's id read only for an error that names
        it), else read by id in one statement."""
        ranked = self.slots[f"ranked:{stage.source}"][: stage.depth]
        docs = np.array([d for d, _ in ranked], dtype=np.int64)
        columns, why = self._boost_columns(stage, docs)
        if columns is None:
            rows = self.execute(record, stage.statement, {"ids": docs.tolist()}) if ranked else []
            by_doc = {r[0]: r[1:] for r in rows}
            ranked = [x for x in ranked if x[0] in by_doc]
            columns = {name: column_values([by_doc[d][i + 1] for d, _ in ranked]) for i, name in enumerate(stage.boost.fields)}
            names = {d: v[0] for d, v in by_doc.items()}
            name_of, record.detail = names.__getitem__, f"fields read by id in SQL: {why}"
        else:
            name_of, record.detail = lambda d: self._doc_id(stage.collection, d), why
        self.slots[f"ranked:{stage.out}"] = rerank(ranked, columns, stage.boost, name_of, datetime.now(UTC))
        record.rows = len(ranked)

    def _boost_columns(self, stage: st.Boost, docs: np.ndarray) -> tuple[dict | None, str]:
        """The boost's fields for `docs` from the filter columns, and how; None and why not."""
        if not stage.boost.fields:
            return {}, "no field to read"
        if self.tiers is None:
            return None, "no memory tier on this connection"
        try:
            with self.tiers.lock:
                data = self.tiers.filters.get(self.conn, stage.collection).data
                return {f: data.numbers(f, docs) for f in stage.boost.fields}, "fields from the filter columns in memory"
        except (NotInMemory, TierRefused) as exc:
            return None, self._refused_by(exc) if isinstance(exc, TierRefused) else str(exc)

    def _doc_id(self, info: CollectionInfo, doc: int) -> str:
        row = self.conn.execute(sql.SQL("SELECT id FROM {} WHERE doc_id = %s").format(info.table("docs")), (doc,)).fetchone()
        return row[0] if row else str(doc)

    def rerank(self, stage: st.Rerank, record: StageRecord) -> None:
        """The top candidates in the cross-encoder's order: (query, text) pairs scored in batches,
        ties by doc id; a document without text is scored on the empty text."""
        r = stage.rerank
        ranked = self.slots[f"ranked:{stage.source}"][: r.candidates]
        rows = self.execute(record, stage.statement, {"ids": [d for d, _ in ranked]}) if ranked else []
        texts = {d: text or "" for d, text in rows}
        docs = [d for d, _ in ranked if d in texts]
        start = time.perf_counter()
        scores = load_cross_encoder(r.folder).predict([(r.query, texts[d]) for d in docs], batch_size=r.batch,
                                                       show_progress_bar=False) if docs else []
        order = sorted(zip(docs, (float(s) for s in scores)), key=lambda x: (-x[1], x[0]))
        self.slots[f"ranked:{stage.out}"] = order
        record.rows = len(order)
        record.detail = f"{len(docs)} pairs in {(time.perf_counter() - start) * 1000:.1f} ms"

    def fetch(self, stage: st.FetchRows, record: StageRecord) -> None:
        self.fetched_page(record, stage.statement, self.slots[f"ranked:{stage.source}"][: stage.limit])
        record.rows = len(self.slots["rows"])

    def rows(self, stage: st.SqlRows, record: StageRecord) -> None:
        rows = self.execute(record, stage.statement, self.bind_vector(stage.params, stage.vector_slot), last=True, settings=stage.settings)
        values = {r[0]: (r[1:-1] if stage.scored else r[1:]) for r in rows}
        ranked = [(r[0], float(r[-1]) if stage.scored else None) for r in rows]
        ranked = self.page(self.collapsed(ranked, values) if self.plan.collapse else ranked)
        self.slots["rows"] = [(d, values[d], s) for d, s in ranked]
        record.rows = len(rows)


    def facets(self, stage: st.Facets, record: StageRecord) -> None:
        """The facet's groups: from the filter columns when the tier holds every column it names
        (its hits found in memory too), else its statement in the snapshot."""
        ids = None if stage.source is None else [d for d, _ in self.slots[f"ranked:{stage.source}"][: stage.depth]]
        why = None
        if stage.memory is not None and self.tiers is not None:
            try:
                rows, how = self._memory_facets(stage, ids, record)
            except (NotInMemory, TierRefused) as exc:
                why = self._refused_by(exc) if isinstance(exc, TierRefused) else str(exc)
            else:
                self.slots["facets"], record.rows, record.detail = rows, len(rows), how
                return
        params = stage.params if ids is None else {**stage.params, "ids": ids}
        self.slots["facets"] = self.execute(record, stage.statement, params, last=True)
        record.rows = len(self.slots["facets"])
        if why:
            record.detail = f"grouped in SQL: {why}"

    def _memory_facets(self, stage: st.Facets, ids: list[int] | None, record: StageRecord) -> tuple[list[tuple], str]:
        """The groups from the filter columns, and how the hits were found; raises NotInMemory
        (or TierRefused) where the statement must run instead."""
        hits, info = stage.memory, stage.collection
        matches = None
        if hits.field is not None:
            refused = self._refusal(lambda: self.tiers.why_not(self.conn, info, hits.field))
            served = refused or self._with_sparse_index(info, hits.field, hits.terms, record,
                                                        lambda loaded, known, *_: loaded.index.holding([t for _, t, _ in known]))
            if isinstance(served, str):
                raise NotInMemory(f"the postings are not in memory: {served}")
            matches = served[0]
        codepoint = self.tiers.filters.codepoint_order(self.conn)
        types = {f.name: f.type for f in info.fields}
        with self.tiers.lock:
            loaded = self.tiers.filters.get(self.conn, info)
            data = loaded.data
            where, values = (hits.allowed.where, hits.allowed.params) if hits.allowed else (None, {})
            kept, how = facet_hits(data, ids, where, values, matches)
            rows = facet_rows(data, kept, hits.facets, types, codepoint_text=codepoint,
                              limit=stage.params["facet_limit"], offset=stage.params["facet_offset"])
        return rows, f"grouped in memory: {how} ({len(kept)} hits), {data.memory_bytes() / 2**20:.1f} MB of filter columns"


_DISPATCH = {
    st.EncodeQuery: _Run.encode,
    st.Candidates: _Run.candidates,
    st.TierCandidates: _Run.tier_candidates,
    st.TierDense: _Run.tier_dense,
    st.Feedback: _Run.feedback,
    st.Fuse: _Run.fuse,
    st.Diversify: _Run.diversify,
    st.Boost: _Run.boost,
    st.Rerank: _Run.rerank,
    st.FetchRows: _Run.fetch,
    st.SqlRows: _Run.rows,
    st.Facets: _Run.facets,
}


def database_error(exc: psycopg.Error, stage: str) -> DatabaseError:
    """A server error as the user should read it: which stage, what the server said."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return DatabaseError(f"stage '{stage}' was cancelled by the server: {exc}".strip())
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseError(f"stage '{stage}' lost its connection to PostgreSQL: {exc}".strip())
    return DatabaseError(f"stage '{stage}' failed in PostgreSQL: {exc}".strip())


def run_plan(snap: Snapshot, plan: st.Plan, tracer: Tracer = None, tiers: Tiers | None = None, *,
             server_plans: bool = False, retry_ahead: bool = False, cache: ListCache | None = None) -> tuple[list[Row], list[StageRecord]]:
    """Execute every stage in order; returns the rows and a record per stage. `server_plans`
    (EXPLAIN ANALYZE of a distributed collection) also records PostgreSQL's own plan of each
    statement, Citus' tasks included, from running it once more after the search. With
    `retry_ahead`, a tier ahead of the snapshot raises TierAhead instead of sending the stage to SQL."""
    run = _Run(snap, tracer, tiers, server_plans, bool(plan.distributed), retry_ahead, plan)
    key = cursor_key(snap, plan.cursor) if plan.cursor else b""
    caching = cache is not None and not snap.in_callers_transaction and not server_plans
    for stage in plan.stages:
        record = StageRecord(stage.name, getattr(stage, "label", ""))
        start = time.perf_counter()
        listed = list_key(run.slots, plan, stage) if caching else None
        kept = cache.get(listed) if listed is not None else None
        if kept is not None and isinstance(stage, st.Fuse):
            run.slots[f"fused:{stage.out}"], run.slots[f"ranked:{stage.out}"] = kept, kept[: stage.limit]
            record.rows, record.detail = len(run.slots[f"ranked:{stage.out}"]), "the same fusion as an earlier search of this connection"
        elif kept is not None:
            run.ranked(stage, kept, stage.params)
            record.rows, record.detail = len(kept), "the same list as an earlier search of this connection (no write since)"
        else:
            _DISPATCH[type(stage)](run, stage, record)
            made = f"fused:{stage.out}" if isinstance(stage, st.Fuse) else f"ranked:{getattr(stage, 'label', '')}"
            if listed is not None and made in run.slots:
                cache.put(listed, run.slots[made])
        record.ms = (time.perf_counter() - start) * 1000
        run.records.append(record)
    run.server_plans_after()
    if plan.facets:
        return [Row(dict(zip(plan.facets, r))) for r in run.slots.get("facets", [])], run.records
    shown = [c for c in plan.columns if c not in plan.hidden]
    marked = [h.column for h in plan.highlighting.items] if plan.highlighting else []
    names = shown + marked + (["score"] if plan.with_score else []) + (["cursor"] if plan.cursor and plan.cursor.column else [])
    rows = [dict(zip(plan.columns, values), score=score) for _, values, score in run.slots.get("rows", [])]
    if plan.highlighting:
        highlight_rows(plan.highlighting, rows, frozenset(run.slots.get("expansion", ())))
    start = run.slots.get("start", 0)
    out = []
    for i, ((doc, _, score), data) in enumerate(zip(run.slots.get("rows", []), rows)):
        if plan.cursor and plan.cursor.column:
            data["cursor"] = cursor_token.sign(key, Cursor(plan.cursor.fingerprint, start + i + 1, score, doc))
        out.append(Row({k: data[k] for k in names}))
    return out, run.records
