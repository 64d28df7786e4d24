-- sparsesql 0.5 -> 0.4: hybrid_search as before the dialect's adaptive default HYBRID: fusion
-- 'minmax' (equal weights, no floor) or 'rrf', 100 candidates by default.

\echo Use "ALTER EXTENSION sparsesql UPDATE TO '0.4'" to load this file. \quit

-- HYBRID(SPARSE(query), DENSE(query_vector)) of the dialect: each side takes its top
-- `candidates` (at least k), then RRF, or (default) min-max normalisation per list and equal
-- weights, where a document missing from a list gets that list's lowest normalised score (0,
-- or 1 when all its scores are equal). Both sides read one snapshot (the function is STABLE).
CREATE OR REPLACE FUNCTION sparsesql.hybrid_search(
    collection text, query text, query_vector vector, k int DEFAULT 10,
    fusion text DEFAULT 'minmax', candidates int DEFAULT 100, rrf_k int DEFAULT 60)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    depth int;
BEGIN
    PERFORM sparsesql._collection('sparsesql.hybrid_search', collection);
    PERFORM sparsesql._check_range('sparsesql.hybrid_search', 'k', k, 1, 100000);
    PERFORM sparsesql._check_range('sparsesql.hybrid_search', 'candidates', candidates, 1, 100000);
    IF fusion IS NULL OR fusion NOT IN ('minmax', 'rrf') THEN
        RAISE EXCEPTION 'sparsesql.hybrid_search: fusion must be ''minmax'' or ''rrf'', got %', coalesce(quote_literal(fusion), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    depth := greatest(candidates, k);
    IF fusion = 'rrf' THEN
        PERFORM sparsesql._check_range('sparsesql.hybrid_search', 'rrf_k', rrf_k, 0, 1000000);
        RETURN QUERY
        WITH s AS (SELECT * FROM sparsesql.bm25_search(collection, query, depth) WITH ORDINALITY AS t(doc_id, id, score, rank)),
             d AS (SELECT * FROM sparsesql.dense_search(collection, query_vector, depth) WITH ORDINALITY AS t(doc_id, id, score, rank)),
             ids AS (SELECT s.doc_id, s.id FROM s UNION SELECT d.doc_id, d.id FROM d)
        SELECT f.doc_id, ids.id, f.score
        FROM sparsesql.rrf(ARRAY(SELECT s.doc_id FROM s ORDER BY s.rank), ARRAY(SELECT d.doc_id FROM d ORDER BY d.rank), rrf_k) AS f
        JOIN ids ON ids.doc_id = f.doc_id
        ORDER BY f.score DESC, f.doc_id
        LIMIT k;
        RETURN;
    END IF;
    RETURN QUERY
    WITH s AS (SELECT * FROM sparsesql.bm25_search(collection, query, depth)),
         d AS (SELECT * FROM sparsesql.dense_search(collection, query_vector, depth)),
         sn AS (SELECT s.doc_id, s.id,
                       CASE WHEN r.hi > r.lo THEN (s.score - r.lo) / (r.hi - r.lo) ELSE 1.0::float8 END AS v
                FROM s CROSS JOIN (SELECT min(s.score) AS lo, max(s.score) AS hi FROM s) AS r),
         dn AS (SELECT d.doc_id, d.id,
                       CASE WHEN r.hi > r.lo THEN (d.score - r.lo) / (r.hi - r.lo) ELSE 1.0::float8 END AS v
                FROM d CROSS JOIN (SELECT min(d.score) AS lo, max(d.score) AS hi FROM d) AS r),
         floor AS (SELECT coalesce((SELECT min(sn.v) FROM sn), 0.0::float8) AS s,
                          coalesce((SELECT min(dn.v) FROM dn), 0.0::float8) AS d)
    SELECT coalesce(sn.doc_id, dn.doc_id), coalesce(sn.id, dn.id),
           0.5::float8 * coalesce(sn.v, floor.s) + 0.5::float8 * coalesce(dn.v, floor.d) AS fused
    FROM sn FULL JOIN dn ON dn.doc_id = sn.doc_id CROSS JOIN floor
    ORDER BY fused DESC, coalesce(sn.doc_id, dn.doc_id)
    LIMIT k;
END
$fn$;

COMMENT ON FUNCTION sparsesql.hybrid_search(text, text, vector, int, text, int, int) IS
    'top k documents by BM25 and dense search fused as the dialect''s HYBRID: minmax (default) or rrf';
