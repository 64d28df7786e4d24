"""kill -9 during ingest: after each kill every batch is wholly present or wholly absent, the
statistics match a recount, the kNN graph matches its documents, and a resumed ingest ends with
every document exactly once and the graph equal to a fresh build. The same for bulk loads, whose
batches span several chunks and form their postings at their end, and whose first load defers
the collection's vector index."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from tests.test_graph import edges
from tests.test_ingest import assert_exact_stats


DIM = 4
DOCS = 1500
BATCH = 50
KILLS = 20

WRITER = """
import json, sys
import numpy as np
import sparsesql

dsn, name, n, batch, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(5)
vectors = rng.normal(size=(n, {dim}))
words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
docs = [
    {{"id": f"k{{i:05d}}", "body": " ".join(words[(i * j) % 8] for j in range(1, 2 + i % 6)), "vector": vectors[i].tolist()}}
    for i in range(n)
]
db = sparsesql.connect(dsn)
coll = db.collection(name)
print("ready", flush=True)
if chunk:  # a bulk load, its batches in chunks of `chunk`
    from sparsesql.db import ingest
    ingest.CHUNK = chunk
    coll.add(docs, batch_size=batch, bulk=True)
else:
    coll.add(docs, batch_size=batch)
print("done", flush=True)
""".format(dim=DIM)


def run_writer(dsn: str, name: str, kill_after: float | None, *, batch: int = BATCH, chunk: int = 0) -> bool:
    """Start the writer (a bulk load when `chunk`); SIGKILL it `kill_after` seconds after it is
    connected. True if it finished."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, dsn, name, str(DOCS), str(batch), str(chunk)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    if kill_after is None:
        return proc.wait(timeout=300) == 0
    time.sleep(kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.returncode == 0


def check_consistent(db, name: str, *, batch: int = BATCH, graph: bool = True) -> int:
    """Assert the invariants in one snapshot; returns how many documents are present.

    One snapshot matters: a killed client's backend may still commit the batch it had sent, and
    separate statements could see before and after."""
    with db.conn.transaction():
        db.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _invariants(db, name, batch, graph)


def _invariants(db, name: str, size: int, graph: bool) -> int:
    t = lambda kind: f'sparsesql."{name}__{kind}"'  # noqa: E731
    ids = [r[0] for r in db.conn.execute(f"SELECT id FROM {t('docs')}").fetchall()]
    present = {int(i[1:]) for i in ids}
    for start in range(0, DOCS, size):
        batch = set(range(start, min(start + size, DOCS)))
        assert len(present & batch) in (0, len(batch)), f"batch at {start} is partial"
    assert_exact_stats(db, name)
    assert db.conn.execute(f"SELECT count(*) FROM {t('dense')}").fetchone()[0] == len(ids)
    if not graph:
        return len(ids)
    degrees = db.conn.execute(
        f"SELECT d.doc_id, count(g.dst) FROM {t('docs')} d LEFT JOIN {t('graph')} g ON g.src = d.doc_id GROUP BY d.doc_id"
    ).fetchall()
    assert all(c == min(3, len(ids) - 1) for _, c in degrees), "a document lacks its graph edges"
    dangling = db.conn.execute(
        f"SELECT count(*) FROM {t('graph')} g WHERE NOT EXISTS (SELECT 1 FROM {t('docs')} d WHERE d.doc_id = g.dst)"
    ).fetchone()[0]
    assert dangling == 0
    return len(ids)


def test_kill_9_during_ingest_leaves_whole_batches(db, dsn, name):
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=DIM)
    coll.add([{"id": "k99999", "body": "seed", "vector": [1.0, 0.0, 0.0, 0.0]}])
    coll.build_graph(k=3)
    rng = random.Random(20261126)
    counts = []
    while len(counts) < KILLS:
        if run_writer(dsn, name, kill_after=rng.uniform(0.05, 0.8)):
            # It finished before the kill: take whole batches away (exercising deletes and the
            # graph's repair) so that the next writer has work to be killed in.
            gone = [f"k{i:05d}" for start in rng.sample(range(0, DOCS, BATCH), DOCS // BATCH // 2) for i in range(start, start + BATCH)]
            coll.delete(gone)
            check_consistent(db, name)
            continue
        counts.append(check_consistent(db, name) - 1)
    print("documents present after each kill:", counts)
    assert sum(c < DOCS for c in counts) >= KILLS // 2, f"too few kills landed before the ingest was complete: {counts}"
    assert run_writer(dsn, name, kill_after=None)
    assert check_consistent(db, name) == DOCS + 1
    assert db.conn.execute(f'SELECT count(DISTINCT id) FROM sparsesql."{name}__docs"').fetchone()[0] == DOCS + 1
    maintained = edges(db, name)
    coll.build_graph(k=3)
    assert maintained == edges(db, name)


def test_kill_9_during_a_bulk_load_then_a_resume(db, dsn, name):
    """Bulk batches of 300 in chunks of 60, into an empty collection with an HNSW index: after each
    kill every batch is whole or absent (its postings formed with it) and the statistics equal a
    recount, the index is either in place or recorded as deferred; running the load again ends
    with every document exactly once and the index built."""
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=DIM)
    index = f"{name}_hnsw"
    db.conn.execute(f'CREATE INDEX "{index}" ON sparsesql."{name}__dense" USING hnsw (embedding vector_cosine_ops)')
    present = lambda: db.conn.execute("SELECT to_regclass(%s)", (f'sparsesql."{index}"',)).fetchone()[0] is not None  # noqa: E731
    rng = random.Random(20261202)
    counts = []
    while len(counts) < BULK_KILLS:
        finished = run_writer(dsn, name, kill_after=rng.uniform(0.01, 0.25), batch=300, chunk=60)
        found = check_consistent(db, name, batch=300, graph=False)
        if not finished:
            counts.append(found)
            assert present() or coll.info.extra.get("deferred_indexes"), "the index is gone and not recorded"
        if found == DOCS:  # complete (a load takes a few tenths of a second): the next one starts over, from empty
            coll.delete([f"k{i:05d}" for i in range(DOCS)])
            check_consistent(db, name, batch=300, graph=False)
    print("documents present after each kill:", counts)
    assert sum(0 < c < DOCS for c in counts) >= 2, f"too few kills landed mid-load: {counts}"
    assert run_writer(dsn, name, kill_after=None, batch=300, chunk=60)
    assert check_consistent(db, name, batch=300, graph=False) == DOCS
    assert db.conn.execute(f'SELECT count(DISTINCT id) FROM sparsesql."{name}__docs"').fetchone()[0] == DOCS
    assert present() and "deferred_indexes" not in coll.info.extra


BULK_KILLS = 8


SNAPSHOTTER = """
import sys
from pathlib import Path
import numpy as np
from sparsesql.tier.snapshots import write_snapshot
from sparsesql.tier.dense import DenseCodes

folder = Path(sys.argv[1])
rng = np.random.default_rng(0)
vectors = rng.normal(size=(20000, 64)).astype(np.float32)
print("ready", flush=True)
seq = 0
while True:
    seq += 1
    n = 1000 * (1 + seq % 20)
    codes = DenseCodes.build(np.arange(n), vectors[:n], 64)
    write_snapshot(folder, "dense", {"index": codes.to_bytes()}, {"seq": n, "identity": "x"})
"""


def test_kill_9_during_a_tier_snapshot_write_leaves_a_loadable_snapshot_or_none(tmp_path):
    """The tier's snapshots (postings and dense codes alike go through write_snapshot): whatever
    instant a writer dies at, the file under the final name is absent or whole, its codes
    matching the change-log position stored beside them."""
    import json

    import numpy as np

    from sparsesql.tier.dense import DenseCodes

    rng = random.Random(11)
    loaded = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", SNAPSHOTTER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        final = tmp_path / "dense.npz"
        if final.exists():
            with np.load(final) as data:
                meta = json.loads(str(data["meta"]))
                codes = DenseCodes.from_bytes(data["index"], 64)
            assert codes.count == meta["seq"]
            loaded += 1
    assert loaded >= 4  # the writer got past its first snapshot in most runs
    from sparsesql.tier.snapshots import write_snapshot

    write_snapshot(tmp_path, "dense", {"index": codes.to_bytes()}, {"seq": codes.count, "identity": "x"})
    assert not list(tmp_path.glob("dense.*.tmp.npz"))  # the killed writers' leftovers are gone
