"""Filter columns in the memory tier: a WHERE over declared scalar fields evaluated in numpy keeps
exactly the documents PostgreSQL's WHERE keeps (three-valued logic, NULLs, every loadable type),
stays current through inserts, updates and deletes, loads back from its snapshot, and hands every
test it cannot evaluate to SQL with the reason (EXPLAIN shows which)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from sparsesql.plan.sql import filter_ids_sql, where_sql
from sparsesql.tier.filters import FilterTier, NotInMemory
from tests.test_tier import ranked, same

FIELDS = {
    "body": "text", "year": "int", "big": "bigint", "ratio": "real", "weight": "float", "open": "bool",
    "day": "date", "at": "timestamp", "tenant": "text", "price": "numeric", "zoned": "timestamptz",
}
TENANTS = ["acme", "globex", "initech", None]


def docs(n: int, start: int = 0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        nulls = rng.random(8) < 0.1
        out.append({
            "id": f"d{i}", "body": " ".join(rng.choice(["alpha", "beta", "gamma", "delta"], 5)),
            "year": None if nulls[0] else int(1990 + i % 35), "big": None if nulls[1] else int(rng.integers(-2**40, 2**40)),
            "ratio": None if nulls[2] else float(np.float32(rng.random())), "weight": None if nulls[3] else float(rng.normal()),
            "open": None if nulls[4] else bool(i % 3 == 0),
            "day": None if nulls[5] else (dt.date(2020, 1, 1) + dt.timedelta(days=int(i % 400))).isoformat(),
            "at": None if nulls[6] else (dt.datetime(2021, 6, 1) + dt.timedelta(minutes=int(i * 37))).isoformat(),
            "tenant": TENANTS[i % 4] if not nulls[7] else None, "price": float(i % 50) / 4, "zoned": "2021-01-01T00:00:00+00:00",
            "metadata": {"n": i}, "vector": rng.standard_normal(16).astype(np.float32).tolist(),
        })
    return out


IN_MEMORY = [
    "year = 2000", "year != 2000", "year <> 2000", "year < 1995", "2000 <= year", "year > 1999.5", "year IN (1990, 2001, 2024)",
    "year NOT IN (1990, 2001)", "year IS NULL", "year IS NOT NULL", "big > 0", "big <= -1000000", "ratio < 0.25", "ratio >= 0.5",
    "weight > 0.0", "weight < -1", "open = TRUE", "open != TRUE", "open = FALSE", "NOT open = TRUE", "day >= '2020-06-01'",
    "day < :when", "at > '2021-06-10 12:00'", "at <= :stamp", "at > :when", "tenant = 'acme'", "tenant != 'acme'",
    "tenant IN ('acme', 'initech')", "tenant NOT IN ('acme')", "tenant = 'nobody'", "tenant IS NULL",
    "year >= 2000 AND tenant = 'globex'", "year < 1995 OR open = TRUE", "NOT (year > 2000 OR tenant = 'acme')",
    "(year IS NULL OR year > 2010) AND NOT tenant IN ('globex', 'initech')", "NOT (ratio < 0.5 AND open = TRUE)",
    "year = :y", "year IN (:y, 1991)",
]
IN_SQL = {
    "tenant LIKE 'ac%'": "LIKE", "body = 'alpha'": "analysed", "price > 3": "numeric", "zoned > '2020-01-01'": "timestamptz",
    "id = 'd5'": "'id' is not a filter column", "metadata->>'n' = '5'": "metadata paths", "'5' = metadata->>'n'": "metadata paths", "tenant > 'b'": "collation",
    "year::text = '2000'": "casts", "year = '2000'::int": "two columns, casts", "year = big": "two columns", "day >= '01/06/2020'": "read as a date",
    "year > 2000 AND tenant LIKE 'a%'": "LIKE",
}
PARAMS = {"when": dt.date(2020, 9, 1), "stamp": dt.datetime(2021, 6, 20, 8, 30), "y": 2005}


def sql_ids(db, name: str, where: str) -> np.ndarray:
    q = db.check(f"SELECT id FROM {name} WHERE {where}", **PARAMS)
    clause, bound = where_sql(q.collection, q.where, q.params, q.where_kinds)
    with db.conn.transaction():
        rows = db.conn.execute(filter_ids_sql(q.collection, clause), bound).fetchall()
    return np.array(sorted(r[0] for r in rows), dtype=np.int64)


def tier_ids(db, tier: FilterTier, name: str, where: str) -> np.ndarray:
    q = db.check(f"SELECT id FROM {name} WHERE {where}", **PARAMS)
    with db.conn.transaction():
        return tier.get(db.conn, q.collection).data.keep(q.where, q.params)


def test_every_loadable_type_keeps_what_sql_keeps_and_the_rest_goes_to_sql(db, name, tmp_path):
    coll = db.create_collection(name, FIELDS, dense="none", dim=16, text_fields=["body"])
    coll.add(docs(1200))
    tier = FilterTier(tmp_path)
    for where in IN_MEMORY:
        assert np.array_equal(tier_ids(db, tier, name, where), sql_ids(db, name, where)), where
    for where, reason in IN_SQL.items():
        with pytest.raises(NotInMemory) as err:
            tier_ids(db, tier, name, where)
        assert reason in str(err.value), (where, str(err.value))
    columns = tier.loaded[name].data
    assert set(columns.columns) == {"year", "big", "ratio", "weight", "open", "day", "at", "tenant"}


def test_columns_follow_inserts_updates_and_deletes_and_load_back_from_the_snapshot(db, name, tmp_path):
    coll = db.create_collection(name, FIELDS, dense="none", dim=16, text_fields=["body"])
    coll.add(docs(600))
    tier = FilterTier(tmp_path)
    wheres = ["year >= 2010", "tenant = 'acme' OR open = TRUE", "tenant = 'hooli'", "day < '2020-03-01'"]
    for where in wheres:
        assert np.array_equal(tier_ids(db, tier, name, where), sql_ids(db, name, where))
    changed = docs(300, start=400, seed=1)  # 200 updates, 100 new documents
    changed[0]["tenant"] = "hooli"  # a value the dictionary has not seen
    coll.add(changed)
    coll.delete([f"d{i}" for i in range(0, 600, 7)])
    for where in wheres:
        assert np.array_equal(tier_ids(db, tier, name, where), sql_ids(db, name, where)), where
    assert tier_ids(db, tier, name, "tenant = 'hooli'").size == 1
    tier.loaded[name].changed = 10**9
    with db.conn.transaction():
        tier._save(db.collection(name).info, tier.loaded[name])
    fresh = FilterTier(tmp_path)
    for where in wheres:
        assert np.array_equal(tier_ids(db, fresh, name, where), sql_ids(db, name, where)), where
    assert fresh.loaded[name].source == "snapshot"


def test_infinity_and_nan_stay_in_sql(db, name, tmp_path):
    coll = db.create_collection(name, {"body": "text", "day": "date", "weight": "float"}, dense="none", dim=16)
    coll.add([{"id": "a", "body": "x", "day": "2020-01-01", "weight": 1.0, "vector": [1.0] * 16},
              {"id": "b", "body": "y", "day": "2020-01-01", "weight": 1.5, "vector": [0.5] * 16}])
    # Ingest refuses both; a table written by other means (plain SQL) can hold them.
    db.conn.execute(f"UPDATE sparsesql.{name}__docs SET day = 'infinity', weight = 'NaN' WHERE id = 'a'")
    tier = FilterTier(tmp_path)
    with pytest.raises(NotInMemory, match="infinity"):
        tier_ids(db, tier, name, "day > '2019-01-01'")
    with pytest.raises(NotInMemory, match="NaN"):
        tier_ids(db, tier, name, "weight > 1")
    assert np.array_equal(tier_ids(db, tier, name, "weight IS NOT NULL"), sql_ids(db, name, "weight IS NOT NULL"))


def test_filtered_searches_say_where_the_filter_ran_and_equal_the_sql_path(db, tier_db, name):
    coll = db.create_collection(name, FIELDS, dense="none", dim=16, text_fields=["body"])
    coll.add(docs(1500))
    v = docs(1, start=7, seed=3)[0]["vector"]
    for where, where_ran in (("year >= 2015 AND tenant = 'acme'", "evaluated in memory"), ("tenant LIKE 'ac%'", "ids from SQL: LIKE")):
        for search in ("SPARSE('alpha gamma')", "DENSE(:v)", "HYBRID(SPARSE('alpha gamma'), DENSE(:v))"):
            text = f"SELECT id, score FROM {name} SEARCH {search} WHERE {where} LIMIT 10"
            plan = tier_db.explain(text, analyze=True, v=v)
            assert f"({where_ran}" in plan, plan
            assert same(ranked(tier_db, text, v=v), ranked(db, text, v=v), tol=1e-6), (where, search)
