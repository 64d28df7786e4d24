"""Plan -> EXPLAIN text: each stage, where it runs, its SQL and parameters; with ANALYZE, the
rows it produced and the milliseconds it took."""

from __future__ import annotations

import psycopg

from sparsesql.plan.trace import StageRecord, short
from sparsesql.lang.check_page import COLLAPSE_DEPTH
from sparsesql.plan import stages as st


def _where(stage: st.Stage) -> str:
    if isinstance(stage, (st.Diversify, st.Boost, st.Rerank)):
        return "SQL + Python"
    if isinstance(stage, st.TierCandidates):
        return "memory tier"
    if isinstance(stage, st.TierDense):
        return "memory tier"
    if isinstance(stage, st.Facets) and stage.memory is not None:
        return "memory tier"
    return "SQL" if isinstance(stage, (st.Candidates, st.Feedback, st.FetchRows, st.SqlRows, st.Facets)) else "Python"


def _describe(stage: st.Stage) -> str:
    if isinstance(stage, st.EncodeQuery):
        return f"embed query text with {stage.model}"
    if isinstance(stage, (st.Candidates, st.TierCandidates)):
        return f"top {stage.k} candidates"
    if isinstance(stage, st.TierDense):
        union = f" and every document of {', '.join(stage.union)}" if stage.union else ""
        rows = ", with their rows" if stage.columns is not None else ""
        return f"top {stage.k} by exact cosine of {stage.search_k} candidates from the dense codes{union}{rows}"
    if isinstance(stage, st.Feedback):
        return f"{stage.side} query moved by {stage.method} from the top {stage.depth} of {stage.source}, top {stage.k}"
    if isinstance(stage, st.Fuse):
        return f"{stage.fusion.text()} over {', '.join(stage.labels)}, keep {stage.limit} as {stage.out}"
    if isinstance(stage, st.Diversify):
        graph = f", plus graph neighbours within {stage.hops} hops" if stage.hops else ""
        return f"{stage.method}(lambda => {stage.lam}) chooses {stage.limit} of the top {stage.candidates} of {stage.source}{graph}"
    if isinstance(stage, st.Boost):
        return (f"ORDER BY {stage.boost.text}: the top {stage.depth} of {stage.source} reordered by it, highest first "
                f"(NULL last, ties by doc id), as {stage.out}; their fields {', '.join(stage.boost.fields) or '(none)'} read by id")
    if isinstance(stage, st.Rerank):
        r = stage.rerank
        return (f"cross-encoder {r.folder} scores (query, {r.field}) for the top {r.candidates} of {stage.source}, "
                f"{r.batch} pairs a batch; its scores are the order, as {stage.out}")
    if isinstance(stage, st.FetchRows):
        return f"fetch columns of the documents in {stage.source}"
    if isinstance(stage, st.Facets):
        hits = f"the top {stage.depth} of {stage.source}" if stage.source else "every document the search matches (and the filter keeps)"
        return f"GROUP BY over {hits}: {', '.join(stage.columns)}"
    return "final rows" + (" with scores" if stage.scored else "")


def explain_text(conn: psycopg.Connection, plan: st.Plan, records: list[StageRecord] | None = None) -> str:
    lines = [f"Plan on collection {plan.collection}"]
    if plan.distributed:
        spread = ", ".join(plan.distributed.get("tables", []))
        lines.append(f"   distributed: {spread} over {plan.distributed.get('shards')} shards by {plan.distributed.get('by')} (Citus); "
                     "vocabulary and catalog on every node, the graph on the coordinator"
                     + ("" if records else "; EXPLAIN ANALYZE shows Citus' plan of each statement"))
    for argument, value, source in plan.defaults:
        lines.append(f"   default {argument} => {value}  ({source})")
    if plan.offset:
        lines.append(f"   page: OFFSET {plan.offset}: the ranking is computed to its page's end, and the rows before the page are skipped")
    if plan.cursor and plan.cursor.after and plan.seek:
        lines.append(f"   page: AFTER a cursor at row {plan.cursor.after.position}, past the result window: the ranking starts after "
                     "that row's document, at its score now (the cursor's while it is no match), ties by doc id")
    elif plan.cursor and plan.cursor.after:
        lines.append(f"   page: AFTER a cursor at row {plan.cursor.after.position}: the page starts past that row, wherever it now ranks")
    for like in plan.likes:
        lines.append(f"   like: {like}")
    for asked in plan.syntax:
        lines.append(f"   {asked}")
    if plan.exclude:
        lines.append(f"   leave out: the {len(plan.exclude)} documents LIKE and UNLIKE name (include_liked => true keeps them); "
                     "every list keeps as many more")
    if plan.collapse:
        lines.append(f"   collapse: DISTINCT ON ({plan.collapse}): the best row per value among the ranking's first "
                     f"{COLLAPSE_DEPTH} rows (or to the page's end), all fetched to find them")
    if plan.highlighting:
        how = (f"lexical, marking the stems {', '.join(sorted(plan.highlighting.terms))}" if plan.highlighting.terms
               else "semantic: the passages nearest the query vector" if plan.highlighting.dense else "the text's beginning")
        lines.append(f"   highlight: {', '.join(h.column for h in plan.highlighting.items)} ({how}), made in Python from the page's rows")
    for i, stage in enumerate(plan.stages, start=1):
        label = getattr(stage, "label", "")
        head = f"{i}. {stage.name}{f' [{label}]' if label else ''} ({_where(stage)}): {_describe(stage)}"
        record = records[i - 1] if records else None
        if record is not None:
            detail = f", {record.detail}" if record.detail else ""
            head += f"  (rows={record.rows}{detail}, time={record.ms:.2f} ms)"
        lines.append(head)
        if isinstance(stage, st.Diversify):
            lines.append("     SQL (pool vectors): " + stage.vectors.as_string(conn))
            if stage.expand is not None:
                lines.append("     SQL (graph walk): " + stage.expand.as_string(conn))
            if stage.expand_filter is not None:
                lines.append("     SQL (the walk's documents through the filter): " + stage.expand_filter.as_string(conn))
                lines.append("     newcomers rescored by: " + ", ".join(r.label for r in stage.rescore))
        if getattr(stage, "settings", None):
            lines.append("     settings (this transaction): " + ", ".join(f"{k} = {v}" for k, v in stage.settings.items()))
        if isinstance(stage, st.TierCandidates):
            lines.append("     SQL if the tier cannot serve: " + (record.sql if record and record.sql else stage.fallback.as_string(conn)))
        if isinstance(stage, st.TierDense):
            lines.append("     SQL if the tier cannot serve: " + stage.fallback.as_string(conn))
        statement = getattr(stage, "statement", None)
        if statement is not None:
            tiered = isinstance(stage, st.Facets) and stage.memory is not None
            lines.append(f"     SQL{' if the tier cannot serve' if tiered else ''}: " + (record.sql if record and record.sql else statement.as_string(conn)))
            params = record.params if record and record.params else {k: short(v) for k, v in getattr(stage, "params", {}).items()}
            if params:
                lines.append("     params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
        if record is not None and record.plan:
            lines.append("     PostgreSQL's plan:")
            lines.extend("       " + line for line in record.plan.splitlines())
    if records:
        lines.append(f"Total: {sum(r.ms or 0 for r in records):.2f} ms")
    return "\n".join(lines)
