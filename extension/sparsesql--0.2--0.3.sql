-- sparsesql 0.2 -> 0.3: posting blocks. sparsesql's catalog revision 0002 stores a collection's
-- postings as blocks, (term_id, block) -> doc_ids[] and tfs[], instead of a row per posting; BM25
-- reads them through unnest, summing each document's terms in term-id order as the dialect does
-- (so the last bits of a score do not depend on the plan). That migration updates an installed
-- extension to this version.

\echo Use "ALTER EXTENSION sparsesql UPDATE TO '0.3'" to load this file. \quit

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

