"""The `sparsesql` command, in-process through click's runner, against the test server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sparsesql.cli.main import cli


def run(dsn: str, *args: str):
    return CliRunner().invoke(cli, ["--dsn", dsn, *args], catch_exceptions=False)


def _beir(folder, docs, queries, qrels):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    return folder


def test_dsn_prints_the_connection_string(dsn):
    result = run(dsn, "dsn")
    assert result.exit_code == 0 and result.output.strip() == dsn


def test_ingest_jsonl_then_query(dsn, name, tmp_path):
    assert run(dsn, "query", f"CREATE COLLECTION {name} (body text, year int) WITH (dense => 'none', dim => 2)").exit_code == 0
    path = tmp_path / "docs.jsonl"
    path.write_text(
        json.dumps({"_id": "a", "body": "postgres vector search", "year": 2024, "vector": [1, 0]}) + "\n"
        + json.dumps({"id": "b", "body": "keyword search with bm25", "year": 2019, "vector": [0, 1]}) + "\n"
    )
    result = run(dsn, "ingest", name, str(path))
    assert result.exit_code == 0 and "added 2" in result.output
    result = run(dsn, "query", f"SELECT id, year, score FROM {name} SEARCH SPARSE(:q) WHERE year > :y", "-p", "q=search", "-p", "y=2020", "--json")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["id"] for r in rows] == ["a"] and rows[0]["score"] > 0
    table = run(dsn, "query", f"SELECT id FROM {name} SEARCH SPARSE('search')")
    assert "(2 rows)" in table.output


def test_ingest_bulk_loads_and_resumes(dsn, name, tmp_path, session_db):
    """--bulk loads a file in large batches into an empty collection with an HNSW index (built
    again at the end); run again it counts everything unchanged; --batch-size must be positive."""
    assert run(dsn, "query", f"CREATE COLLECTION {name} (body text) WITH (dense => 'none', dim => 2)").exit_code == 0
    session_db.conn.execute(f'CREATE INDEX "{name}_hnsw" ON sparsesql."{name}__dense" USING hnsw (embedding vector_cosine_ops)')
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "body": f"bulk word{i % 7} text", "vector": [1, i]}) + "\n" for i in range(400)))
    result = run(dsn, "ingest", name, str(path), "--bulk", "--batch-size", "150")
    assert result.exit_code == 0 and "added 400, updated 0, unchanged 0, rejected 0" in result.output, result.output
    assert session_db.conn.execute("SELECT to_regclass(%s)", (f'sparsesql."{name}_hnsw"',)).fetchone()[0] is not None
    assert "unchanged 400" in run(dsn, "ingest", name, str(path), "--bulk").output
    assert "(3 rows)" in run(dsn, "query", f"SELECT id FROM {name} SEARCH SPARSE('word3') LIMIT 3").output
    bad = run(dsn, "ingest", name, str(path), "--batch-size", "0")
    assert bad.exit_code != 0 and "batch_size must be at least 1, got 0" in bad.output


def test_ingest_reports_bad_lines_by_number_and_skips_or_stops(dsn, name, tmp_path, session_db):
    """A line that is not JSON, a wrong-size vector, a NaN, a missing id: --on-error skip names
    each line with its reason and loads the rest; the default stops at the first, loading
    nothing of its batch; a re-run counts what is there as unchanged."""
    assert run(dsn, "query", f"CREATE COLLECTION {name} (body text) WITH (dense => 'none', dim => 2)").exit_code == 0
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "a", "body": "first", "vector": [1, 0]}), "not json", "",
        json.dumps({"id": "b", "body": "three numbers", "vector": [1, 0, 0]}),
        '{"id": "n", "body": "nan", "vector": [NaN, 1]}',
        json.dumps({"body": "no id", "vector": [0, 1]}),
        json.dumps({"id": "c", "body": "last", "vector": [0, 1]}),
    ]) + "\n")
    stopped = CliRunner().invoke(cli, ["--dsn", dsn, "ingest", name, str(path)])
    assert stopped.exit_code == 1 and "docs.jsonl line 2: malformed JSON" in stopped.output
    assert session_db.collection(name).count() == 0
    skipped = CliRunner().invoke(cli, ["--dsn", dsn, "ingest", name, str(path), "--on-error", "skip"])
    assert skipped.exit_code == 0, skipped.output
    assert "added 2, updated 0, unchanged 0, rejected 4" in skipped.output
    for line, why in ((2, "malformed JSON"), (4, "'vector' has 3 dimensions"), (5, "NaN"), (6, "needs an 'id'")):
        assert f"rejected line {line}" in skipped.output and why in skipped.output.split(f"rejected line {line}")[1].splitlines()[0], line
    assert sorted(r["id"] for r in session_db.query(f"SELECT id FROM {name}")) == ["a", "c"]
    again = CliRunner().invoke(cli, ["--dsn", dsn, "ingest", name, str(path), "--on-error", "skip"])
    assert "added 0, updated 0, unchanged 2, rejected 4" in again.output


def test_errors_are_messages_not_tracebacks(dsn):
    result = run(dsn, "query", "SELECT id FORM docs")
    assert result.exit_code == 1
    assert "Error:" in result.output and "^" in result.output and "Traceback" not in result.output
    missing = run(dsn, "eval", "/nonexistent/folder")
    assert missing.exit_code == 1 and "corpus.jsonl" in missing.output


def test_eval_json_contract(dsn, tmp_path, session_db):
    folder = _beir(
        tmp_path / "tiny-set",
        [("d1", "Cats", "cats purr and sleep"), ("d2", "Dogs", "dogs bark at cats"), ("d3", "Birds", "birds sing in trees")],
        [("q1", "why do cats purr"), ("q2", "singing birds")],
        [("q1", "d1"), ("q2", "d3")],
    )
    session_db.drop_collection("tiny_set", if_exists=True)
    for search in ("SPARSE(:q)", "HYBRID(SPARSE(:q), DENSE(:q), fusion => rrf(k => 60))"):
        result = run(dsn, "eval", str(folder), "--search", search, "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output.strip().splitlines()[-1])
        assert set(summary) == {"ndcg@10", "recall@100", "p50_ms", "p95_ms", "queries"}
        assert summary["queries"] == 2 and summary["ndcg@10"] == pytest.approx(1.0)
    assert [c.name for c in session_db.collections()].count("tiny_set") == 1
    session_db.drop_collection("tiny_set")


def test_eval_with_a_learned_sparse_field(dsn, tmp_path, session_db, tiny_splade):
    """--sparse-model loads the set into <name>_splade with a field the model encodes; the search
    names it; a second run reuses the collection; a wrong folder is a message, not a traceback."""
    folder = _beir(
        tmp_path / "tiny-lsr",
        [("d1", "Sparse", "sparse retrieval model"), ("d2", "Dense", "dense vector index"), ("d3", "Fusion", "hybrid fusion rank")],
        [("q1", "sparse retrieval"), ("q2", "dense vector")],
        [("q1", "d1"), ("q2", "d2")],
    )
    session_db.drop_collection("tiny_lsr_splade", if_exists=True)
    for mode in ("full", "inference_free", "full"):
        search = f"SPARSE(:q, field => 'splade', mode => {mode})"
        result = run(dsn, "eval", str(folder), "--search", search, "--sparse-model", str(tiny_splade), "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output.strip().splitlines()[-1])
        assert summary["queries"] == 2 and 0 < summary["recall@100"] <= 1
    info = session_db.collection("tiny_lsr_splade").info
    assert [f.name for f in info.sparse_fields] == ["bm25", "splade"] and info.n_docs == 3
    wrong = run(dsn, "eval", str(folder), "--sparse-model", str(tmp_path / "nowhere"))
    assert wrong.exit_code == 1 and "sparse model folder" in wrong.output and "does not exist" in wrong.output and "Traceback" not in wrong.output
    assert session_db.collection("tiny_lsr_splade").info.n_docs == 3  # the loaded collection is kept
    session_db.drop_collection("tiny_lsr_splade")
