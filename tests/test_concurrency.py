"""Writers and readers at once, for a bounded time: every row a reader gets agrees with the
search that found it (same snapshot for candidates and fetch), nobody deadlocks or fails, and
the statistics and the kNN graph are exact afterwards."""

from __future__ import annotations

import random
import threading
import time


import sparsesql
from tests.test_graph import edges
from tests.test_ingest import assert_exact_stats

DURATION = 4.0
DOCS = 40


def doc(i: int, version: int) -> dict:
    return {
        "id": f"c{i}",
        "body": f"ver{version} shared words number{i}",
        "metadata": {"version": version},
        "vector": [1.0, float(i % 7), float(version % 5)],
    }


def test_writers_and_readers_in_parallel(db, name):
    coll = db.create_collection(name, {"body": "text"}, dense="none", dim=3)
    coll.add([doc(i, 0) for i in range(DOCS)])
    coll.build_graph(k=3)
    stop = time.monotonic() + DURATION
    errors: list[BaseException] = []
    reads = [0]
    versions = iter(range(1, 10**9))
    lock = threading.Lock()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        with sparsesql.connect(db.dsn) as wdb:
            c = wdb.collection(name)
            while time.monotonic() < stop:
                i = rng.randrange(DOCS)
                with lock:
                    v = next(versions)
                if rng.random() < 0.3:
                    c.delete(f"c{i}")
                c.add([doc(i, v)])

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        with sparsesql.connect(db.dsn) as rdb:
            while time.monotonic() < stop:
                version = rng.randrange(0, 50)
                search = rng.choice([
                    f"SPARSE('ver{version}')",
                    f"HYBRID(SPARSE('ver{version}'), DENSE(:v)) WITH PRF",
                    f"HYBRID(SPARSE('ver{version}'), DENSE(:v)) DIVERSIFY BY COVERAGE(hops => 1)",
                ])
                rows = rdb.query(f"SELECT id, body, metadata, score FROM {name} SEARCH {search} LIMIT 10", v=[1, 2, 3])
                for r in rows:
                    stated = int(r.body.split()[0][3:])
                    assert r.metadata["version"] == stated, f"half-applied update seen: {r}"
                    if search.startswith("SPARSE"):
                        assert stated == version, f"a row that does not match its search: {r}"
                reads[0] += 1

    def guard(fn, seed):
        try:
            fn(seed)
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(fn, s)) for s, fn in enumerate([writer, writer, reader, reader])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DURATION + 60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    assert not errors, errors
    assert reads[0] > 20
    assert coll.count() == DOCS
    assert_exact_stats(db, name)
    maintained = edges(db, name)
    coll.build_graph(k=3)
    assert maintained == edges(db, name)
