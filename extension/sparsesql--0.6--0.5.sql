-- sparsesql 0.6 -> 0.5: the searches as before distributed collections (one node only).

\echo Use "ALTER EXTENSION sparsesql UPDATE TO '0.5'" to load this file. \quit

CREATE OR REPLACE FUNCTION sparsesql._bm25(coll text, settings jsonb, terms text[], term_ids int[], weights float8[], k int)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
DECLARE
    qw text := CASE WHEN terms IS NOT NULL
        THEN format('SELECT v.term_id, x.w FROM unnest($1::text[], $3::float8[]) AS x(term, w) JOIN sparsesql.%I AS v ON v.term = x.term', coll || '__vocab')
        ELSE 'SELECT x.term_id, x.w FROM unnest($2::int[], $3::float8[]) AS x(term_id, w)'
    END;
    total text := CASE WHEN settings->>'sparse' = 'precomputed'
        THEN 'sum(q.w * p.tf ORDER BY q.term_id)'
        ELSE 'sum(q.w * ln(1 + (s.n - q.df + 0.5) / (q.df + 0.5)) * p.tf / (p.tf + $5 * (1 - $6 + $6 * d.doc_len / s.avgdl)) ORDER BY q.term_id)'
    END;
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH ranked AS (WITH qw AS (%1$s), '
        'q AS (SELECT v.term_id, v.df, qw.w FROM qw JOIN sparsesql.%2$I AS v ON v.term_id = qw.term_id WHERE v.df > 0), '
        's AS (SELECT n_docs::float8 AS n, sum_len::float8 / greatest(n_docs, 1) AS avgdl FROM sparsesql.collections WHERE name = $7) '
        'SELECT d.doc_id, %3$s AS score FROM q JOIN sparsesql.%4$I AS b ON b.term_id = q.term_id '
        'CROSS JOIN LATERAL unnest(b.doc_ids, b.tfs) AS p(doc_id, tf) '
        'JOIN sparsesql.%5$I AS d ON d.doc_id = p.doc_id CROSS JOIN s WHERE TRUE '
        'GROUP BY d.doc_id ORDER BY score DESC, d.doc_id LIMIT $4) '
        'SELECT d.doc_id, d.id, ranked.score FROM ranked JOIN sparsesql.%5$I AS d ON d.doc_id = ranked.doc_id '
        'ORDER BY ranked.score DESC, d.doc_id',
        qw, coll || '__vocab', total, coll || '__postings', coll || '__docs')
    USING terms, term_ids, weights, k, (settings->>'k1')::numeric, (settings->>'b')::numeric, coll;
END
$fn$;

CREATE OR REPLACE FUNCTION sparsesql._sparse(coll text, settings jsonb, kind text, slot int, terms text[], weights float8[], k int, idf boolean)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
DECLARE
    tail text := CASE WHEN slot = 0 THEN '' ELSE '__' || slot END;
    total text := CASE
        WHEN kind = 'bm25' THEN 'sum(q.w * ln(1 + (s.n - q.df + 0.5) / (q.df + 0.5)) * p.tf / (p.tf + $4 * (1 - $5 + $5 * d.doc_len / s.avgdl)) ORDER BY q.term_id)'
        WHEN idf THEN 'sum(q.w * ln(1 + (s.n - q.df + 0.5) / (q.df + 0.5)) * p.tf ORDER BY q.term_id)'
        ELSE 'sum(q.w * p.tf ORDER BY q.term_id)'
    END;
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH ranked AS (WITH qw AS (SELECT v.term_id, x.w FROM unnest($1::text[], $2::float8[]) AS x(term, w) JOIN sparsesql.%1$I AS v ON v.term = x.term), '
        'q AS (SELECT v.term_id, v.df, qw.w FROM qw JOIN sparsesql.%1$I AS v ON v.term_id = qw.term_id WHERE v.df > 0), '
        's AS (SELECT n_docs::float8 AS n, sum_len::float8 / greatest(n_docs, 1) AS avgdl FROM sparsesql.collections WHERE name = $6) '
        'SELECT d.doc_id, %2$s AS score FROM q JOIN sparsesql.%3$I AS b ON b.term_id = q.term_id '
        'CROSS JOIN LATERAL unnest(b.doc_ids, b.tfs) AS p(doc_id, tf) '
        'JOIN sparsesql.%4$I AS d ON d.doc_id = p.doc_id CROSS JOIN s WHERE TRUE '
        'GROUP BY d.doc_id ORDER BY score DESC, d.doc_id LIMIT $3) '
        'SELECT d.doc_id, d.id, ranked.score FROM ranked JOIN sparsesql.%4$I AS d ON d.doc_id = ranked.doc_id '
        'ORDER BY ranked.score DESC, d.doc_id',
        coll || '__vocab' || tail, total, coll || '__postings' || tail, coll || '__docs')
    USING terms, weights, k, (settings->>'k1')::numeric, (settings->>'b')::numeric, coll;
END
$fn$;

CREATE OR REPLACE FUNCTION sparsesql.dense_search(collection text, query vector, k int DEFAULT 10)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    c record;
    dim int;
BEGIN
    c := sparsesql._collection('sparsesql.dense_search', collection);
    PERFORM sparsesql._check_range('sparsesql.dense_search', 'k', k, 1, 100000);
    IF query IS NULL THEN
        RAISE EXCEPTION 'sparsesql.dense_search: query vector must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    dim := (c.settings->>'dim')::int;
    IF vector_dims(query) <> dim THEN
        RAISE EXCEPTION 'sparsesql.dense_search: query vector has % dimensions; collection % stores %',
            vector_dims(query), quote_literal(c.name), dim USING ERRCODE = 'data_exception';
    END IF;
    IF vector_norm(query) = 0 THEN
        RAISE EXCEPTION 'sparsesql.dense_search: query vector is all zeros, so it has no direction to compare'
            USING ERRCODE = 'data_exception';
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH ranked AS (SELECT d.doc_id, 1 - (e.embedding <=> $1) AS score FROM sparsesql.%1$I AS e '
        'JOIN sparsesql.%2$I AS d ON d.doc_id = e.doc_id WHERE TRUE ORDER BY 1 - (e.embedding <=> $1) DESC, d.doc_id LIMIT $2) '
        'SELECT d.doc_id, d.id, ranked.score FROM ranked JOIN sparsesql.%2$I AS d ON d.doc_id = ranked.doc_id '
        'ORDER BY ranked.score DESC, d.doc_id',
        c.name || '__dense', c.name || '__docs')
    USING query, k;
END
$fn$;

DROP FUNCTION sparsesql._sharded(text);
