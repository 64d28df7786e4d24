-- sparsesql 0.7 -> 0.6: hybrid_search's 'auto' weights as before, each list's peakedness over its
-- own rows only.

\echo Use "ALTER EXTENSION sparsesql UPDATE TO '0.6'" to load this file. \quit

-- HYBRID(SPARSE(query), DENSE(query_vector)) of the dialect: each side takes its top
-- `candidates` (at least k, the depth), then:
--   'auto' (default)  min-max per list, weights p / (p_sparse + p_dense) where a list's
--                     peakedness p = 1 - the mean of its scaled scores (0 for an empty list;
--                     0.5 each when both are 0): `linear(alpha => auto)`, the bare HYBRID;
--   'minmax'          min-max per list, equal weights: `linear(alpha => 0.5)`;
--   'rrf'             sparsesql.rrf with k => rrf_k: `rrf(k => rrf_k)`.
-- Min-max: a document missing from a list gets that list's lowest scaled score (0, or 1 when
-- all its scores are equal). The BM25 list is exhaustive when it holds fewer than depth rows
-- (every other document matches no term and scores 0): it then scales from min(lowest, 0) and a
-- missing document gets 0. The dense list has no floor. Both sides read one snapshot (STABLE).
CREATE OR REPLACE FUNCTION sparsesql.hybrid_search(
    collection text, query text, query_vector vector, k int DEFAULT 10,
    fusion text DEFAULT 'auto', candidates int DEFAULT 200, rrf_k int DEFAULT 60)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    depth int;
BEGIN
    PERFORM sparsesql._collection('sparsesql.hybrid_search', collection);
    PERFORM sparsesql._check_range('sparsesql.hybrid_search', 'k', k, 1, 100000);
    PERFORM sparsesql._check_range('sparsesql.hybrid_search', 'candidates', candidates, 1, 100000);
    IF fusion IS NULL OR fusion NOT IN ('auto', 'minmax', 'rrf') THEN
        RAISE EXCEPTION 'sparsesql.hybrid_search: fusion must be ''auto'', ''minmax'' or ''rrf'', got %', coalesce(quote_literal(fusion), 'NULL')
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
         -- each list's size and range; the BM25 list's low end is the floor 0 when it is exhaustive
         sr AS (SELECT count(*) AS n, count(*) < depth AS floored, max(s.score) AS hi,
                       CASE WHEN count(*) < depth THEN least(min(s.score), 0.0::float8) ELSE min(s.score) END AS lo
                FROM s),
         dr AS (SELECT count(*) AS n, false AS floored, max(d.score) AS hi, min(d.score) AS lo FROM d),
         sn AS (SELECT s.doc_id, s.id, CASE WHEN r.hi > r.lo THEN (s.score - r.lo) / (r.hi - r.lo) ELSE 1.0::float8 END AS v
                FROM s CROSS JOIN sr AS r),
         dn AS (SELECT d.doc_id, d.id, CASE WHEN r.hi > r.lo THEN (d.score - r.lo) / (r.hi - r.lo) ELSE 1.0::float8 END AS v
                FROM d CROSS JOIN dr AS r),
         -- a missing document's scaled score: 1 only for a list of equal scores without a floor
         absent AS (SELECT CASE WHEN sr.n = 0 OR sr.hi > sr.lo OR sr.floored THEN 0.0::float8 ELSE 1.0::float8 END AS s,
                           CASE WHEN dr.n = 0 OR dr.hi > dr.lo OR dr.floored THEN 0.0::float8 ELSE 1.0::float8 END AS d
                    FROM sr CROSS JOIN dr),
         peak AS (SELECT coalesce(1.0::float8 - (SELECT avg(sn.v) FROM sn), 0.0::float8) AS s,
                         coalesce(1.0::float8 - (SELECT avg(dn.v) FROM dn), 0.0::float8) AS d),
         w AS (SELECT CASE WHEN fusion = 'minmax' OR peak.s + peak.d <= 0 THEN 0.5::float8 ELSE peak.s / (peak.s + peak.d) END AS s,
                      CASE WHEN fusion = 'minmax' OR peak.s + peak.d <= 0 THEN 0.5::float8 ELSE peak.d / (peak.s + peak.d) END AS d
               FROM peak)
    SELECT coalesce(sn.doc_id, dn.doc_id), coalesce(sn.id, dn.id),
           w.s * coalesce(sn.v, absent.s) + w.d * coalesce(dn.v, absent.d) AS fused
    FROM sn FULL JOIN dn ON dn.doc_id = sn.doc_id CROSS JOIN absent CROSS JOIN w
    ORDER BY fused DESC, coalesce(sn.doc_id, dn.doc_id)
    LIMIT k;
END
$fn$;

COMMENT ON FUNCTION sparsesql.hybrid_search(text, text, vector, int, text, int, int) IS
    'top k documents by BM25 and dense search fused as the dialect''s HYBRID: auto (default: min-max, each list weighted by its peakedness), minmax (equal weights) or rrf';
