"""The local Citus cluster (`sparsesql cluster`): Citus built from ../shared/vendor when missing
(cached outside the clone), a coordinator and two workers started from the embedded server's
binaries, distributed tables spread over both workers with pgvector kNN pushed down to every
shard, sparsesql's own collections on the coordinator, and a clean stop."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

import sparsesql
from sparsesql import cluster as local


def _buildable() -> str | None:
    """Why the cluster cannot be had here, or None."""
    if local.citus_installed() or (local._cache() / "lib" / "citus.so").exists():
        return None
    if local._source() is None:
        return "Citus is not installed and ../shared/vendor/citus-*.tar.gz is absent"
    missing = [tool for tool in ("gcc", "make") if shutil.which(tool) is None]
    return f"building Citus needs {' and '.join(missing)}: apt-get install build-essential" if missing else None


@pytest.fixture(scope="module")
def citus(tmp_path_factory):
    why = _buildable()
    if why:
        pytest.skip(why)
    try:
        local.ensure_citus()
    except sparsesql.errors.ConfigError as exc:  # a toolchain that cannot build the vendored source
        pytest.skip(f"could not build Citus here: {exc}")
    home = tmp_path_factory.mktemp("citus")
    started = local.start(home, workers=2)
    yield started
    local.stop(home, remove=True)


def test_a_coordinator_and_two_workers_spread_a_distributed_table(citus):
    with psycopg.connect(citus.dsn, autocommit=True) as conn:
        nodes = conn.execute("SELECT nodeport, groupid FROM pg_dist_node ORDER BY groupid").fetchall()
        assert [port for port, _ in nodes] == [citus.coordinator.port, *(w.port for w in citus.workers)]
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3))")
        conn.execute("SELECT create_distributed_table('items', 'id', shard_count => 8)")
        conn.execute("INSERT INTO items SELECT g, ARRAY[cos(g), sin(g), 1]::vector FROM generate_series(1, 2000) AS g")
        placed = conn.execute("SELECT nodeport, count(*) FROM citus_shards WHERE table_name = 'items'::regclass GROUP BY 1 ORDER BY 1").fetchall()
        assert sorted(port for port, _ in placed) == sorted(w.port for w in citus.workers) and sum(n for _, n in placed) == 8
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM items ORDER BY embedding <=> '[1,0,1]' LIMIT 5").fetchall())
        assert "Custom Scan (Citus Adaptive)" in plan and "Task Count: 8" in plan
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (2000,)


def test_sparsesql_runs_on_the_coordinator(citus):
    db = sparsesql.connect(citus.dsn, sparse_tier=False)
    coll = db.create_collection("on_coordinator", {"body": "text"}, dense="none", dim=2)
    coll.add([{"id": "a", "body": "sparse retrieval", "vector": [1, 0]}, {"id": "b", "body": "dense retrieval", "vector": [0, 1]}])
    rows = db.query("SELECT id FROM on_coordinator SEARCH HYBRID(SPARSE(:q), DENSE(:v)) LIMIT 2", q="sparse", v=[1, 0])
    assert [r["id"] for r in rows] == ["a", "b"]
    db.close()


def test_a_relative_home_is_made_absolute():
    """postgres resolves its socket folder from its data folder, so a relative --home failed."""
    folder = local._folder(Path("relative/home"))
    assert folder.is_absolute() and folder == (Path.cwd() / "relative" / "home" / "cluster")


def test_the_cli_reports_and_stops_the_cluster(citus):
    sparsesql_cli = str(Path(sys.executable).with_name("sparsesql"))
    status = subprocess.run([sparsesql_cli, "cluster", "status", "--home", str(Path(citus.home).parent)], capture_output=True, text=True, check=True)
    assert status.stdout.count("running") == 3
    again = subprocess.run([sparsesql_cli, "cluster", "start", "--home", str(Path(citus.home).parent)], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == citus.dsn  # already running: the same cluster
    missing = subprocess.run([sparsesql_cli, "cluster", "status", "--home", str(Path(citus.home).parent / "elsewhere")], capture_output=True, text=True)
    assert missing.returncode != 0 and "no cluster here" in missing.stderr


SEARCHES = ["SPARSE('alpha omega')", "DENSE(:v)", "HYBRID(SPARSE('alpha omega'), DENSE(:v))",
            "HYBRID(SPARSE('alpha omega'), DENSE(:v)) WITH PRF", "HYBRID(SPARSE('alpha'), DENSE(:v)) DIVERSIFY BY COVERAGE"]


@pytest.mark.parametrize("tier", [False, True], ids=["sql", "tier"])
def test_a_distributed_collection_answers_as_the_same_collection_on_one_node(citus, tier):
    """Documents and vectors spread over both workers by doc_id (vocabularies and the catalog as
    reference tables): every search, filtered or not, gives the same ids and scores as the same
    documents in a collection of the coordinator alone, before and after deletes and updates."""
    import numpy as np

    db = sparsesql.connect(citus.dsn, sparse_tier=tier)
    suffix = "tier" if tier else "sql"
    dist, local = f"spread_{suffix}", f"single_{suffix}"
    db.query(f"CREATE COLLECTION {dist} (body TEXT, year INT) WITH (dense => 'none', dim => 8, distributed => true, shards => 8)")
    db.create_collection(local, {"body": "text", "year": "int"}, dense="none", dim=8)
    rng = np.random.default_rng(0)
    words = "alpha beta gamma delta omega sparse dense".split()
    docs = [{"id": f"d{i}", "body": " ".join(rng.choice(words, 5)), "year": 1990 + i % 30, "vector": rng.standard_normal(8).tolist()}
            for i in range(1500)]
    v = rng.standard_normal(8).tolist()

    def same_answers() -> None:
        for search in SEARCHES:
            for where in ("", " WHERE year > 2000"):
                got = [(r["id"], r["score"]) for r in db.query(f"SELECT id, score FROM {dist} SEARCH {search}{where} LIMIT 10", v=v)]
                want = [(r["id"], r["score"]) for r in db.query(f"SELECT id, score FROM {local} SEARCH {search}{where} LIMIT 10", v=v)]
                assert [i for i, _ in got] == [i for i, _ in want], (search, where)
                assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9, abs=1e-12), (search, where)

    for name in (dist, local):
        db.collection(name).add(docs)
    same_answers()
    for name in (dist, local):
        db.collection(name).delete(["d1", "d2", "d3"])
        db.collection(name).add([{"id": "d5", "body": "omega omega changed", "year": 2010, "vector": [1.0] * 8}])
    same_answers()
    assert db.collection(dist).count() == db.collection(local).count() == 1497
    placed = db.collection(dist).info.extra["distributed"]
    assert (placed["shards"], placed["by"], placed["tables"]) == (8, "shard", ["docs", "dense", "changes", "postings"])
    assert len(set(placed["buckets"])) == 8
    # an approximate DENSE's settings reach every shard: Citus passes SET LOCAL on (not set_config)
    statements: list[str] = []
    db.trace = lambda text, params: statements.append(text)
    db.query(f"SELECT id FROM {dist} SEARCH DENSE(:v, ef_search => 37) LIMIT 5", v=v)
    db.trace = None
    assert "SET LOCAL hnsw.ef_search = '37'" in statements
    with psycopg.connect(citus.dsn) as conn:
        for statement in statements[:2]:
            conn.execute(statement)
        assert conn.execute(f"SELECT DISTINCT current_setting('hnsw.ef_search') FROM sparsesql.{dist}__dense").fetchall() == [("37",)]
    for name in (dist, local):  # the graph walk: over the coordinator's graph, then the filter on the shards
        db.query(f"BUILD GRAPH ON {name} WITH (k => 4)")
    for where in ("", " WHERE year > 2000"):
        walked = [[(r["id"], r["score"]) for r in db.query(
            f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE('alpha omega'), DENSE(:v)) DIVERSIFY BY COVERAGE(hops => 1){where} LIMIT 10", v=v)]
            for name in (dist, local)]
        assert [i for i, _ in walked[0]] == [i for i, _ in walked[1]] and len(walked[0]) == 10
        assert [s for _, s in walked[0]] == pytest.approx([s for _, s in walked[1]], rel=1e-9)
    plan = db.explain(f"SELECT id FROM {dist} SEARCH HYBRID(SPARSE('alpha'), DENSE(:v)) LIMIT 5", v=v)
    assert "distributed: docs, dense, changes, postings over 8 shards by shard (Citus)" in plan
    assert "distributed" not in db.explain(f"SELECT id FROM {local} SEARCH SPARSE('alpha') LIMIT 5")
    with psycopg.connect(citus.dsn, autocommit=True) as conn:
        for kind in ("docs", "dense", "postings", "changes"):
            ports = {r[0] for r in conn.execute(
                "SELECT DISTINCT nodeport FROM citus_shards WHERE table_name = %s::regclass", (f"sparsesql.{dist}__{kind}",)).fetchall()}
            assert ports == {w.port for w in citus.workers}, kind
        assert conn.execute("SELECT count(DISTINCT id) = count(*) FROM sparsesql." + dist + "__docs").fetchone() == (True,)
        # every block holds documents of its own shard only, and a document's rows share its shard
        postings, on_own_shard = conn.execute(
            f"SELECT (SELECT sum(cardinality(doc_ids)) FROM sparsesql.{dist}__postings), (SELECT count(*) FROM sparsesql.{dist}__postings AS p "
            f"CROSS JOIN LATERAL unnest(p.doc_ids) AS u(doc_id) JOIN sparsesql.{dist}__docs AS d ON d.doc_id = u.doc_id AND d.shard = p.shard)"
        ).fetchone()
        assert postings == on_own_shard > 0
    db.drop_collection(dist)
    db.drop_collection(local)
    db.close()


def test_distributed_options_say_what_is_wrong(db, name):
    with pytest.raises(sparsesql.errors.ConfigError, match="needs the citus extension"):
        db.query(f"CREATE COLLECTION {name} (body TEXT) WITH (dense => 'none', dim => 2, distributed => true)")
    assert name not in {c.name for c in db.collections()}  # nothing half-made
    for options, message in (("shards => 4", "applies to a distributed collection"), ("distributed => 'yes'", "expects true or false"),
                             ("distributed => true, shards => 0", "whole number from 1 to 1024"), ("shards => 2.5, distributed => true", "whole number")):
        with pytest.raises(sparsesql.errors.CheckError, match=message):
            db.query(f"CREATE COLLECTION {name} (body TEXT) WITH (dense => 'none', dim => 2, {options})")


def test_distribute_collection_by_migration_and_back(citus):
    """op.distribute_collection moves an existing collection's rows to the workers with the same
    answers, keeping ids, grants and indexes; distributing twice is refused; the downgrade brings
    it back to the coordinator alone, answering the same again."""
    import sqlalchemy
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    import sparsesql.migrations

    db = sparsesql.connect(citus.dsn, sparse_tier=False)
    coll = db.create_collection("moved", {"body": "text"}, dense="none", dim=2)
    coll.add([{"id": f"m{i}", "body": f"w{i % 7} common", "vector": [1.0, float(i)]} for i in range(300)])
    text = "SELECT id, score FROM moved SEARCH HYBRID(SPARSE('w3 common'), DENSE(:v)) LIMIT 10"
    before = [(r["id"], r["score"]) for r in db.query(text, v=[1.0, 3.0])]
    engine = sqlalchemy.create_engine(citus.dsn.replace("postgresql://", "postgresql+psycopg://"))

    def migrate(step) -> None:
        with engine.begin() as connection:
            step(Operations(MigrationContext.configure(connection)))

    with psycopg.connect(citus.dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS moved_reader")
        conn.execute("CREATE ROLE moved_reader")
    db.grant("moved_reader", "reader")
    db.conn.execute("CREATE INDEX moved_body ON sparsesql.moved__docs (body)")

    def layout() -> tuple:
        with psycopg.connect(citus.dsn, autocommit=True) as conn:
            return (
                conn.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'sparsesql.moved__%'").fetchone()[0],
                conn.execute("SELECT has_table_privilege('moved_reader', 'sparsesql.moved__docs', 'SELECT')").fetchone()[0],
                conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'moved_body'").fetchone()[0],
                conn.execute("SELECT array_agg(id ORDER BY doc_id) FROM sparsesql.moved__docs").fetchone()[0],
            )

    ids = layout()[3]
    migrate(lambda op: op.distribute_collection("moved", shards=4))
    assert db.collection("moved").info.extra["distributed"]["shards"] == 4
    assert layout() == (5, True, 1, ids)  # docs, dense, changes, postings distributed, vocab a reference table
    assert [(r["id"], r["score"]) for r in db.query(text, v=[1.0, 3.0])] == before
    coll.add([{"id": "m1", "body": "w3 w3 common again", "vector": [1.0, 3.0]}])  # an update after the move, by a stale handle
    assert db.collection("moved").count() == 300 and db.query(text, v=[1.0, 3.0])[0]["id"] == "m1"
    after = [(r["id"], r["score"]) for r in db.query(text, v=[1.0, 3.0])]
    with pytest.raises(sparsesql.errors.CheckError, match="distributed already"):
        migrate(lambda op: op.distribute_collection("moved", shards=4))
    back = sparsesql.migrations.DistributeCollectionOp("moved", 4).reverse()
    assert isinstance(back, sparsesql.migrations.UndistributeCollectionOp) and back.reverse().shards == 4
    migrate(lambda op: op.invoke(back))
    assert "distributed" not in db.collection("moved").info.extra
    assert layout()[1:] == (True, 1, [*ids[:1], *ids[2:], "m1"]) and layout()[0] == 0
    assert [(r["id"], r["score"]) for r in db.query(text, v=[1.0, 3.0])] == after
    coll.add([{"id": "m400", "body": "w3 after the way back", "vector": [1.0, 3.0]}])
    assert db.collection("moved").count() == 301
    with pytest.raises(sparsesql.errors.CheckError, match="is not distributed"):
        migrate(lambda op: op.undistribute_collection("moved"))
    with psycopg.connect(citus.dsn, autocommit=True) as conn:
        _exact_statistics(conn, "moved")
    db.drop_collection("moved")
    db.close()


def _exact_statistics(conn: psycopg.Connection, name: str) -> None:
    """The catalog's N and total length, and every df, equal a recount from the documents."""
    n_docs, sum_len = conn.execute("SELECT n_docs, sum_len FROM sparsesql.collections WHERE name = %s", (name,)).fetchone()
    assert (n_docs, sum_len) == conn.execute(f"SELECT count(*), coalesce(sum(doc_len), 0) FROM sparsesql.{name}__docs").fetchone()
    wrong = conn.execute(
        f"WITH r AS (SELECT t, count(*) AS n FROM sparsesql.{name}__docs, unnest(term_ids) AS t GROUP BY t) "
        f"SELECT count(*) FROM sparsesql.{name}__vocab AS v FULL JOIN r ON r.t = v.term_id WHERE coalesce(v.df, 0) <> coalesce(r.n, 0)"
    ).fetchone()[0]
    assert wrong == 0


