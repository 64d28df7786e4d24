"""The sparsesql PostgreSQL extension, called over a plain psycopg connection as psql would call it.

Acceptance (CISI, every query): the top 10 of bm25_search, dense_search and hybrid_search (auto,
the default, minmax and rrf) are the dialect's SPARSE, DENSE and HYBRID top 10 (the bare HYBRID,
linear(alpha => 0.5) and rrf(k => 60)), ids in order and scores within 1e-9 relative; on a
hand-made collection, an exhaustive BM25 list's floor and the adaptive weights are the dialect's.
Also: sparsesql.analyze equals the Python analyzer token for token on every CISI query and
document; CREATE EXTENSION before or after sparsesql's catalog, updates up to 0.5 and back to 0.4,
DROP EXTENSION keeps the data; the plain-SQL fallback creates the same functions and drop() removes
them all; errors are clear; injection payloads change nothing; rights are the caller's; every
example of docs/extension.md runs and shows what it returns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import psycopg
import pytest
import Stemmer
from click.testing import CliRunner
from psycopg.pq import ExecStatus

import sparsesql
from sparsesql import extension
from sparsesql.analysis import STOPWORDS_EN, analyze
from sparsesql.cli.main import cli
from sparsesql.db.ingest_validate import document_text
from sparsesql.encoders.dense import load_dense_encoder
from sparsesql.eval.beir import load_corpus, load_queries
from sparsesql.eval.run import load_beir
from sparsesql.retrieval.dense import query_vector
from tests.conftest import REPO, beir_dir, fresh_database
from tests.test_access import role_dsn
from tests.test_injection import PAYLOADS, fingerprint

DOC = REPO / "docs" / "extension.md"
SEARCHES = {
    "sparse": ("SPARSE(:q)", "SELECT id, score FROM sparsesql.bm25_search(%(c)s, %(q)s, 10)"),
    "dense": ("DENSE(:v)", "SELECT id, score FROM sparsesql.dense_search(%(c)s, %(v)s::vector, 10)"),
    "hybrid_rrf": (
        "HYBRID(SPARSE(:q), DENSE(:v), fusion => rrf(k => 60))",
        "SELECT id, score FROM sparsesql.hybrid_search(%(c)s, %(q)s, %(v)s::vector, 10, fusion => 'rrf')",
    ),
    "hybrid_auto": (
        "HYBRID(SPARSE(:q), DENSE(:v))",
        "SELECT id, score FROM sparsesql.hybrid_search(%(c)s, %(q)s, %(v)s::vector, 10)",
    ),
    "hybrid_minmax": (
        "HYBRID(SPARSE(:q), DENSE(:v), fusion => linear(alpha => 0.5))",
        "SELECT id, score FROM sparsesql.hybrid_search(%(c)s, %(q)s, %(v)s::vector, 10, fusion => 'minmax')",
    ),
}


def vector_text(v) -> str:
    """pgvector's text form; repr of each float32 component reads back to the same bits."""
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def our_functions(conn: psycopg.Connection) -> list[tuple[str, bool]]:
    """(signature, belongs to the extension) of every function the scripts define, as present now."""
    return conn.execute(
        "SELECT p.oid::regprocedure::text, EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass "
        "AND d.objid = p.oid AND d.deptype = 'e') FROM pg_proc p WHERE p.pronamespace = 'sparsesql'::regnamespace "
        "AND p.proname = ANY(%s) ORDER BY 1",
        (extension.function_names(),),
    ).fetchall()


