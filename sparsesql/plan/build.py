"""Checked SELECT -> plan. Decides which stages run where; binds every value as a parameter.

    no SEARCH         one SQL statement: filter, insertion order, LIMIT
    SPARSE or DENSE   [encode] -> one SQL statement: candidates joined with their columns
    HYBRID            [encode] -> candidates per signal (SQL, filtered) -> fuse (Python) -> fetch (SQL)

The filter runs inside each candidate statement, never after it, so LIMIT rows come back whenever
that many documents match.
"""

from __future__ import annotations

from psycopg import sql

from sparsesql.lang.check import CheckedSelect, DenseSignal, Signal
from sparsesql.plan import stages as st
from sparsesql.plan.sql import filtered_rows_sql, ranked_rows_sql, rows_by_ids_sql, where_sql
from sparsesql.retrieval import dense, sparse


def _signal_stages(q: CheckedSelect, signal: Signal, label: str, where: sql.Composable, bound: dict, k: int):
    info = q.collection
    prefix = f"{label}_"
    if isinstance(signal, DenseSignal):
        statement = dense.candidates_sql(info, where, prefix)
        encode = None
        if isinstance(signal.query, str):
            encode = st.EncodeQuery(label, signal.query, info.settings.dense)
            params = {prefix + "k": k}
        else:
            params = dense.bind(dense.query_vector(info, signal.query), k, prefix)
        return encode, statement, {**bound, **params}
    statement = sparse.candidates_sql(info, where, prefix)
    return None, statement, {**bound, **sparse.bind(signal.query, k, prefix)}


def build_plan(q: CheckedSelect) -> st.Plan:
    """The stages that answer a checked SELECT."""
    info = q.collection
    where, bound = where_sql(info, q.where, q.params)
    plan = st.Plan(info.name, [], q.columns, q.with_score)
    if q.search is None:
        plan.stages.append(st.SqlRows(filtered_rows_sql(info, where, q.columns), {**bound, "limit": q.limit}, q.columns, False))
        return plan
    signals = q.search.signals
    labels = [s.label if [x.label for x in signals].count(s.label) == 1 else f"{s.label}{i + 1}" for i, s in enumerate(signals)]
    if len(signals) == 1:
        encode, statement, params = _signal_stages(q, signals[0], labels[0], where, bound, q.limit)
        if encode:
            plan.stages.append(encode)
        plan.stages.append(
            st.SqlRows(
                ranked_rows_sql(info, statement, q.columns), params, q.columns, True,
                vector_slot=f"{labels[0]}_vector" if encode else None,
            )
        )
        return plan
    for signal, label in zip(signals, labels):
        encode, statement, params = _signal_stages(q, signal, label, where, bound, q.search.candidates)
        if encode:
            plan.stages.append(encode)
        plan.stages.append(
            st.Candidates(label, statement, params, q.search.candidates, vector_slot=f"{label}_vector" if encode else None)
        )
    plan.stages.append(st.Fuse(labels, q.search.fusion, q.limit))
    plan.stages.append(st.FetchRows(rows_by_ids_sql(info, q.columns), q.columns))
    return plan
