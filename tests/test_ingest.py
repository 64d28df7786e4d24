"""Ingest against the real server: atomic batches, idempotent re-ingest, exact statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsesql.db.schema import BLOCK_POSTINGS

import sparsesql
from sparsesql.analysis import analyze

DIM = 4


def _docs(n: int, start: int = 0, word: str = "apple") -> list[dict]:
    rng = np.random.default_rng(start)
    return [
        {
            "id": f"d{i}",
            "title": f"{word} number {i}",
            "body": f"{word} pie recipe {'banana ' * (i % 3)} orchard {i}",
            "year": 2000 + i % 20,
            "metadata": {"venue": "SIGIR" if i % 2 else "ECIR"},
            "vector": rng.normal(size=DIM).tolist(),
        }
        for i in range(start, start + n)
    ]


def _make(db, name: str):
    return db.create_collection(name, {"title": "text", "body": "text", "year": "int"}, dense="none", dim=DIM)


def assert_exact_stats(db, name: str, slot: int = 0) -> None:
    """Catalog counters and df equal a recount from the stored rows, and the posting blocks of the
    sparse field in `slot` are exactly the documents' term arrays inverted, in well-formed blocks."""
    conn = db.conn
    n_docs, sum_len = conn.execute("SELECT n_docs, sum_len FROM sparsesql.collections WHERE name = %s", (name,)).fetchone()
    count, total = conn.execute(f'SELECT count(*), coalesce(sum(doc_len), 0) FROM sparsesql."{name}__docs"').fetchone()
    assert (n_docs, sum_len) == (count, total)
    tail = f"__{slot}" if slot else ""
    vocab, postings = f'sparsesql."{name}__vocab{tail}"', f'sparsesql."{name}__postings{tail}"'
    wrong = conn.execute(
        f"SELECT count(*) FROM {vocab} v LEFT JOIN "
        f"(SELECT term_id, sum(cardinality(doc_ids)) AS n FROM {postings} GROUP BY term_id) p USING (term_id) "
        "WHERE v.df <> coalesce(p.n, 0)"
    ).fetchone()[0]
    assert wrong == 0
    inverted = set(conn.execute(
        f'SELECT p.term_id, d.doc_id, p.tf FROM sparsesql."{name}__docs" d, unnest(d.term_ids{tail}, d.weights{tail}) AS p(term_id, tf)'
    ).fetchall())
    blocks = conn.execute(f"SELECT term_id, block, doc_ids, tfs FROM {postings} ORDER BY term_id, block").fetchall()
    stored = {(t, d, w) for t, _, ids, tfs in blocks for d, w in zip(ids, tfs)}
    assert stored == inverted and sum(len(ids) for *_, ids, _ in blocks) == len(inverted)
    for i, (term, block, ids, tfs) in enumerate(blocks):
        assert 0 < len(ids) == len(tfs) <= BLOCK_POSTINGS and ids == sorted(ids) and block <= ids[0]
        if i + 1 < len(blocks) and blocks[i + 1][0] == term:  # a term's blocks cover disjoint, increasing ranges
            assert ids[-1] < blocks[i + 1][1]


def test_add_writes_fields_postings_and_stats(db, name):
    coll = _make(db, name)
    report = coll.add(_docs(10))
    assert (report.added, report.updated, report.unchanged) == (10, 0, 0)
    assert coll.count() == 10
    doc = coll.get("d3")
    assert doc.title == "apple number 3" and doc.year == 2003 and doc.metadata == {"venue": "SIGIR"}
    length = len(analyze("apple number 3 apple pie recipe  orchard 3"))
    stored = db.conn.execute(f'SELECT doc_len FROM sparsesql."{name}__docs" WHERE id = %s', ("d3",)).fetchone()[0]
    assert stored == length
    assert_exact_stats(db, name)


def test_reingest_is_idempotent(db, name):
    coll = _make(db, name)
    coll.add(_docs(10))
    before = db.conn.execute("SELECT n_docs, sum_len FROM sparsesql.collections WHERE name = %s", (name,)).fetchone()
    report = coll.add(_docs(10))
    assert (report.added, report.updated, report.unchanged) == (0, 0, 10)
    after = db.conn.execute("SELECT n_docs, sum_len FROM sparsesql.collections WHERE name = %s", (name,)).fetchone()
    assert before == after
    assert_exact_stats(db, name)