def test_two_writers_stay_exact_and_a_killed_worker_leaves_whole_batches(citus):
    import os
    import signal
    import threading
    import time

    db = sparsesql.connect(citus.dsn, sparse_tier=False)
    db.create_collection("writers", {"body": "text"}, dense="none", dim=2, distributed=True, shards=8)
    words = "alpha beta gamma delta omega".split()

    def batch(prefix: str, n: int, size: int) -> list[dict]:
        return [{"id": f"{prefix}-{n}-{i}", "body": f"{words[(n + i) % 5]} {words[i % 5]} {prefix}", "vector": [1.0, float(i)]} for i in range(size)]

    committed: dict[str, list[int]] = {"a": [], "b": [], "k": []}
    failed: dict[str, list[int]] = {"a": [], "b": [], "k": []}

    def write(prefix: str, seconds: float, size: int) -> None:
        mine = sparsesql.connect(citus.dsn, sparse_tier=False)
        coll, n, end = mine.collection("writers"), 0, time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                coll.add(batch(prefix, n, size), batch_size=size)
                committed[prefix].append(n)
            except sparsesql.errors.Error:
                failed[prefix].append(n)
                time.sleep(0.2)
            n += 1
        mine.close()

    threads = [threading.Thread(target=write, args=(p, 10.0, 20)) for p in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(citus.dsn, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM sparsesql.writers__docs").fetchall()]
        assert len(ids) == len(set(ids)) == 20 * (len(committed["a"]) + len(committed["b"])) and not failed["a"] + failed["b"]
        _exact_statistics(conn, "writers")

    # kill -9 one worker while a writer loads batches of 50, then restart it
    writer = threading.Thread(target=write, args=("k", 6.0, 50))
    writer.start()
    time.sleep(2.0)
    pid = int((Path(citus.workers[0].pgdata) / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    writer.join()
    local.start(Path(citus.home).parent)  # the worker comes back
    db.close()
    db = sparsesql.connect(citus.dsn, sparse_tier=False)  # a session whose worker connections are new
    with psycopg.connect(citus.dsn, autocommit=True) as conn:
        conn.execute("SELECT recover_prepared_transactions()")
        per_batch = dict(conn.execute(
            "SELECT split_part(id, '-', 2)::int, count(*) FROM sparsesql.writers__docs WHERE id LIKE 'k-%' GROUP BY 1").fetchall())
        assert failed["k"], "the writer never saw the worker go"
        assert committed["k"] and all(per_batch.get(n) == 50 for n in committed["k"])  # every committed batch whole
        assert all(count == 50 for count in per_batch.values())  # and no batch half there
        _exact_statistics(conn, "writers")
    db.drop_collection("writers")
    db.close()


CISI_SEARCHES = ["SPARSE(:q)", "DENSE(:q)", "HYBRID(SPARSE(:q), DENSE(:q))", "HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF",
                 "HYBRID(SPARSE(:q), DENSE(:q)) DIVERSIFY BY COVERAGE"]


def test_cisi_distributed_answers_as_on_one_node(citus, session_db):
    """CISI (1,460 abstracts, their MiniLM vectors) in a distributed collection over both workers
    and in one of the coordinator alone: every search of 12 test queries, through the SQL path
    and the memory tier, the extension's SQL functions and the ORM, give the same ids and scores
    (1e-9); EXPLAIN ANALYZE shows Citus
    running the sparse statement on every shard, each with its own top k."""
    from sparsesql.eval import test_queries
    from sparsesql.eval.run import BEIR_FIELDS, load_beir
    from tests.conftest import beir_dir

    folder = beir_dir("cisi")
    source = load_beir(session_db, folder)
    docs = [{"id": i, "title": t or "", "text": x or "", "vector": v} for i, t, x, v in session_db.conn.execute(
        f'SELECT d.id, d.title, d.text, e.embedding::real[] FROM sparsesql."{source}__docs" AS d JOIN sparsesql."{source}__dense" AS e USING (doc_id) ORDER BY d.doc_id'
    ).fetchall()]
    db = sparsesql.connect(citus.dsn, sparse_tier=False)
    for name, options in (("cisi_spread", {"distributed": True, "shards": 8}), ("cisi_single", {})):
        db.drop_collection(name, if_exists=True)
        db.create_collection(name, BEIR_FIELDS, **options).add(docs)
    queries = [text for _, text in list(test_queries(folder).items())[:12]]
    tier = sparsesql.connect(citus.dsn, sparse_tier=True, dense_tier=True)
    for handle in (db, tier):
        for search in CISI_SEARCHES:
            for text in queries:
                got, want = ([(r["id"], r["score"]) for r in handle.query(f"SELECT id, score FROM {name} SEARCH {search} LIMIT 10", q=text)]
                             for name in ("cisi_spread", "cisi_single"))
                assert [i for i, _ in got] == [i for i, _ in want] and len(got) == 10, (search, text)
                assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9), (search, text)
    from sparsesql import extension

    with psycopg.connect(citus.dsn, autocommit=True) as conn:  # the extension's functions too
        extension.create(conn)
        vector = str(docs[0]["vector"])
        for call, args in (("sparse_search(%s, %s, 10)", (queries[0],)), ("bm25_search(%s, %s, 10)", (queries[1],)),
                           ("dense_search(%s, %s::vector, 10)", (vector,)), ("hybrid_search(%s, %s, %s::vector, 10)", (queries[2], vector))):
            got, want = (conn.execute(f"SELECT id, score FROM sparsesql.{call}", (name, *args)).fetchall() for name in ("cisi_spread", "cisi_single"))
            assert [i for i, _ in got] == [i for i, _ in want] and len(got) == 10, call
            assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9), call
    import sqlalchemy
    from sqlalchemy.orm import Session

    from sparsesql.orm import dense, hybrid, search, sparse
    from tests.test_orm import mapped, url

    Doc = mapped("cisi_spread", title="str | None", text="str | None")  # the ORM client, on the coordinator
    engine = sqlalchemy.create_engine(url(citus.dsn))
    with Session(engine) as session:
        for q in queries[:4]:
            got = [(d.id, score) for d, score in search(sqlalchemy.select(Doc), hybrid(sparse(q), dense(q))).limit(10).execute(session)]
            want = [(r["id"], r["score"]) for r in db.query("SELECT id, score FROM cisi_single SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 10", q=q)]
            assert [i for i, _ in got] == [i for i, _ in want]
            assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)
    engine.dispose()
    plan = db.explain("SELECT id FROM cisi_spread SEARCH SPARSE(:q) LIMIT 10", analyze=True, q=queries[0])
    assert "Custom Scan (Citus Adaptive)" in plan and "Task Count: 8" in plan
    task = plan[plan.index("->  Task"):]
    assert "Limit" in task and "Group Key: d.shard, d.doc_id" in task  # each shard's own top k
    tier.close()
    for name in ("cisi_spread", "cisi_single"):
        db.drop_collection(name)
    db.close()


def test_a_worker_added_and_rebalanced_then_drained_keeps_every_answer(citus):
    """`sparsesql cluster add-worker --rebalance` moves shards onto a third worker while the
    collection keeps answering the same; draining it (citus_drain_node) moves them back."""
    import numpy as np

    db = sparsesql.connect(citus.dsn, sparse_tier=False)
    db.drop_collection("grown", if_exists=True)
    coll = db.create_collection("grown", {"body": "text"}, dense="none", dim=4, distributed=True, shards=6)
    rng = np.random.default_rng(1)
    words = "alpha beta gamma delta omega".split()
    coll.add([{"id": f"g{i}", "body": " ".join(rng.choice(words, 4)), "vector": rng.standard_normal(4).tolist()} for i in range(600)])
    v = rng.standard_normal(4).tolist()
    text = "SELECT id, score FROM grown SEARCH HYBRID(SPARSE('alpha omega'), DENSE(:v)) LIMIT 10"
    before = [(r["id"], r["score"]) for r in db.query(text, v=v)]

    def ports() -> set[int]:
        with psycopg.connect(citus.dsn, autocommit=True) as conn:
            return {r[0] for r in conn.execute("SELECT DISTINCT nodeport FROM citus_shards WHERE table_name = 'sparsesql.grown__postings'::regclass")}

    sparsesql_cli = str(Path(sys.executable).with_name("sparsesql"))
    added = subprocess.run([sparsesql_cli, "cluster", "add-worker", "--rebalance", "--home", str(Path(citus.home).parent)],
                           capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    port = int(added.stdout.split("127.0.0.1:")[1].split()[0])
    assert port in ports() and len(ports()) == 3
    assert [(r["id"], r["score"]) for r in db.query(text, v=v)] == before
    coll.add([{"id": "g-new", "body": "alpha omega omega", "vector": v}])
    after = [(r["id"], r["score"]) for r in db.query(text, v=v)]
    assert after[0][0] == "g-new"
    removed = subprocess.run([sparsesql_cli, "cluster", "remove-worker", added.stdout.split(":")[0], "--home", str(Path(citus.home).parent)],
                             capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr
    assert port not in ports() and len(ports()) == 2
    assert [(r["id"], r["score"]) for r in db.query(text, v=v)] == after
    wrong = subprocess.run([sparsesql_cli, "cluster", "remove-worker", "worker9", "--home", str(Path(citus.home).parent)], capture_output=True, text=True)
    assert wrong.returncode != 0 and "no worker 'worker9' in this cluster (worker1, worker2)" in wrong.stderr
    db.drop_collection("grown")
    db.close()
