-- sparsesql 0.3 -> 0.4: sparse fields. A collection may hold several sparse representations
-- (BM25 and learned ones, such as a SPLADE model's), each with its own vocabulary and posting
-- blocks; sparse_search searches any of them as the dialect's SPARSE(:q, field => ...) does.
-- A learned field scores by dot product; given bare tokens it weights each by the field's idf
-- (the dialect's mode => inference_free). Text goes through sparsesql.analyze for a BM25
-- field only: a learned field's model runs in the application, not in the server.

\echo Use "ALTER EXTENSION sparsesql UPDATE TO '0.4'" to load this file. \quit

-- The sparse field `field` of a collection (NULL: the first declared), or a clear error. A
-- collection made before sparse fields has one, named after its kind.
CREATE FUNCTION sparsesql._field(caller text, coll text, settings jsonb, field text, OUT name text, OUT kind text, OUT slot int)
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
DECLARE
    fields jsonb := coalesce(settings->'sparse_fields', '[]'::jsonb);
BEGIN
    IF jsonb_array_length(fields) = 0 THEN
        fields := jsonb_build_array(jsonb_build_object('name', settings->>'sparse', 'slot', 0,
            'kind', CASE WHEN settings->>'sparse' = 'bm25' THEN 'bm25' ELSE 'learned' END));
    END IF;
    SELECT f->>'name', f->>'kind', (f->>'slot')::int INTO name, kind, slot
    FROM jsonb_array_elements(fields) WITH ORDINALITY AS e(f, i)
    WHERE field IS NULL OR f->>'name' = lower(field) ORDER BY i LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION '%: collection % has no sparse field % (sparse fields: %)', caller, quote_literal(coll), quote_literal(field),
            (SELECT string_agg(f->>'name', ', ' ORDER BY i) FROM jsonb_array_elements(fields) WITH ORDINALITY AS e(f, i))
            USING ERRCODE = 'undefined_object';
    END IF;
END
$fn$;

COMMENT ON FUNCTION sparsesql._field(text, text, jsonb, text) IS 'internal: a collection''s sparse field by name, or an error naming it';

-- One sparse field's top k for weighted terms, as sparsesql/retrieval/sparse.py's score_sql
-- writes it: BM25 for the BM25 field; for a learned field the dot product, with each term's
-- weight multiplied by Lucene's idf when `idf` (inference-free); sums in term-id order.
CREATE FUNCTION sparsesql._sparse(coll text, settings jsonb, kind text, slot int, terms text[], weights float8[], k int, idf boolean)
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

COMMENT ON FUNCTION sparsesql._sparse(text, jsonb, text, int, text[], float8[], int, boolean) IS
    'internal: the top k documents of one sparse field for weighted terms';

CREATE FUNCTION sparsesql.sparse_search(collection text, query jsonb, k int DEFAULT 10, field text DEFAULT NULL)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    c record;
    f record;
    terms text[];
    weights float8[];
BEGIN
    c := sparsesql._collection('sparsesql.sparse_search', collection);
    f := sparsesql._field('sparsesql.sparse_search', c.name, c.settings, field);
    PERFORM sparsesql._check_range('sparsesql.sparse_search', 'k', k, 1, 100000);
    IF query IS NULL OR jsonb_typeof(query) <> 'object' OR query = '{}'::jsonb THEN
        RAISE EXCEPTION 'sparsesql.sparse_search: query must be a non-empty JSON object of term -> weight, got %', coalesce(left(query::text, 60), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM jsonb_each(query) AS e WHERE jsonb_typeof(e.value) <> 'number' OR e.value::text::float8 < 0) THEN
        RAISE EXCEPTION 'sparsesql.sparse_search: query weights must be numbers >= 0 (term %)',
            (SELECT quote_literal(e.key) FROM jsonb_each(query) AS e WHERE jsonb_typeof(e.value) <> 'number' OR e.value::text::float8 < 0 LIMIT 1)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(e.key), array_agg(e.value::text::float8) INTO terms, weights FROM jsonb_each(query) AS e;
    RETURN QUERY SELECT * FROM sparsesql._sparse(c.name, c.settings, f.kind, f.slot, terms, weights, k, false);
END
$fn$;

COMMENT ON FUNCTION sparsesql.sparse_search(text, jsonb, int, text) IS
    'top k documents of a collection''s sparse field (NULL: the first declared) for {term: weight} in that field''s vocabulary';

CREATE FUNCTION sparsesql.sparse_search(collection text, tokens text[], k int DEFAULT 10, field text DEFAULT NULL)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    c record;
    f record;
    uniq text[];
    counts float8[];
BEGIN
    c := sparsesql._collection('sparsesql.sparse_search', collection);
    f := sparsesql._field('sparsesql.sparse_search', c.name, c.settings, field);
    PERFORM sparsesql._check_range('sparsesql.sparse_search', 'k', k, 1, 100000);
    IF tokens IS NULL OR array_position(tokens, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'sparsesql.sparse_search: tokens must not be NULL or contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT array_agg(t.term), array_agg(t.n) INTO uniq, counts
    FROM (SELECT u.term, count(*)::float8 AS n FROM unnest(tokens) AS u(term) GROUP BY u.term) AS t;
    RETURN QUERY SELECT * FROM sparsesql._sparse(c.name, c.settings, f.kind, f.slot, coalesce(uniq, '{}'), coalesce(counts, '{}'), k, f.kind <> 'bm25');
END
$fn$;

COMMENT ON FUNCTION sparsesql.sparse_search(text, text[], int, text) IS
    'top k documents of a sparse field for tokens, a repeated one counting twice: BM25, or for a learned field each token weighted by its idf (inference-free)';

CREATE FUNCTION sparsesql.sparse_search(collection text, query text, k int DEFAULT 10, field text DEFAULT NULL)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    c record;
    f record;
BEGIN
    c := sparsesql._collection('sparsesql.sparse_search', collection);
    f := sparsesql._field('sparsesql.sparse_search', c.name, c.settings, field);
    IF query IS NULL THEN
        RAISE EXCEPTION 'sparsesql.sparse_search: query must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF f.kind <> 'bm25' THEN
        RAISE EXCEPTION 'sparsesql.sparse_search: sparse field % of collection % is learned: its model reads text in the application, not in SQL', quote_literal(f.name), quote_literal(c.name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the model''s {term: weight} encoding as jsonb, or the query''s tokens as text[] (inference-free).';
    END IF;
    RETURN QUERY SELECT * FROM sparsesql.sparse_search(c.name, sparsesql.analyze(query), k, f.name);
END
$fn$;

COMMENT ON FUNCTION sparsesql.sparse_search(text, text, int, text) IS
    'top k documents of a collection''s BM25 field for a text, analysed as sparsesql analyses documents';