def test_update_and_delete_keep_statistics_exact(db, name):
    coll = _make(db, name)
    coll.add(_docs(10))
    changed = _docs(3, word="cherry")
    report = coll.add(changed)
    assert (report.added, report.updated) == (0, 3)
    assert coll.get("d1").title == "cherry number 1"
    assert_exact_stats(db, name)
    apple_df = db.conn.execute(f"SELECT df FROM sparsesql.\"{name}__vocab\" WHERE term = 'appl'").fetchone()[0]
    assert apple_df == 7
    assert coll.delete(["d0", "d5", "missing"]) == 2
    assert coll.count() == 8 and coll.get("d5") is None
    assert_exact_stats(db, name)


def test_bad_document_rejects_the_whole_batch(db, name):
    coll = _make(db, name)
    docs = _docs(4)
    docs[3]["vector"] = [1.0, 2.0]
    with pytest.raises(sparsesql.IngestError, match=r"document 4 \(id 'd3'\).*2 dimensions.*stores 4"):
        coll.add(docs, batch_size=2)
    assert coll.count() == 2  # the first batch committed, the second is wholly absent
    assert coll.get("d2") is None
    assert_exact_stats(db, name)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vector": [math.nan, 0, 0, 0]}, "NaN or infinite"),
        ({"year": "nineteen"}, "field 'year' expects integer"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"id": ""}, "needs an 'id'"),
        ({"metadata": [1]}, "'metadata' must be a mapping"),
        ({"year": 2**40}, "out of range for integer"),
        ({"title": "bad \x00 byte"}, "NUL character"),
        ({"title": "lone \ud800 surrogate"}, "not valid Unicode"),
        ({"sparse": {"a": 1.0}}, "'sparse' is not accepted"),
    ],
)
def test_invalid_documents_are_named_and_nothing_is_written(db, name, change, message):
    coll = _make(db, name)
    doc = {**_docs(1)[0], **change}
    with pytest.raises(sparsesql.IngestError, match=message):
        coll.add([_docs(1, start=5)[0], doc])
    assert coll.count() == 0


@pytest.mark.parametrize(
    "vector, message",
    [
        ([0, 0, 0, 0], "'vector' is all zeros, so it has no direction to compare"),
        (np.zeros(DIM, dtype=np.float32), "'vector' is all zeros"),
        ([1e-50, 0.0, -0.0, 0.0], "'vector' is all zeros"),  # zero once stored as float4
        ([1e39, 0.0, 0.0, 0.0], "'vector' holds a component beyond single precision"),
        ([10**400, 0, 0, 0], "'vector' holds an integer too large"),
    ],
)
def test_a_zero_vector_is_refused_naming_the_document(db, name, vector, message):
    """DENSE would rank a zero vector first with score NaN, and HYBRID's min-max would score
    every candidate 1.0; the batch holding one is refused before any of it is written."""
    coll = _make(db, name)
    coll.add(_docs(2))
    batch = _docs(3, start=10)
    batch[1]["vector"] = vector
    with pytest.raises(sparsesql.IngestError) as info:
        coll.add(batch)
    assert info.value.message.startswith(f"document 2 (id 'd11'): {message}")
    assert coll.count() == 2 and coll.get("d10") is None
    assert_exact_stats(db, name)


class _ZeroForEmptyText:
    """A dense encoder stand-in (MiniLM's dimension, no model loaded) that, like a bag-of-words
    or hashing encoder, maps text without words to the zero vector."""

    dim = 384

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.array([np.eye(self.dim)[0] if t.strip() else np.zeros(self.dim) for t in texts], dtype=np.float32)


def test_a_zero_vector_from_the_dense_model_is_refused_naming_the_document(db, name, monkeypatch):
    monkeypatch.setattr("sparsesql.encoders.dense.load_dense_encoder", lambda spec: _ZeroForEmptyText())
    coll = db.create_collection(name, {"title": "text"}, dense="minilm-l6")
    coll.add([{"id": "a", "title": "words"}])
    with pytest.raises(sparsesql.IngestError) as info:
        coll.add([{"id": "b", "title": "more words"}, {"id": "empty", "title": ""}, {"id": "c", "title": "words"}])
    assert info.value.message == (
        "document 2 (id 'empty'): the vector dense model 'minilm-l6' computed from its text is all zeros, "
        "so it has no direction to compare"
    )
    assert coll.count() == 1 and coll.get("b") is None
    # INSERT's rows are checked before they are encoded, so the model's vector is refused by
    # the write, which numbers the documents as the rows
    with pytest.raises(sparsesql.IngestError, match=r"^document 2 \(id 'e'\): the vector dense model 'minilm-l6' computed"):
        db.query(f"INSERT INTO {name} (id, title) VALUES ('f', 'text'), ('e', NULL)")
    assert coll.count() == 1 and coll.get("f") is None