@pytest.fixture(scope="module")
def ext(dsn, session_db):
    """A plain psycopg connection to the test database, with the extension created."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not extension.available(conn):
            pytest.skip("the server has no sparsesql extension files (run sparsesql install-extension)")
        had = extension.installed_version(conn)
        assert extension.create(conn) == "extension"
        assert extension.installed_version(conn) == extension.VERSION
        yield conn
        if had is None:
            extension.drop(conn)


@pytest.fixture(scope="module")
def cisi(session_db):
    """CISI loaded once (shared with test_quality), every query with a unit query vector."""
    folder = beir_dir("cisi")
    name = load_beir(session_db, folder)
    queries = load_queries(folder)
    encoded = load_dense_encoder("minilm-l6").encode(list(queries.values()))
    info = session_db.collection(name).info
    return name, folder, [(text, unit_fixed_point(info, v)) for text, v in zip(queries.values(), encoded)]


def unit_fixed_point(info, v: np.ndarray) -> np.ndarray:
    """A float32 unit vector that the dialect's own scaling to unit length leaves bit for bit
    unchanged, so the dialect and the extension search with the very same vector."""
    u = np.asarray(v, dtype=np.float32)
    for _ in range(20):
        nxt = query_vector(info, u).astype(np.float32)
        if np.array_equal(nxt, u):
            return u
        u = nxt
    raise AssertionError("scaling to unit length did not settle on a fixed point")


# ----------------------------------------------------------------------------- acceptance


@pytest.mark.parametrize("kind", list(SEARCHES))
def test_same_top10_as_the_dialect_on_every_cisi_query(ext, session_db, cisi, kind):
    name, _, queries = cisi
    dialect_search, function_sql = SEARCHES[kind]
    statement = f"SELECT id, score FROM {name} SEARCH {dialect_search} LIMIT 10"
    differences = []
    for text, v in queries:
        expected = [(r.id, r.score) for r in session_db.query(statement, q=text, v=v)]
        got = ext.execute(function_sql, {"c": name, "q": text, "v": vector_text(v)}).fetchall()
        same_ids = [i for i, _ in got] == [i for i, _ in expected]
        if not same_ids or not all(s == pytest.approx(e, rel=1e-9, abs=1e-12) for (_, s), (_, e) in zip(got, expected)):
            differences.append((text[:60], expected[:3], got[:3]))
    assert len(queries) == 76
    assert not differences, f"{len(differences)} of {len(queries)} queries differ, e.g. {differences[:2]}"


def test_analyze_equals_python_token_for_token_on_all_of_cisi(ext, session_db, cisi):
    name, folder, queries = cisi
    info = session_db.collection(name).info
    texts = [text for text, _ in queries]
    texts += [document_text(info, {"title": d["title"], "text": d["text"]}) for d in load_corpus(folder)]
    rows = ext.execute(
        "SELECT sparsesql.analyze(t) FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n", (texts,)
    ).fetchall()
    expected = [analyze(t) for t in texts]
    tokens = sum(len(e) for e in expected)
    same_tokens = sum(sum(a == b for a, b in zip(r[0], e)) for r, e in zip(rows, expected) if len(r[0]) == len(e))
    same_texts = sum(r[0] == e for r, e in zip(rows, expected))
    assert (len(texts), tokens) == (1536, tokens) and tokens > 100_000
    assert same_texts == len(texts) and same_tokens == tokens, (
        f"agreement: {same_texts}/{len(texts)} texts, {same_tokens}/{tokens} tokens"
    )


def test_stem_matches_pystemmer_where_postgres_english_stem_does_not(ext):
    words = [
        "biologists", "organization", "interval", "internal", "international", "emergence", "lateral",
        "universal", "generous", "communism", "arsenal", "pasted", "pasting", "dying", "lying", "vying",
        "evening", "inning", "innings", "canning", "proceed", "exceeded", "succeeding", "skis", "skies",
        "ugly", "early", "only", "news", "cosmos", "sky", "yelling", "saying", "played", "cry", "by",
        "hopping", "added", "filing", "generalizations", "relational", "controlling", "y", "yy", "ayy",
        "sayyid", "happily", "agreed", "feed", "bed", "caresses", "ties", "cries", "gas", "gaps", "kiwis",
    ]
    expected = Stemmer.Stemmer("english").stemWords(words)
    got = [r[0] for r in ext.execute("SELECT sparsesql.stem(w) FROM unnest(%s::text[]) WITH ORDINALITY u(w, n) ORDER BY n", (words,))]
    assert got == expected
    postgres = ext.execute("SELECT (ts_lexize('english_stem', w))[1] FROM unnest(%s::text[]) w", (["biologists", "organization"],)).fetchall()
    assert [r[0] for r in postgres] == ["biologist", "organ"]  # why sparsesql.stem exists


def test_analyze_agrees_beyond_ascii_where_the_collation_does(ext):
    text = "Café MÜLLER naïve façade Ελληνικά Москва 東京大学 STRASSE résumés Ørsted"
    assert ext.execute("SELECT sparsesql.analyze(%s)", (text,)).fetchone()[0] == analyze(text)
    stopwords = ext.execute("SELECT sparsesql.analyze(%s)", (" ".join(sorted(STOPWORDS_EN)),)).fetchone()[0]
    assert stopwords == [] and ext.execute("SELECT sparsesql.analyze('a I x')").fetchone()[0] == []


# ----------------------------------------------------------------------------- small collections


@pytest.fixture
def small(db, name):
    """A three-document collection with supplied 3-d vectors."""
    coll = db.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=3)
    coll.add([
        {"id": "a", "title": "sparse retrieval with learned weights", "year": 2021, "vector": [1, 0, 0]},
        {"id": "b", "title": "dense retrieval of passages", "year": 2020, "vector": [0, 1, 0]},
        {"id": "c", "title": "hybrid retrieval fuses sparse and dense", "year": 2023, "vector": [0.7, 0.7, 0.1]},
    ])
    return name


def test_every_form_of_sparse_query_and_rrf(ext, db, small):
    by_text = ext.execute("SELECT id, score FROM sparsesql.bm25_search(%s, 'Sparse retrievals', 3)", (small,)).fetchall()
    by_terms = ext.execute("SELECT id, score FROM sparsesql.bm25_search(%s, ARRAY['spars', 'retriev'], 3)", (small,)).fetchall()
    assert by_text == by_terms and [i for i, _ in by_text] == [r.id for r in db.query(f"SELECT id FROM {small} SEARCH SPARSE('sparse retrieval')")]
    ids = dict(ext.execute(f'SELECT term, term_id FROM sparsesql."{small}__vocab"').fetchall())
    vec = "{" + f"{ids['spars'] + 1}:2,{ids['retriev'] + 1}:1" + "}/1000000000"
    by_vector = ext.execute("SELECT id, score FROM sparsesql.bm25_search(%s, %s::sparsevec, 3)", (small, vec)).fetchall()
    dialect = db.query(f"SELECT id, score FROM {small} SEARCH SPARSE(:q)", q={"spars": 2.0, "retriev": 1.0})
    assert by_vector == [(r.id, r.score) for r in dialect]
    fused = ext.execute("SELECT doc_id, score FROM sparsesql.rrf(ARRAY[3, 1, 2], ARRAY[1, 3, 3, NULL], 60)").fetchall()
    assert fused == [(1, 1 / 62 + 1 / 61), (3, 1 / 61 + 1 / 62), (2, 1 / 63)]
    assert ext.execute("SELECT count(*) FROM sparsesql.rrf(NULL, ARRAY[]::bigint[])").fetchone()[0] == 0


def test_a_callers_search_path_changes_nothing(ext, small):
    expected = ext.execute("SELECT * FROM sparsesql.hybrid_search(%s, 'retrieval', '[1,0,0]')", (small,)).fetchall()
    ext.execute("SET search_path = pg_catalog")
    try:
        assert ext.execute("SELECT * FROM sparsesql.hybrid_search(%s, 'retrieval', '[1,0,0]')", (small,)).fetchall() == expected
    finally:
        ext.execute("RESET search_path")


ANIMALS = [
    ("z1", "zebra stripes in the savanna", [0.9, 0.2, 0.1]),
    ("z2", "a zebra crossing near the station", [0.1, 0.3, 0.9]),
    ("n1", "lions hunt at night", [0.8, 0.5, 0.2]),
    ("n2", "elephants remember water", [0.2, 0.9, 0.3]),
    ("n3", "giraffes eat leaves", [0.5, 0.5, 0.5]),
    ("n4", "river crossing by boat", [0.1, 0.1, 1.0]),
    ("n5", "the savanna at dawn", [0.7, 0.1, 0.6]),
    ("n6", "night trains and stations", [0.3, 0.7, 0.6]),
    ("n7", "water for the herd", [0.6, 0.8, 0.1]),
    ("n8", "leaves fall in autumn", [0.4, 0.2, 0.8]),
]


@pytest.fixture
def animals(db, name):
    """Ten documents; 'zebra' occurs in two of them, 'stripes' in one, 'unicorn' in none."""
    coll = db.create_collection(name, {"title": "text"}, dense="none", dim=3)
    coll.add([{"id": i, "title": t, "vector": v} for i, t, v in ANIMALS])
    return name


def test_hybrid_floors_an_exhaustive_bm25_list_and_weighs_by_peakedness_as_the_dialect(ext, db, animals):
    """A BM25 list shorter than the depth holds every matching document: it scales from 0 (a
    non-match's score), a document it lacks gets 0, and 'auto' weighs each list by 1 - the mean of
    its scaled scores over the longer list's depth (the BM25 list's missing documents count at 0).
    Worked out here from the two lists, and compared with the dialect, for 'auto' and 'minmax',
    exhaustive or not, equal scores and no match at all."""
    v = unit_fixed_point(db.collection(animals).info, np.array([0.3, 0.8, 0.5]))
    vec = vector_text(v)
    sparse = ext.execute("SELECT doc_id, id, score FROM sparsesql.bm25_search(%s, 'zebra stripes', 200)", (animals,)).fetchall()
    dense = ext.execute("SELECT doc_id, id, score FROM sparsesql.dense_search(%s, %s::vector, 200)", (animals, vec)).fetchall()
    assert [i for _, i, _ in sparse] == ["z1", "z2"] and len(dense) == 10  # 2 < 200 candidates: exhaustive
    hi = sparse[0][2]
    s = {doc: x / hi for doc, _, x in sparse}  # from the floor 0, not from the weaker match
    lo, top = min(x for *_, x in dense), max(x for *_, x in dense)
    d = {doc: (x - lo) / (top - lo) for doc, _, x in dense}
    p_s, p_d = 1 - sum(s.values()) / len(d), 1 - np.mean(list(d.values()))  # both over the dense list's 10
    assert 0 < s[sparse[1][0]] < 1 and 0 < p_s and 0 < p_d
    for weights, fusion in (((p_s / (p_s + p_d), p_d / (p_s + p_d)), "auto"), ((0.5, 0.5), "minmax")):
        expected = sorted(((doc, weights[0] * s.get(doc, 0.0) + weights[1] * d[doc]) for doc in d), key=lambda r: (-r[1], r[0]))
        got = ext.execute("SELECT doc_id, score FROM sparsesql.hybrid_search(%s, 'zebra stripes', %s::vector, 10, fusion => %s)", (animals, vec, fusion)).fetchall()
        assert [doc for doc, _ in got] == [doc for doc, _ in expected], fusion
        assert all(g == pytest.approx(e, rel=1e-12) for (_, g), (_, e) in zip(got, expected)), fusion

    dialect_fusion = {"auto": "", "minmax": ", fusion => linear(alpha => 0.5)"}
    cases = [  # query, k, candidates: depth = greatest(candidates, k)
        ("zebra stripes", 10, None),  # exhaustive
        ("zebra stripes", 2, 1),  # 2 matches at depth 2: not exhaustive, the weaker scales to 0
        ("zebra", 10, None),  # equal scores, exhaustive: 1 each, absent 0
        ("zebra", 2, 1),  # equal scores, not exhaustive: 1 each, absent 1
        ("unicorn", 5, None),  # no match: an empty list, weight 0
        ("zebra savanna", 4, 3),
    ]
    for query, k, candidates in cases:
        for fusion, extra in dialect_fusion.items():
            extra += f", candidates => {candidates}" if candidates else ""
            expected = [(r.id, r.score) for r in db.query(f"SELECT id, score FROM {animals} SEARCH HYBRID(SPARSE(:q), DENSE(:v){extra}) LIMIT {k}", q=query, v=v)]
            got = ext.execute(
                "SELECT id, score FROM sparsesql.hybrid_search(%s, %s, %s::vector, %s, fusion => %s, candidates => coalesce(%s, 200))",
                (animals, query, vec, k, fusion, candidates),
            ).fetchall()
            assert len(got) == k and [i for i, _ in got] == [i for i, _ in expected], (query, k, candidates, fusion)
            assert all(g == pytest.approx(e, rel=1e-12, abs=1e-15) for (_, g), (_, e) in zip(got, expected)), (query, k, candidates, fusion, got, expected)
    default = ext.execute("SELECT id, score FROM sparsesql.hybrid_search(%s, 'zebra stripes', %s::vector)", (animals, vec)).fetchall()
    assert default == ext.execute("SELECT id, score FROM sparsesql.hybrid_search(%s, 'zebra stripes', %s::vector, 10, 'auto', 200)", (animals, vec)).fetchall()


def test_errors_name_what_is_wrong(ext, small):
    cases = [
        ("SELECT * FROM sparsesql.bm25_search('no_such', 'x')", psycopg.errors.UndefinedObject, "sparsesql.bm25_search: collection 'no_such' does not exist"),
        ("SELECT * FROM sparsesql.dense_search('no_such', '[1,0,0]')", psycopg.errors.UndefinedObject, "collection 'no_such' does not exist"),
        ("SELECT * FROM sparsesql.hybrid_search('no_such', 'x', '[1,0,0]')", psycopg.errors.UndefinedObject, "sparsesql.hybrid_search: collection 'no_such' does not exist"),
        ("SELECT * FROM sparsesql.bm25_search(NULL, 'x')", psycopg.errors.NullValueNotAllowed, "collection must not be NULL"),
        (f"SELECT * FROM sparsesql.bm25_search('{small}', NULL::text)", psycopg.errors.NullValueNotAllowed, "query must not be NULL"),
        (f"SELECT * FROM sparsesql.bm25_search('{small}', NULL::text[])", psycopg.errors.NullValueNotAllowed, "terms must not be NULL"),
        (f"SELECT * FROM sparsesql.bm25_search('{small}', ARRAY['a', NULL])", psycopg.errors.NullValueNotAllowed, "terms must not contain NULL (element 2)"),
        (f"SELECT * FROM sparsesql.bm25_search('{small}', NULL::sparsevec)", psycopg.errors.NullValueNotAllowed, "query must not be NULL"),
        (f"SELECT * FROM sparsesql.bm25_search('{small}', '{{1:-1}}/10'::sparsevec)", psycopg.errors.InvalidParameterValue, "weights must be >= 0"),
        (f"SELECT * FROM sparsesql.dense_search('{small}', NULL)", psycopg.errors.NullValueNotAllowed, "query vector must not be NULL"),
        (f"SELECT * FROM sparsesql.hybrid_search('{small}', NULL, '[1,0,0]')", psycopg.errors.NullValueNotAllowed, "query must not be NULL"),
        (f"SELECT * FROM sparsesql.hybrid_search('{small}', 'x', NULL)", psycopg.errors.NullValueNotAllowed, "query vector must not be NULL"),
        (f"SELECT * FROM sparsesql.dense_search('{small}', '[1,0]')", psycopg.errors.DataException, f"query vector has 2 dimensions; collection '{small}' stores 3"),
        (f"SELECT * FROM sparsesql.dense_search('{small}', '[0,0,0]')", psycopg.errors.DataException, "all zeros"),
        (f"SELECT * FROM sparsesql.dense_search('{small}', '[NaN,0,0]')", psycopg.errors.DataException, "NaN not allowed in vector"),
        (f"SELECT * FROM sparsesql.bm25_search('{small}', 'x', 0)", psycopg.errors.InvalidParameterValue, "k must be between 1 and 100000, got 0"),
        (f"SELECT * FROM sparsesql.bm25_search('{small}', 'x', 100001)", psycopg.errors.InvalidParameterValue, "got 100001"),
        (f"SELECT * FROM sparsesql.dense_search('{small}', '[1,0,0]', NULL)", psycopg.errors.InvalidParameterValue, "k must be between 1 and 100000, got NULL"),
        (f"SELECT * FROM sparsesql.hybrid_search('{small}', 'x', '[1,0,0]', candidates => 0)", psycopg.errors.InvalidParameterValue, "candidates must be between"),
        (f"SELECT * FROM sparsesql.hybrid_search('{small}', 'x', '[1,0,0]', fusion => 'max')", psycopg.errors.InvalidParameterValue, "fusion must be 'auto', 'minmax' or 'rrf', got 'max'"),
        ("SELECT * FROM sparsesql.rrf(ARRAY[1], ARRAY[2], -1)", psycopg.errors.InvalidParameterValue, "sparsesql.rrf: k must be between 0 and 1000000"),
    ]
    for statement, error, message in cases:
        with pytest.raises(error) as caught:
            ext.execute(statement)
        assert message in str(caught.value), statement


def test_precomputed_collections_take_terms_not_text(ext, db, name):
    coll = db.create_collection(name, {"body": "text"}, sparse="precomputed", dense="none", dim=2)
    coll.add([{"id": "x", "body": "-", "sparse": {"tok_a": 0.5, "tok_b": 2.0}, "vector": [1, 0]},
              {"id": "y", "body": "-", "sparse": {"tok_b": 1.0}, "vector": [0, 1]}])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="stores precomputed sparse vectors"):
        ext.execute("SELECT * FROM sparsesql.bm25_search(%s, 'tok_a')", (name,))
    got = ext.execute("SELECT id, score FROM sparsesql.bm25_search(%s, ARRAY['tok_b', 'tok_a'])", (name,)).fetchall()
    expected = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q)", q={"tok_b": 1, "tok_a": 1})
    assert got == [(r.id, r.score) for r in expected] == [("x", 2.5), ("y", 1.0)]


def test_sparse_search_serves_a_learned_field_as_the_dialect_does(ext, db, name, tiny_splade):
    """A BM25 + learned (tiny SPLADE model) collection: the model's query encoding as jsonb and
    the query's tokens as text[] (inference-free) give the dialect's documents and scores, bit for
    bit; a collection made before sparse fields (no list in its settings) still answers."""
    from sparsesql.encoders.sparse import load_sparse_encoder

    texts = ["sparse retrieval with term weight", "dense vector search", "hybrid fusion of sparse and dense rank",
             "query expansion for sparse search", "model weight and vector index"]
    coll = db.create_collection(name, {"body": "text"}, sparse=["bm25", "splade"], sparse_model=str(tiny_splade), dense="none", dim=2)
    coll.add([{"id": f"t{i}", "body": t, "vector": [1, i]} for i, t in enumerate(texts)])
    encoder = load_sparse_encoder(tiny_splade)
    for query in ("sparse search", "dense vector fusion rank", "query"):
        weights = encoder.encode([query])[0]
        got = ext.execute("SELECT id, score FROM sparsesql.sparse_search(%s, %s::jsonb, 4, field => 'splade')", (name, json.dumps(weights))).fetchall()
        dialect = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q, field => 'splade') LIMIT 4", q=query)
        assert got == [(r.id, r.score) for r in dialect] and got
        got = ext.execute("SELECT id, score FROM sparsesql.sparse_search(%s, %s::text[], 4, 'SPLADE')", (name, encoder.tokens(query))).fetchall()
        dialect = db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q, field => 'splade', mode => inference_free) LIMIT 4", q=query)
        assert got == [(r.id, r.score) for r in dialect] and got
        got = ext.execute("SELECT id, score FROM sparsesql.sparse_search(%s, %s, 4)", (name, query)).fetchall()
        assert got == [(r.id, r.score) for r in db.query(f"SELECT id, score FROM {name} SEARCH SPARSE(:q) LIMIT 4", q=query)]
    cases = [
        (f"SELECT * FROM sparsesql.sparse_search('{name}', 'x', field => 'colbert')", psycopg.errors.UndefinedObject,
         f"sparsesql.sparse_search: collection '{name}' has no sparse field 'colbert' (sparse fields: bm25, splade)"),
        (f"SELECT * FROM sparsesql.sparse_search('{name}', 'x', field => 'splade')", psycopg.errors.InvalidParameterValue,
         "sparse field 'splade' of collection"),
        (f"SELECT * FROM sparsesql.sparse_search('{name}', '{{\"x\": -1}}'::jsonb)", psycopg.errors.InvalidParameterValue, "weights must be numbers >= 0 (term 'x')"),
        (f"SELECT * FROM sparsesql.sparse_search('{name}', '{{\"x\": \"a\"}}'::jsonb)", psycopg.errors.InvalidParameterValue, "weights must be numbers >= 0"),
        (f"SELECT * FROM sparsesql.sparse_search('{name}', '[1]'::jsonb)", psycopg.errors.InvalidParameterValue, "query must be a non-empty JSON object"),
        (f"SELECT * FROM sparsesql.sparse_search('{name}', ARRAY['a', NULL])", psycopg.errors.NullValueNotAllowed, "tokens must not be NULL or contain NULL"),
        (f"SELECT * FROM sparsesql.sparse_search('{name}', 'x', 0)", psycopg.errors.InvalidParameterValue, "k must be between 1 and 100000"),
    ]
    for statement, error, message in cases:
        with pytest.raises(error) as caught:
            ext.execute(statement)
        assert message in str(caught.value), statement
    old = db.create_collection(f"{name}_old", {"body": "text"}, dense="none", dim=2)
    old.add([{"id": f"t{i}", "body": t, "vector": [1, i]} for i, t in enumerate(texts)])
    expected = ext.execute("SELECT id, score FROM sparsesql.sparse_search(%s, 'sparse search')", (f"{name}_old",)).fetchall()
    ext.execute("UPDATE sparsesql.collections SET settings = settings - 'sparse_fields' WHERE name = %s", (f"{name}_old",))
    assert ext.execute("SELECT id, score FROM sparsesql.sparse_search(%s, 'sparse search', field => 'bm25')", (f"{name}_old",)).fetchall() == expected
    assert [(r.id, r.score) for r in db.query(f"SELECT id, score FROM {name}_old SEARCH SPARSE('sparse search')")] == expected
    db.drop_collection(f"{name}_old")


def test_injection_payloads_as_names_and_values_change_nothing(ext, db, small):
    db.conn.execute("CREATE TABLE IF NOT EXISTS public.canary (x int)")
    before = fingerprint(db, small)
    for payload in PAYLOADS:
        for statement in (
            "SELECT * FROM sparsesql.bm25_search(%s, 'retrieval')",
            "SELECT * FROM sparsesql.dense_search(%s, '[1,0,0]')",
            "SELECT * FROM sparsesql.hybrid_search(%s, 'retrieval', '[1,0,0]', fusion => 'rrf')",
        ):
            with pytest.raises(psycopg.Error) as caught:
                ext.execute(statement, (payload,))
            if "\x00" not in payload:  # psycopg itself refuses a NUL before sending
                assert isinstance(caught.value, psycopg.errors.UndefinedObject) and "does not exist" in str(caught.value)
        if "\x00" not in payload:
            ext.execute("SELECT * FROM sparsesql.bm25_search(%s, %s)", (small, payload)).fetchall()
            ext.execute("SELECT * FROM sparsesql.bm25_search(%s, ARRAY[%s])", (small, payload)).fetchall()
            ext.execute("SELECT * FROM sparsesql.hybrid_search(%s, %s, '[1,0,0]')", (small, payload)).fetchall()
    for quoted in ('"quoted"', f'"{small}"', f"{small}__docs", f"sparsesql.{small}", f"{small}; DROP TABLE public.canary"):
        with pytest.raises(psycopg.errors.UndefinedObject):
            ext.execute("SELECT * FROM sparsesql.bm25_search(%s, 'retrieval')", (quoted,))
    assert ext.execute("SELECT count(*) FROM sparsesql.bm25_search(%s, 'retrieval')", (small.upper(),)).fetchone()[0] == 3
    assert fingerprint(db, small) == before


@pytest.fixture
def roles(db):
    names = ("sq_ext_reader", "sq_ext_nobody")
    for role in names:
        if db.conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            db.conn.execute(f"DROP OWNED BY {role}")
        db.conn.execute(f"DROP ROLE IF EXISTS {role}")
        db.conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    yield names
    for role in names:
        db.conn.execute(f"DROP OWNED BY {role}")
        db.conn.execute(f"DROP ROLE {role}")


def test_functions_run_with_the_callers_rights(ext, db, dsn, small, roles):
    reader, nobody = roles
    db.grant(reader, "reader")
    db.conn.execute(f'ALTER TABLE sparsesql."{small}__docs" ENABLE ROW LEVEL SECURITY')
    db.conn.execute(f"CREATE POLICY hide_b ON sparsesql.\"{small}__docs\" FOR SELECT TO {reader} USING (id <> 'b')")
    with psycopg.connect(role_dsn(dsn, reader), autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM sparsesql.hybrid_search(%s, 'retrieval', '[0,1,0]')", (small,))]
        assert sorted(ids) == ["a", "c"]  # row-level security hides b from this role
    owner = [r[0] for r in ext.execute("SELECT id FROM sparsesql.hybrid_search(%s, 'retrieval', '[0,1,0]')", (small,))]
    assert sorted(owner) == ["a", "b", "c"]
    db.conn.execute(f"GRANT USAGE ON SCHEMA sparsesql TO {nobody}")
    db.conn.execute(f"GRANT SELECT ON sparsesql.collections TO {nobody}")
    with psycopg.connect(role_dsn(dsn, nobody), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for table {small}__"):
            conn.execute("SELECT * FROM sparsesql.bm25_search(%s, 'retrieval')", (small,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for table {small}__"):
            conn.execute("SELECT * FROM sparsesql.dense_search(%s, '[1,0,0]')", (small,))
    db.conn.execute(f"REVOKE USAGE ON SCHEMA sparsesql FROM {nobody}")
    with psycopg.connect(role_dsn(dsn, nobody), autocommit=True) as conn, pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="permission denied for schema sparsesql"
    ):
        conn.execute("SELECT * FROM sparsesql.bm25_search(%s, 'retrieval')", (small,))
    functions = ext.execute(
        "SELECT count(*) FILTER (WHERE prosecdef) FROM pg_proc WHERE pronamespace = 'sparsesql'::regnamespace"
    ).fetchone()[0]
    assert functions == 0  # no SECURITY DEFINER anywhere


# ----------------------------------------------------------------------------- install, versions, fallback

DOCS = [
    {"id": "a", "title": "sparse retrieval", "vector": [1, 0, 0]},
    {"id": "b", "title": "dense retrieval", "vector": [0, 1, 0]},
]


def test_versions_update_and_drop_keeps_the_data(dsn):
    with fresh_database(dsn, "sparsesql_ext_versions") as fresh, psycopg.connect(fresh, autocommit=True) as conn:
        # before sparsesql's catalog exists: the extension makes the schema, its functions say what is missing
        conn.execute("CREATE EXTENSION sparsesql VERSION '0.1' CASCADE")
        with pytest.raises(psycopg.errors.UndefinedTable, match="sparsesql.collections"):
            conn.execute("SELECT * FROM sparsesql.bm25_search('papers', 'x')")
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("SELECT * FROM sparsesql.hybrid_search('papers', 'x', '[1,0,0]')")
        # sparsesql's migrations run into the existing schema and bring the extension to the
        # version that reads their posting layout (0.1 -> 0.2 -> 0.3)
        with sparsesql.connect(fresh) as db:
            assert extension.installed_version(conn) == "0.3"
            db.create_collection("papers", {"title": "text"}, dense="none", dim=3).add(DOCS)
            assert [r[0] for r in conn.execute("SELECT id FROM sparsesql.bm25_search('papers', 'sparse retrieval')")] == ["a", "b"]
            rrf = "SELECT id, score FROM papers SEARCH HYBRID(SPARSE('dense'), DENSE(:v), fusion => rrf(k => 60)) LIMIT 2"
            got = conn.execute("SELECT id, score FROM sparsesql.hybrid_search('papers', 'dense', '[0,1,0]', 2, fusion => 'rrf')").fetchall()
            assert got == [(r.id, r.score) for r in db.query(rrf, v=[0, 1, 0])]
            # 0.5: the dialect's default HYBRID (adaptive weights, the floor of an exhaustive BM25 list)
            conn.execute("ALTER EXTENSION sparsesql UPDATE TO '0.5'")
            for fusion, dialect in (("auto", ""), ("minmax", ", fusion => linear(alpha => 0.5)")):
                got = conn.execute("SELECT id, score FROM sparsesql.hybrid_search('papers', 'dense', '[0,1,0]', 2, fusion => %s)", (fusion,)).fetchall()
                expected = db.query(f"SELECT id, score FROM papers SEARCH HYBRID(SPARSE('dense'), DENSE(:v){dialect}) LIMIT 2", v=[0, 1, 0])
                assert got == [(r.id, r.score) for r in expected], fusion
            default = conn.execute("SELECT id, score FROM sparsesql.hybrid_search('papers', 'dense', '[0,1,0]', 2)").fetchall()
            assert default == [(r.id, r.score) for r in db.query("SELECT id, score FROM papers SEARCH HYBRID(SPARSE('dense'), DENSE(:v)) LIMIT 2", v=[0, 1, 0])]
            arguments = "SELECT pg_get_function_arguments('sparsesql.hybrid_search(text, text, vector, int, text, int, int)'::regprocedure)"
            assert "fusion text DEFAULT 'auto'::text, candidates integer DEFAULT 200" in conn.execute(arguments).fetchone()[0]
            # and back to 0.4's hybrid_search: minmax without a floor by default, 'auto' unknown
            conn.execute("ALTER EXTENSION sparsesql UPDATE TO '0.4'")
            assert extension.installed_version(conn) == "0.4"
            assert "fusion text DEFAULT 'minmax'::text, candidates integer DEFAULT 100" in conn.execute(arguments).fetchone()[0]
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="fusion must be 'minmax' or 'rrf', got 'auto'"):
                conn.execute("SELECT * FROM sparsesql.hybrid_search('papers', 'dense', '[0,1,0]', fusion => 'auto')")
            old = conn.execute("SELECT id, score FROM sparsesql.hybrid_search('papers', 'dense', '[0,1,0]', 2)").fetchall()
            assert old == [("b", 1.0), ("a", 0.5)]  # one match: scaled to 1 on its own, the other document gets 1 too
            assert default == [("b", 1.0), ("a", 0.0)]  # 0.5: from the floor 0, the other document gets 0
            conn.execute("ALTER EXTENSION sparsesql UPDATE TO '0.6'")
            # 0.6 reads distributed collections too (tests/test_cluster.py); on one node 0.5 and 0.6 agree
            sparse_dense = ("SELECT (SELECT array_agg(id || score) FROM sparsesql.sparse_search('papers', 'sparse retrieval')), "
                            "(SELECT array_agg(id || score) FROM sparsesql.dense_search('papers', '[0,1,0]'))")
            now = conn.execute(sparse_dense).fetchone()
            conn.execute("ALTER EXTENSION sparsesql UPDATE TO '0.5'")
            assert conn.execute(sparse_dense).fetchone() == now and not any("_sharded" in signature for signature, _ in our_functions(conn))
            # 0.7: 'auto' measures each list's peakedness over the same depth. One BM25 match (b)
            # against three dense rows scaled 1, 0.8, 0 (peakedness 0.4): over its own row the BM25
            # list is flat (0) and the dense list takes all the weight; counted over three rows,
            # the two it lacks at 0, its peakedness is 2/3, its weight 2/3 / (2/3 + 0.4) = 0.625.
            db.collection("papers").add([{"id": "c", "title": "retrieval", "vector": [0.6, 0.8, 0]}])
            auto = "SELECT id, score FROM sparsesql.hybrid_search('papers', 'dense', '[0,1,0]', 3)"
            assert conn.execute(auto).fetchall() == [("b", 1.0), ("c", pytest.approx(0.8)), ("a", 0.0)]  # 0.6: weights 0 and 1
            conn.execute("ALTER EXTENSION sparsesql UPDATE")
            assert extension.installed_version(conn) == extension.VERSION == "0.7"
            now = conn.execute(auto).fetchall()
            assert now == [("b", pytest.approx(1.0)), ("c", pytest.approx(0.375 * 0.8)), ("a", 0.0)]
            dialect = db.query("SELECT id, score FROM papers SEARCH HYBRID(SPARSE('dense'), DENSE(:v)) LIMIT 3", v=[0, 1, 0])
            assert now == [(r.id, pytest.approx(r.score, rel=1e-6, abs=1e-12)) for r in dialect]  # cosine from float32 vectors
            db.collection("papers").delete(["c"])
            paths = "SELECT path FROM pg_extension_update_paths('sparsesql') WHERE source = %s AND target = %s"
            assert conn.execute(paths, ("0.7", "0.2")).fetchone()[0] == "0.7--0.6--0.5--0.4--0.3--0.2"  # revision 0002's downgrade
            assert conn.execute(paths, ("0.1", "0.7")).fetchone()[0] == "0.1--0.2--0.3--0.4--0.5--0.6--0.7"
            conn.execute("DROP EXTENSION sparsesql")
            assert our_functions(conn) == []
            assert db.collection("papers").count() == 2
            assert [r.id for r in db.query("SELECT id FROM papers SEARCH SPARSE('dense')")] == ["b"]
            # and created afterwards, into the schema that now holds the catalog
            conn.execute("CREATE EXTENSION sparsesql")
            assert extension.installed_version(conn) == extension.VERSION


def test_plain_sql_fallback_creates_the_same_functions_and_drop_removes_them(dsn):
    with fresh_database(dsn, "sparsesql_ext_plain") as fresh, sparsesql.connect(fresh) as db, psycopg.connect(fresh, autocommit=True) as conn:
        db.create_collection("papers", {"title": "text"}, dense="none", dim=3).add(DOCS)
        path_before = conn.execute("SHOW search_path").fetchone()[0]
        with conn.transaction():
            extension._create_functions(conn)  # what create() does when the server lacks the files
            assert conn.execute("SHOW search_path").fetchone()[0] == path_before
        functions = our_functions(conn)
        assert len(functions) == 17 and not any(member for _, member in functions)
        assert extension.installed_version(conn) is None
        got = conn.execute("SELECT id, score FROM sparsesql.hybrid_search('papers', 'dense', '[0,1,0]', 2, fusion => 'rrf')").fetchall()
        expected = db.query("SELECT id, score FROM papers SEARCH HYBRID(SPARSE('dense'), DENSE(:v), fusion => rrf(k => 60)) LIMIT 2", v=[0, 1, 0])
        assert got == [(r.id, r.score) for r in expected]
        extension._create_functions(conn)  # again: replaces, does not clash
        conn.execute("CREATE VIEW public.uses_analyze AS SELECT sparsesql.analyze('x') AS terms")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            extension.drop(conn)
        assert len(our_functions(conn)) == 17  # a failed drop changes nothing
        conn.execute("DROP VIEW public.uses_analyze")
        extension.drop(conn)
        assert our_functions(conn) == []
        extension._create_functions(conn)
        assert extension.create(conn) == "extension"  # the files are there: plain functions become the extension
        assert len(our_functions(conn)) == 17 and all(member for _, member in our_functions(conn))
        extension.drop(conn)
        assert our_functions(conn) == [] and extension.installed_version(conn) is None
        assert db.collection("papers").count() == 2


def test_script_sql_is_the_chain_create_extension_runs():
    sql = extension.script_sql()
    assert "\\echo" not in sql and sql.index("FUNCTION sparsesql.stem(") < sql.index("FUNCTION sparsesql.hybrid_search(")
    assert extension.function_names() == sorted(
        ["_bm25", "_check_range", "_collection", "_field", "_sharded", "_sparse", "analyze", "bm25_search", "dense_search", "hybrid_search", "rrf", "sparse_search", "stem"]
    )
    control = (extension.folder() / "sparsesql.control").read_text()
    assert f"default_version = '{extension.VERSION}'" in control and "requires = 'vector'" in control


def test_install_files_copies_once_and_refuses_a_wrong_folder(tmp_path):
    (tmp_path / "extension").mkdir()
    paths = extension.install_files(tmp_path)
    assert sorted(p.name for p in paths) == sorted(p.name for p in extension.files())
    assert all(p.read_bytes() == (extension.folder() / p.name).read_bytes() for p in paths)
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert extension.install_files(tmp_path) == paths and [p.stat().st_mtime_ns for p in paths] == stamps
    with pytest.raises(sparsesql.ConfigError, match="pg_config --sharedir"):
        extension.install_files(tmp_path / "nowhere")


def test_the_embedded_server_has_the_files(dsn):
    folder = extension.embedded_sharedir() / "extension"
    assert all((folder / p.name).read_bytes() == p.read_bytes() for p in extension.files())


def test_cli_install_extension(tmp_path, dsn):
    runner = CliRunner(env={"SPARSESQL_DSN": None})
    (tmp_path / "extension").mkdir()
    result = runner.invoke(cli, ["install-extension", "--sharedir", str(tmp_path)])
    assert result.exit_code == 0 and f"installed sparsesql {extension.VERSION} into {tmp_path / 'extension'}" in result.output
    assert (tmp_path / "extension" / "sparsesql.control").exists()
    result = runner.invoke(cli, ["install-extension"])
    assert result.exit_code == 0 and str(extension.embedded_sharedir() / "extension") in result.output
    result = runner.invoke(cli, ["install-extension", "--print"])
    assert result.exit_code == 0 and result.output.startswith("BEGIN;") and result.output.rstrip().endswith("COMMIT;")
    assert "CREATE FUNCTION sparsesql.hybrid_search(" in result.output
    result = runner.invoke(cli, ["--dsn", dsn, "install-extension"])
    assert result.exit_code == 0 and "pg_config --sharedir" in result.output and "CREATE EXTENSION sparsesql" in result.output
    result = runner.invoke(cli, ["install-extension", "--sharedir", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_standalone_sql_runs_in_psql_style(dsn):
    """`sparsesql install-extension --print | psql` on a database without the files: one transaction."""
    with fresh_database(dsn, "sparsesql_ext_print") as fresh, sparsesql.connect(fresh) as db, psycopg.connect(fresh, autocommit=True) as conn:
        db.create_collection("papers", {"title": "text"}, dense="none", dim=3).add(DOCS)
        conn.execute(extension.standalone_sql())
        assert len(our_functions(conn)) == 17
        assert [r[0] for r in conn.execute("SELECT id FROM sparsesql.dense_search('papers', '[0,1,0]', 1)")] == ["b"]


# ----------------------------------------------------------------------------- docs/extension.md

_FENCE = re.compile(r"^```(\w+)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def doc_blocks(kind: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(DOC.read_text(encoding="utf-8")) if lang == kind]


def doc_statements(block: str) -> list[tuple[str, str | None]]:
    """(statement, the `-- returns: ...` line after it, if any) for each statement of a block."""
    out: list[tuple[str, str | None]] = []
    current: list[str] = []
    for line in block.splitlines():
        if line.startswith("-- returns:") and out:
            out[-1] = (out[-1][0], line[len("-- returns:"):].strip())
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append(("\n".join(current), None))
            current = []
    return out


@pytest.fixture
def articles(db):
    """The collection docs/extension.md's examples use, made from the page's own commands and data."""
    text = DOC.read_text(encoding="utf-8")
    create = re.search(r'sparsesql query "(CREATE COLLECTION articles [^"]*)"', text).group(1)
    db.drop_collection("articles", if_exists=True)
    db.query(create)
    db.collection("articles").add(json.loads(line) for line in doc_blocks("jsonl")[0].splitlines() if line.strip())
    yield "articles"
    db.drop_collection("articles", if_exists=True)


def test_every_example_of_the_extension_page_runs_and_shows_its_result(ext, articles):
    blocks = doc_blocks("sql")
    assert len(blocks) >= 8
    checked = 0
    for block in blocks:
        failing = block.lstrip().startswith("-- error")
        for statement, expected in doc_statements(block):
            result = ext.pgconn.exec_(statement.encode())  # text results, as psql prints them
            ok = result.status in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK)
            message = (result.error_message or b"").decode()
            assert ok != failing, f"{statement}\n-> {message or 'no error'}"
            if expected is not None:
                first_column = ", ".join(result.get_value(row, 0).decode() for row in range(result.ntuples))
                assert first_column == expected, statement
                checked += 1
    assert checked >= 8


def test_the_page_lists_every_function_and_version():
    text = DOC.read_text(encoding="utf-8")
    for function in extension.function_names():
        if not function.startswith("_"):
            assert f"sparsesql.{function}(" in text, function
    assert f"`VERSION` | the extension version this package ships (`\"{extension.VERSION}\"`)" in text
    assert Path(REPO / "README.md").read_text(encoding="utf-8").count("docs/extension.md") >= 1
