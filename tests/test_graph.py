"""The kNN graph: BUILD GRAPH equals brute force, adds and deletes keep it equal to a fresh build,
SHOW GRAPH describes it, and bad requests say what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

import sparsesql

DIM = 8


def vectors(n: int, seed: int = 7) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def docs(v: np.ndarray, start: int = 0) -> list[dict]:
    return [{"id": f"g{start + i}", "body": f"term{(start + i) % 5} shared", "vector": x.tolist()} for i, x in enumerate(v)]


def edges(db, name: str) -> dict[str, list[str]]:
    rows = db.conn.execute(
        f'SELECT s.id, d.id FROM sparsesql."{name}__graph" AS g JOIN sparsesql."{name}__docs" AS s ON s.doc_id = g.src '
        f'JOIN sparsesql."{name}__docs" AS d ON d.doc_id = g.dst ORDER BY s.id, g.similarity DESC, g.dst'
    ).fetchall()
    out: dict[str, list[str]] = {}
    for s, d in rows:
        out.setdefault(s, []).append(d)
    return out


def brute_force(ids: list[str], v: np.ndarray, k: int) -> dict[str, list[str]]:
    sims = (v.astype(np.float64) @ v.T.astype(np.float64)).astype(np.float32)
    np.fill_diagonal(sims, -np.inf)
    return {ids[i]: [ids[j] for j in np.argsort(-sims[i], kind="stable")[:k]] for i in range(len(ids))}


@pytest.fixture
def coll(db, name):
    c = db.create_collection(name, {"body": "text"}, dense="none", dim=DIM)
    c.add(docs(vectors(40)))
    return c


def test_build_graph_equals_brute_force(db, name, coll):
    rows = db.query(f"BUILD GRAPH ON {name} WITH (k => 5)")
    assert rows[0].edges == 40 * 5
    ids = [f"g{i}" for i in range(40)]
    got = edges(db, name)
    expected = brute_force(ids, vectors(40), 5)
    assert {s: set(d) for s, d in got.items()} == {s: set(d) for s, d in expected.items()}


def test_blocks_do_not_change_the_graph(db, name, coll):
    from sparsesql.graph import build

    build.build(db.conn, coll.info, 4, block=7)
    small_blocks = edges(db, name)
    build.build(db.conn, coll.info, 4)
    assert edges(db, name) == small_blocks


def test_adds_and_deletes_keep_the_graph_equal_to_a_fresh_build(db, name, coll):
    coll.build_graph(k=4)
    coll.add(docs(vectors(12, seed=99), start=40))  # new documents and reverse edges
    coll.delete([f"g{i}" for i in (3, 17, 41)])  # neighbours of the deleted find their next nearest
    coll.add([{"id": "g5", "body": "changed", "vector": vectors(1, seed=5)[0].tolist()}])  # an update
    maintained = edges(db, name)
    db.query(f"BUILD GRAPH ON {name} WITH (k => 4)")
    assert maintained == edges(db, name)
    assert len(maintained) == 40 + 12 - 3


def test_show_graph(db, name, coll):
    coll.build_graph(k=3)
    facts = {r.property: r.value for r in db.query(f"SHOW GRAPH {name}")}
    assert facts["k"] == 3 and facts["documents"] == 40 and facts["edges"] == 120
    assert facts["in_degree_min"] <= 3 <= facts["in_degree_max"]
    assert facts["components"] >= 1 and facts["largest_component"] <= 40


def test_dropping_the_collection_drops_its_graph(db, name, coll):
    coll.build_graph(k=2)
    db.drop_collection(name)
    assert db.conn.execute("SELECT to_regclass(%s)", (f'sparsesql."{name}__graph"',)).fetchone()[0] is None


@pytest.mark.parametrize(
    "statement, message",
    [
        ("BUILD GRAPH ON {name} WITH (k => 0)", "k => 0 is out of range"),
        ("BUILD GRAPH ON {name} WITH (degree => 3)", "unknown argument 'degree' for BUILD GRAPH"),
        ("BUILD GRAPH ON nowhere", "collection 'nowhere' does not exist"),
        ("SHOW GRAPH {name}", "has no graph; build one with BUILD GRAPH ON"),
    ],
)
def test_bad_graph_statements(db, name, coll, statement, message):
    with pytest.raises(sparsesql.CheckError, match=message):
        db.query(statement.format(name=name))


def test_bad_k_from_python(db, coll):
    with pytest.raises(sparsesql.CheckError, match="must be a whole number from 1 to 256"):
        coll.build_graph(k=1000)


def test_ties_between_duplicate_vectors_break_the_same_way_as_a_fresh_build(db, name):
    """Many documents share a vector, so neighbours tie on similarity and the lower doc_id must
    win in maintenance exactly as in a build (a stored real read back as decimal text once broke
    this)."""
    import random

    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=3)

    def doc(i: int, version: int) -> dict:
        return {"id": f"t{i}", "body": f"v{version}", "vector": [1.0, float(i % 7), float(version % 5)]}

    coll.add([doc(i, 0) for i in range(40)])
    coll.build_graph(k=3)
    rng = random.Random(1)
    for step in range(1, 40):
        i = rng.randrange(40)
        if rng.random() < 0.3:
            coll.delete(f"t{i}")
        coll.add([doc(i, step)])
    maintained = edges(db, name)
    coll.build_graph(k=3)
    assert maintained == edges(db, name)


def test_a_large_collection_takes_candidates_from_the_codes_and_scores_them_exactly(db, name, monkeypatch):
    """Past EXACT_MAX the build asks the dense codes for candidates: the true neighbours are
    found (recall >= 0.95 against brute force on vectors clustered like real embeddings), every
    stored similarity is the exact cosine, and upkeep after it still works."""
    from benchmarks import synthetic
    from sparsesql.graph import approx

    monkeypatch.setattr(approx, "EXACT_MAX", 500)
    v = synthetic.make_batch(0, 3000, model="calibrated").vectors
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=v.shape[1])
    coll.add([{"id": f"g{i}", "body": "words", "vector": x.tolist()} for i, x in enumerate(v)])
    assert db.query(f"BUILD GRAPH ON {name} WITH (k => 16)")[0].edges == 3000 * 16
    facts = {r.property: r.value for r in db.query(f"SHOW GRAPH {name}")}
    assert facts["method"].startswith("approximate")
    ids = [f"g{i}" for i in range(3000)]
    got, expected = edges(db, name), brute_force(ids, v, 16)
    recall = np.mean([len(set(got[s]) & set(expected[s])) / 16 for s in ids])
    assert recall >= 0.95, recall
    stored = db.conn.execute(
        f'SELECT s.id, d.id, g.similarity FROM sparsesql."{name}__graph" AS g JOIN sparsesql."{name}__docs" AS s ON s.doc_id = g.src '
        f'JOIN sparsesql."{name}__docs" AS d ON d.doc_id = g.dst'
    ).fetchall()
    exact = {(a, b): float(v[int(a[1:])].astype(np.float64) @ v[int(b[1:])].astype(np.float64)) for a, b, _ in stored}
    assert max(abs(s - exact[(a, b)]) for a, b, s in stored) < 1e-5
    coll.add([{"id": "new", "body": "words", "vector": v[7].tolist()}])  # exact upkeep: a twin of g7 joins g7's list
    assert "new" in edges(db, name)["g7"]