def test_server_side_failure_mid_batch_leaves_nothing(db, name):
    coll = _make(db, name)
    coll.add(_docs(2))
    vocab_before = db.conn.execute(f'SELECT term, df FROM sparsesql."{name}__vocab" ORDER BY term').fetchall()
    db.conn.execute(f'ALTER TABLE sparsesql."{name}__docs" ADD CONSTRAINT short CHECK (doc_len < 12)')
    batch = _docs(2, start=10, word="zebra")
    batch[1]["body"] = "zebra " * 20
    with pytest.raises(sparsesql.DatabaseError, match="short"):
        coll.add(batch)
    assert coll.count() == 2
    assert db.conn.execute(f'SELECT term, df FROM sparsesql."{name}__vocab" ORDER BY term').fetchall() == vocab_before
    assert_exact_stats(db, name)


def test_interrupted_ingest_resumes(db, name):
    coll = _make(db, name)
    docs = _docs(10)

    def crashing():
        for i, d in enumerate(docs):
            if i == 7:
                raise KeyboardInterrupt("killed")
            yield d

    with pytest.raises(KeyboardInterrupt):
        coll.add(crashing(), batch_size=3)
    assert coll.count() == 6
    report = coll.add(docs, batch_size=3)
    assert (report.added, report.unchanged) == (4, 6)
    assert coll.count() == 10
    assert_exact_stats(db, name)


def test_precomputed_sparse_beyond_sparsevec_cap(db, name):
    coll = db.create_collection(name, {"text": "text"}, sparse="precomputed", dense="none", dim=DIM)
    wide = {f"tok{i}": 1.0 + i % 5 for i in range(20_000)}
    coll.add([
        {"id": "wide", "text": "w", "sparse": wide, "vector": [1, 0, 0, 0]},
        {"id": "narrow", "text": "n", "sparse": {"tok3": 20.0}, "vector": [0, 1, 0, 0]},
    ])
    sizes = db.conn.execute(f'SELECT id, cardinality(term_ids) FROM sparsesql."{name}__docs" ORDER BY id').fetchall()
    assert sizes == [("narrow", 1), ("wide", 20_000)]
    assert_exact_stats(db, name)
    rows = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q)", q={"tok19999": 2.0, "tok3": 1.0})
    assert [r.id for r in rows] == ["narrow", "wide"]
    assert rows[1].score == pytest.approx(2.0 * (1.0 + 19999 % 5) + 1.0 * (1.0 + 3 % 5))
    coll.delete(["wide"])
    assert_exact_stats(db, name)


def test_blocks_split_and_shrink_as_documents_come_and_go(db, name):
    """A term in more documents than a block holds spans several blocks; deleting at their edges,
    emptying one, and updating documents keep every block well formed and SPARSE exact."""
    coll = db.create_collection(name, {"text": "text"}, dense="none", dim=DIM)
    n = 2 * BLOCK_POSTINGS + 300
    coll.add([{"id": f"d{i}", "text": f"common w{i % 7} " + "rare " * (i % 3), "vector": [1, 0, 0, 0]} for i in range(n)], batch_size=n)
    blocks = db.conn.execute(
        f'SELECT cardinality(doc_ids) FROM sparsesql."{name}__postings" p JOIN sparsesql."{name}__vocab" v USING (term_id) '
        "WHERE v.term = 'common' ORDER BY block"
    ).fetchall()
    assert [b[0] for b in blocks] == [BLOCK_POSTINGS, BLOCK_POSTINGS, 300]
    edges = [0, BLOCK_POSTINGS - 1, BLOCK_POSTINGS, 2 * BLOCK_POSTINGS - 1]
    coll.delete([f"d{i}" for i in edges] + [f"d{i}" for i in range(2 * BLOCK_POSTINGS, n)])
    assert_exact_stats(db, name)
    coll.add([{"id": f"d{i}", "text": f"common rare rare w{i}", "vector": [0, 1, 0, 0]} for i in range(5, 40)])
    coll.add([{"id": "late", "text": "common", "vector": [0, 0, 1, 0]}])
    assert_exact_stats(db, name)
    # SPARSE equals BM25 recomputed from the documents' own arrays
    stats = db.conn.execute("SELECT n_docs, sum_len FROM sparsesql.collections WHERE name = %s", (name,)).fetchone()
    rows = db.conn.execute(f'SELECT id, doc_len, term_ids, weights FROM sparsesql."{name}__docs"').fetchall()
    vocab = dict(db.conn.execute(f'SELECT term, term_id FROM sparsesql."{name}__vocab"').fetchall())
    df = dict(db.conn.execute(f'SELECT term_id, df FROM sparsesql."{name}__vocab"').fetchall())
    avgdl = stats[1] / stats[0]

    def bm25(tid, tf, dl):
        return math.log(1 + (stats[0] - df[tid] + 0.5) / (df[tid] + 0.5)) * tf / (tf + 0.9 * (1 - 0.4 + 0.4 * dl / avgdl))

    query = [vocab["common"], vocab["rare"]]
    expected = {doc: sum(bm25(t, w, dl) for t, w in zip(ids, ws) if t in query) for doc, dl, ids, ws in rows if set(ids) & set(query)}
    got = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE('common rare') LIMIT 5000")
    assert {r.id for r in got} == set(expected) and len(got) == len(expected)
    assert all(r.score == pytest.approx(expected[r.id], rel=1e-9) for r in got)
    assert [r.score for r in got] == sorted((r.score for r in got), reverse=True)


def _contents(db, name: str) -> tuple:
    """Everything ingest derives from the documents, by term text (ids may differ between loads)."""
    q = lambda text: db.conn.execute(text.format(c=f'sparsesql."{name}'), ()).fetchall()  # noqa: E731
    docs = q("SELECT d.id, d.doc_len, array_agg(v.term || ':' || t.w ORDER BY v.term) FROM {c}__docs\" AS d "
             "CROSS JOIN LATERAL unnest(d.term_ids, d.weights) AS t(term_id, w) JOIN {c}__vocab\" AS v ON v.term_id = t.term_id "
             "GROUP BY 1, 2 ORDER BY 1")
    postings = q('SELECT v.term, count(*), sum(p.tf) FROM {c}__postings" AS b CROSS JOIN LATERAL unnest(b.doc_ids, b.tfs) AS p(doc_id, tf) '
                 'JOIN {c}__vocab" AS v ON v.term_id = b.term_id GROUP BY 1 ORDER BY 1')
    vocab = q('SELECT term, df FROM {c}__vocab" WHERE df > 0 ORDER BY 1')
    return docs, postings, vocab


def test_a_long_load_analyses_in_a_worker_process_with_the_same_result(db, name, monkeypatch):
    """Past ANALYSIS_PROCESS_AFTER documents the BM25 analysis runs in a child interpreter: the
    collection holds exactly what an in-process load makes; a worker that dies mid-load hands
    the analysis back to this process and the load completes."""
    from sparsesql.db import ingest

    docs = _docs(1200)
    one = _make(db, name)
    one.add(docs, batch_size=1200)  # one batch: analysed in this process
    other_name = name + "_w"
    other = _make(db, other_name)
    monkeypatch.setattr(ingest, "ANALYSIS_PROCESS_AFTER", 300)
    workers = []
    original = ingest._worker_analyser
    monkeypatch.setattr(ingest, "_worker_analyser", lambda stack: workers.append(original(stack)) or workers[-1])

    def killing():
        for i, doc in enumerate(docs):
            if i == 900 and workers:
                workers[0].proc.kill()  # the worker dies with batches still to analyse
            yield doc

    report = other.add(killing(), batch_size=100)
    assert workers and isinstance(workers[0], ingest.AnalysisProcess)
    assert workers[0].proc is None  # it was noticed, and closed
    assert report.added == 1200 and _contents(db, name) == _contents(db, other_name)
    assert_exact_stats(db, other_name)
    db.drop_collection(other_name)


def _index_oid(db, index: str) -> int | None:
    return db.conn.execute("SELECT to_regclass(%s)::oid", (f"sparsesql.{index}",)).fetchone()[0]


def test_a_bulk_load_holds_what_batch_by_batch_loads_make(db, name, monkeypatch):
    """Bulk batches of several chunks form their postings once, at the batch's end: the
    collection holds exactly what a load in small batches makes, blocks well formed, statistics
    exact; a document sent twice in one batch (changed) and one changed from an earlier load are
    updates, with their old postings taken out."""
    from sparsesql.db import ingest

    monkeypatch.setattr(ingest, "CHUNK", 40)  # batches of 300 in chunks of 38 (8 a batch)
    first = _docs(700)
    # new documents, changed ones of the first load, then the new ones again, changed: in one
    # batch, chunks apart
    second = [*_docs(30, start=800), *_docs(50, start=100, word="cherry"), *_docs(30, start=800, word="plum")]
    small = _make(db, name)
    small.add(first, batch_size=64)
    small.add(second, batch_size=64)
    other = name + "_bulk"
    bulk = _make(db, other)
    assert bulk.add(first, bulk=True, batch_size=300).added == 700
    report = bulk.add(second, bulk=True, batch_size=300)
    assert (report.added, report.updated, report.unchanged) == (30, 80, 0)
    assert _contents(db, name) == _contents(db, other)
    assert_exact_stats(db, other)
    assert bulk.get("d805").title == "plum number 805" and bulk.get("d120").title == "cherry number 120"
    ranked = lambda n: [(r.id, round(r.score, 9)) for r in db.query(f"SELECT id, score FROM {n} SEARCH SPARSE('cherry plum pie') LIMIT 50")]  # noqa: E731
    assert ranked(name) == ranked(other)
    db.drop_collection(other)


def test_a_bulk_load_stopped_by_a_bad_document_keeps_the_chunks_before_it(db, name, monkeypatch):
    """A refused document ends the load; the chunks of its batch written before it commit, with
    their postings formed, and running the load again (fixed) adds only the rest."""
    from sparsesql.db import ingest

    monkeypatch.setattr(ingest, "CHUNK", 25)
    coll = _make(db, name)
    docs = _docs(200)
    docs[130]["vector"] = [float("nan")] * DIM
    with pytest.raises(sparsesql.IngestError, match=r"document 131 \(id 'd130'\).*NaN"):
        coll.add(docs, bulk=True, batch_size=100)
    assert coll.count() == 125  # the first batch, and the second's chunks before the bad one's
    assert_exact_stats(db, name)
    docs[130]["vector"] = [1.0] * DIM
    report = coll.add(docs, bulk=True)
    assert (report.added, report.unchanged) == (75, 125)
    assert_exact_stats(db, name)


def test_a_first_bulk_load_builds_the_vector_index_at_its_end(db, name):
    """An index made on an empty collection's vectors (HNSW here) is dropped for a first bulk load
    and built again over the loaded rows; a later bulk load into the filled collection keeps it."""
    coll = _make(db, name)
    index = f"{name}_hnsw"
    db.conn.execute(f'CREATE INDEX "{index}" ON sparsesql."{name}__dense" USING hnsw (embedding vector_cosine_ops)')
    before = _index_oid(db, index)
    coll.add(_docs(300), bulk=True)
    rebuilt = _index_oid(db, index)
    assert rebuilt is not None and rebuilt != before
    assert "deferred_indexes" not in coll.info.extra
    coll.add(_docs(100, start=300), bulk=True)
    assert _index_oid(db, index) == rebuilt
    assert coll.count() == 400


def test_an_interrupted_first_bulk_load_leaves_its_index_to_the_next(db, name):
    """Interrupted between batches, a first bulk load leaves the index it deferred recorded in
    the catalog; the next bulk load (the same input again) builds it at its end."""
    coll = _make(db, name)
    index = f"{name}_hnsw"
    db.conn.execute(f'CREATE INDEX "{index}" ON sparsesql."{name}__dense" USING hnsw (embedding vector_cosine_ops)')
    docs = _docs(300)

    def interrupted():
        for i, doc in enumerate(docs):
            if i == 250:
                raise KeyboardInterrupt("stopped")
            yield doc

    with pytest.raises(KeyboardInterrupt):
        coll.add(interrupted(), bulk=True, batch_size=100)
    assert coll.count() == 200 and _index_oid(db, index) is None  # two whole batches; the third's 50 were still being read
    assert [d.startswith(f'CREATE INDEX "{index}"') or d.startswith(f"CREATE INDEX {index}") for d in coll.info.extra["deferred_indexes"]] == [True]
    report = coll.add(docs, bulk=True)
    assert (report.added, report.unchanged) == (100, 200)
    assert _index_oid(db, index) is not None and "deferred_indexes" not in coll.info.extra
    assert_exact_stats(db, name)
