-- sparsesql 0.1: the analyzer, BM25 search and dense search over sparsesql's collections.
--
-- Functions only: the catalog (sparsesql.collections) and the collection tables belong to
-- sparsesql's migrations, so dropping this extension never touches data. Every function runs
-- with the caller's rights (SECURITY INVOKER): a role searches what it may SELECT, row-level
-- security included. Table names are built only with format('%I') and only after the
-- collection was found in the catalog; every value travels as a parameter of EXECUTE ... USING.
-- Scores follow the dialect's SQL stages term for term (see sparsesql/retrieval/*.py), so a
-- search here returns the same documents and scores as the same search in the dialect.

\echo Use "CREATE EXTENSION sparsesql CASCADE" to load this file. \quit

-- Snowball's English stemmer (version 3 of the algorithm, as PyStemmer 3 ships it), because
-- PostgreSQL's english_stem runs an older Snowball whose stems differ for some words
-- (biologist, organization, interval, ...) and so would miss terms sparsesql indexed.
-- Input: one lowercase token of word characters, as sparsesql.analyze produces them.
-- Positions are 0-based offsets, like Snowball's cursor: R1 = w[p1:], R2 = w[p2:].
CREATE FUNCTION sparsesql.stem(word text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER AS $fn$
DECLARE
    w text := word;
    n int := length(word);
    p1 int;
    p2 int;
    s int;
    suffix text;
    y_found boolean := false;
    -- a short syllable ends the text: consonant-vowel-consonant (not w, x or Y), or a word
    -- that is vowel-consonant, or "past" (pasted, pasting)
    short_syllable constant text := '([^aeiouy][aeiouy][^aeiouywxY]|^[aeiouy][^aeiouy]|past)$';
BEGIN
    CASE w
        WHEN 'skis' THEN RETURN 'ski';
        WHEN 'skies' THEN RETURN 'sky';
        WHEN 'idly' THEN RETURN 'idl';
        WHEN 'gently' THEN RETURN 'gentl';
        WHEN 'ugly' THEN RETURN 'ugli';
        WHEN 'early' THEN RETURN 'earli';
        WHEN 'only' THEN RETURN 'onli';
        WHEN 'singly' THEN RETURN 'singl';
        WHEN 'sky', 'news', 'howe', 'atlas', 'cosmos', 'bias', 'andes' THEN RETURN w;
        ELSE NULL;
    END CASE;
    IF n < 3 THEN
        RETURN w;
    END IF;

    -- prelude: a y that starts the word or follows a vowel is a consonant, written Y
    IF strpos(w, 'y') > 0 THEN
        IF left(w, 1) = 'y' THEN
            w := 'Y' || substr(w, 2);
            y_found := true;
        END IF;
        FOR i IN 2..n LOOP
            IF substr(w, i, 1) = 'y' AND strpos('aeiouy', substr(w, i - 1, 1)) > 0 THEN
                w := left(w, i - 1) || 'Y' || substr(w, i + 1);
                y_found := true;
            END IF;
        END LOOP;
    END IF;

    -- regions: after the first non-vowel that follows a vowel (a few prefixes count whole)
    p1 := CASE
        WHEN left(w, 5) IN ('gener', 'arsen', 'later', 'emerg', 'organ', 'inter') THEN 5
        WHEN left(w, 6) = 'commun' THEN 6
        WHEN left(w, 4) = 'past' THEN 4
        WHEN left(w, 7) = 'univers' THEN 7
        ELSE coalesce(length(substring(w FROM '^.*?[aeiouy][^aeiouy]')), n)
    END;
    p2 := p1 + coalesce(length(substring(substr(w, p1 + 1) FROM '^.*?[aeiouy][^aeiouy]')), n - p1);

    -- step 1a: plurals
    IF right(w, 4) = 'sses' THEN
        w := left(w, -2);
    ELSIF right(w, 3) IN ('ied', 'ies') THEN
        w := left(w, -3) || CASE WHEN length(w) > 4 THEN 'i' ELSE 'ie' END;
    ELSIF right(w, 2) IN ('us', 'ss') THEN
        NULL;
    ELSIF right(w, 1) = 's' AND left(w, -2) ~ '[aeiouy]' THEN
        w := left(w, -1);
    END IF;

    -- step 1b: -eed, -ed, -ing and their -ly forms
    n := length(w);
    IF right(w, 5) = 'eedly' OR right(w, 3) = 'eed' THEN
        s := n - CASE WHEN right(w, 5) = 'eedly' THEN 5 ELSE 3 END;
        IF left(w, s) NOT IN ('proc', 'exc', 'succ') AND s >= p1 THEN
            w := left(w, s) || 'ee';
        END IF;
    ELSE
        suffix := CASE
            WHEN right(w, 5) = 'ingly' THEN 'ingly'
            WHEN right(w, 4) = 'edly' THEN 'edly'
            WHEN right(w, 3) = 'ing' THEN 'ing'
            WHEN right(w, 2) = 'ed' THEN 'ed'
        END;
        s := n - length(suffix);
        IF suffix = 'ing' AND s = 2 AND substr(w, 2, 1) = 'y' AND strpos('aeiouy', left(w, 1)) = 0 THEN
            w := left(w, 1) || 'ie';  -- dying, lying, tying, vying
        ELSIF suffix = 'ing' AND left(w, s) IN ('inn', 'out', 'cann', 'herr', 'earr', 'even') THEN
            NULL;  -- inning, outing, canning, herring, earring, evening
        ELSIF suffix IS NOT NULL AND left(w, s) ~ '[aeiouy]' THEN
            w := left(w, s);
            IF right(w, 2) IN ('at', 'bl', 'iz') THEN
                w := w || 'e';
            ELSIF right(w, 2) IN ('bb', 'dd', 'ff', 'gg', 'mm', 'nn', 'pp', 'rr', 'tt') THEN
                IF NOT (length(w) = 3 AND strpos('aeo', left(w, 1)) > 0) THEN
                    w := left(w, -1);
                END IF;
            ELSIF p1 = length(w) AND w ~ short_syllable THEN
                w := w || 'e';
            END IF;
        END IF;
    END IF;

    -- step 1c: a final y after a consonant (not the first letter) becomes i
    IF w ~ '.[^aeiouy][yY]$' THEN
        w := left(w, -1) || 'i';
    END IF;

    -- step 2: double suffixes in R1
    n := length(w);
    suffix := CASE
        WHEN right(w, 7) IN ('ational', 'ization', 'iveness', 'fulness', 'ousness') THEN right(w, 7)
        WHEN right(w, 6) IN ('tional', 'biliti', 'lessli') THEN right(w, 6)
        WHEN right(w, 5) IN ('entli', 'alism', 'aliti', 'ousli', 'iviti', 'fulli', 'ogist', 'ation') THEN right(w, 5)
        WHEN right(w, 4) IN ('enci', 'anci', 'abli', 'izer', 'ator', 'alli') THEN right(w, 4)
        WHEN right(w, 3) IN ('bli', 'ogi') THEN right(w, 3)
        WHEN right(w, 2) = 'li' THEN 'li'
    END;
    s := n - length(suffix);
    IF s >= p1 THEN
        IF suffix = 'ogi' THEN
            IF substr(w, s, 1) = 'l' THEN
                w := left(w, s) || 'og';
            END IF;
        ELSIF suffix = 'li' THEN
            IF s > 0 AND strpos('cdeghkmnrt', substr(w, s, 1)) > 0 THEN
                w := left(w, s);
            END IF;
        ELSE
            w := left(w, s) || CASE suffix
                WHEN 'tional' THEN 'tion' WHEN 'enci' THEN 'ence' WHEN 'anci' THEN 'ance'
                WHEN 'abli' THEN 'able' WHEN 'entli' THEN 'ent' WHEN 'izer' THEN 'ize'
                WHEN 'ization' THEN 'ize' WHEN 'ational' THEN 'ate' WHEN 'ation' THEN 'ate'
                WHEN 'ator' THEN 'ate' WHEN 'alism' THEN 'al' WHEN 'aliti' THEN 'al'
                WHEN 'alli' THEN 'al' WHEN 'fulness' THEN 'ful' WHEN 'ousli' THEN 'ous'
                WHEN 'ousness' THEN 'ous' WHEN 'iveness' THEN 'ive' WHEN 'iviti' THEN 'ive'
                WHEN 'biliti' THEN 'ble' WHEN 'bli' THEN 'ble' WHEN 'ogist' THEN 'og'
                WHEN 'fulli' THEN 'ful' WHEN 'lessli' THEN 'less'
            END;
        END IF;
    END IF;

    -- step 3: more suffixes in R1 (-ative only in R2)
    n := length(w);
    suffix := CASE
        WHEN right(w, 7) = 'ational' THEN 'ational'
        WHEN right(w, 6) = 'tional' THEN 'tional'
        WHEN right(w, 5) IN ('alize', 'icate', 'iciti', 'ative') THEN right(w, 5)
        WHEN right(w, 4) IN ('ical', 'ness') THEN right(w, 4)
        WHEN right(w, 3) = 'ful' THEN 'ful'
    END;
    s := n - length(suffix);
    IF s >= p1 AND (suffix <> 'ative' OR s >= p2) THEN
        w := left(w, s) || CASE suffix
            WHEN 'ational' THEN 'ate' WHEN 'tional' THEN 'tion' WHEN 'alize' THEN 'al'
            WHEN 'icate' THEN 'ic' WHEN 'iciti' THEN 'ic' WHEN 'ical' THEN 'ic' ELSE ''
        END;
    END IF;

    -- step 4: single suffixes in R2 (-ion after s or t)
    n := length(w);
    suffix := CASE
        WHEN right(w, 5) = 'ement' THEN 'ement'
        WHEN right(w, 4) IN ('ance', 'ence', 'able', 'ible', 'ment') THEN right(w, 4)
        WHEN right(w, 3) IN ('ate', 'iti', 'ous', 'ive', 'ize', 'ism', 'ion', 'ant', 'ent') THEN right(w, 3)
        WHEN right(w, 2) IN ('al', 'er', 'ic') THEN right(w, 2)
    END;
    s := n - length(suffix);
    IF s >= p2 AND (suffix <> 'ion' OR (s > 0 AND substr(w, s, 1) IN ('s', 't'))) THEN
        w := left(w, s);
    END IF;

    -- step 5: a final e in R2, or in R1 after no short syllable; a final ll in R2
    n := length(w);
    IF right(w, 1) = 'e' THEN
        IF n - 1 >= p2 OR (n - 1 >= p1 AND left(w, -1) !~ short_syllable) THEN
            w := left(w, -1);
        END IF;
    ELSIF right(w, 2) = 'll' AND n - 1 >= p2 THEN
        w := left(w, -1);
    END IF;

    IF y_found THEN
        w := replace(w, 'Y', 'y');
    END IF;
    RETURN w;
END
$fn$;

COMMENT ON FUNCTION sparsesql.stem(text) IS
    'Snowball English stem of one lowercase token, as PyStemmer 3 (sparsesql''s analyzer) computes it';

-- The analyzer of sparsesql/analysis.py: lowercase, runs of two or more word characters, the
-- 33 stopwords dropped (before stemming), each remaining token stemmed; repeats kept, in order.
CREATE FUNCTION sparsesql.analyze(query text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER AS $fn$
    SELECT coalesce(array_agg(sparsesql.stem(t.token[1]) ORDER BY t.n), '{}')
    FROM regexp_matches(lower(query), E'\\w\\w+', 'g') WITH ORDINALITY AS t(token, n)
    WHERE t.token[1] <> ALL ('{a,an,and,are,as,at,be,but,by,for,if,in,into,is,it,no,not,of,on,or,such,that,the,their,then,there,these,they,this,to,was,will,with}'::text[])
$fn$;

COMMENT ON FUNCTION sparsesql.analyze(text) IS
    'the terms sparsesql indexes for a text: lowercase, 2+ word characters, stopwords dropped, Snowball English stems';

-- The catalog row of a collection, or a clear error: no other function builds a table name
-- before this one has found the collection. Names fold to lowercase, as in the dialect.
CREATE FUNCTION sparsesql._collection(caller text, collection text, OUT name text, OUT settings jsonb)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
BEGIN
    IF collection IS NULL THEN
        RAISE EXCEPTION '%: collection must not be NULL', caller USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF to_regclass('sparsesql.collections') IS NULL THEN
        RAISE EXCEPTION '%: sparsesql''s catalog (table sparsesql.collections) does not exist in database %',
            caller, current_database()
            USING ERRCODE = 'undefined_table',
                  HINT = 'Create it with sparsesql''s migrations: run `sparsesql migrate`, or connect once with sparsesql.connect().';
    END IF;
    SELECT c.name, c.settings INTO name, settings FROM sparsesql.collections AS c WHERE c.name = lower(collection);
    IF NOT FOUND THEN
        RAISE EXCEPTION '%: collection % does not exist', caller, quote_literal(collection)
            USING ERRCODE = 'undefined_object', HINT = 'SELECT name FROM sparsesql.collections lists this database''s collections.';
    END IF;
END
$fn$;

COMMENT ON FUNCTION sparsesql._collection(text, text) IS 'internal: a collection''s catalog row, or an error naming it';

CREATE FUNCTION sparsesql._check_range(caller text, what text, value int, low int, high int) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY INVOKER AS $fn$
BEGIN
    IF value IS NULL OR value < low OR value > high THEN
        RAISE EXCEPTION '%: % must be between % and %, got %', caller, what, low, high, coalesce(value::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$fn$;

COMMENT ON FUNCTION sparsesql._check_range(text, text, int, int, int) IS 'internal: an integer argument within bounds, or an error';

-- BM25 as sparsesql/retrieval/sparse.py's score_sql writes it (the same statement, so the same
-- sums): Lucene's idf, k1 and b from the collection's settings (as numeric, like the dialect's
-- literals), N and avgdl from the catalog row, read in the same statement. Precomputed (learned)
-- sparse collections score by dot product. The query is either terms with weights (looked up in
-- the vocabulary) or term ids with weights.
CREATE FUNCTION sparsesql._bm25(coll text, settings jsonb, terms text[], term_ids int[], weights float8[], k int)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
DECLARE
    qw text := CASE WHEN terms IS NOT NULL
        THEN format('SELECT v.term_id, x.w FROM unnest($1::text[], $3::float8[]) AS x(term, w) JOIN sparsesql.%I AS v ON v.term = x.term', coll || '__vocab')
        ELSE 'SELECT x.term_id, x.w FROM unnest($2::int[], $3::float8[]) AS x(term_id, w)'
    END;
    total text := CASE WHEN settings->>'sparse' = 'precomputed'
        THEN 'sum(q.w * p.tf)'
        ELSE 'sum(q.w * ln(1 + (s.n - q.df + 0.5) / (q.df + 0.5)) * p.tf / (p.tf + $5 * (1 - $6 + $6 * d.doc_len / s.avgdl)))'
    END;
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH ranked AS (WITH qw AS (%1$s), '
        'q AS (SELECT v.term_id, v.df, qw.w FROM qw JOIN sparsesql.%2$I AS v ON v.term_id = qw.term_id WHERE v.df > 0), '
        's AS (SELECT n_docs::float8 AS n, sum_len::float8 / greatest(n_docs, 1) AS avgdl FROM sparsesql.collections WHERE name = $7) '
        'SELECT d.doc_id, %3$s AS score FROM q JOIN sparsesql.%4$I AS p ON p.term_id = q.term_id '
        'JOIN sparsesql.%5$I AS d ON d.doc_id = p.doc_id CROSS JOIN s WHERE TRUE '
        'GROUP BY d.doc_id ORDER BY score DESC, d.doc_id LIMIT $4) '
        'SELECT d.doc_id, d.id, ranked.score FROM ranked JOIN sparsesql.%5$I AS d ON d.doc_id = ranked.doc_id '
        'ORDER BY ranked.score DESC, d.doc_id',
        qw, coll || '__vocab', total, coll || '__postings', coll || '__docs')
    USING terms, term_ids, weights, k, (settings->>'k1')::numeric, (settings->>'b')::numeric, coll;
END
$fn$;

COMMENT ON FUNCTION sparsesql._bm25(text, jsonb, text[], int[], float8[], int) IS
    'internal: the top k documents by BM25 (or dot product) for weighted terms or term ids';

CREATE FUNCTION sparsesql.bm25_search(collection text, terms text[], k int DEFAULT 10)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    c record;
    uniq text[];
    counts float8[];
BEGIN
    c := sparsesql._collection('sparsesql.bm25_search', collection);
    PERFORM sparsesql._check_range('sparsesql.bm25_search', 'k', k, 1, 100000);
    IF terms IS NULL THEN
        RAISE EXCEPTION 'sparsesql.bm25_search: terms must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF array_position(terms, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'sparsesql.bm25_search: terms must not contain NULL (element %)', array_position(terms, NULL)
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- a repeated term weighs as often as it occurs, terms in order of first occurrence (as the
    -- dialect's Counter), so the sums add up in the same order
    SELECT array_agg(t.term ORDER BY t.first), array_agg(t.n ORDER BY t.first) INTO uniq, counts
    FROM (SELECT u.term, min(u.pos) AS first, count(*)::float8 AS n
          FROM unnest(terms) WITH ORDINALITY AS u(term, pos) GROUP BY u.term) AS t;
    RETURN QUERY SELECT * FROM sparsesql._bm25(c.name, c.settings, coalesce(uniq, '{}'), NULL, coalesce(counts, '{}'), k);
END
$fn$;

COMMENT ON FUNCTION sparsesql.bm25_search(text, text[], int) IS
    'top k documents of a collection by BM25 for already analysed terms (a repeated term counts twice)';

CREATE FUNCTION sparsesql.bm25_search(collection text, query text, k int DEFAULT 10)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    c record;
BEGIN
    c := sparsesql._collection('sparsesql.bm25_search', collection);
    IF query IS NULL THEN
        RAISE EXCEPTION 'sparsesql.bm25_search: query must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF c.settings->>'sparse' = 'precomputed' THEN
        RAISE EXCEPTION 'sparsesql.bm25_search: collection % stores precomputed sparse vectors, which text cannot be analysed into', quote_literal(c.name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Search it with its tokens, bm25_search(collection, ARRAY[...]), or a sparsevec of term ids.';
    END IF;
    RETURN QUERY SELECT * FROM sparsesql.bm25_search(c.name, sparsesql.analyze(query), k);
END
$fn$;

COMMENT ON FUNCTION sparsesql.bm25_search(text, text, int) IS
    'top k documents of a collection by BM25 for a text, analysed as sparsesql analyses documents';

CREATE FUNCTION sparsesql.bm25_search(collection text, query sparsevec, k int DEFAULT 10)
RETURNS TABLE(doc_id bigint, id text, score double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    c record;
    ids int[];
    weights float8[];
BEGIN
    c := sparsesql._collection('sparsesql.bm25_search', collection);
    PERFORM sparsesql._check_range('sparsesql.bm25_search', 'k', k, 1, 100000);
    IF query IS NULL THEN
        RAISE EXCEPTION 'sparsesql.bm25_search: query must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- pgvector's text form numbers indices from 1; term t sits at index t, as in c__docs.terms
    SELECT array_agg(m[1]::int - 1 ORDER BY m[1]::int), array_agg(m[2]::real::float8 ORDER BY m[1]::int) INTO ids, weights
    FROM regexp_matches(query::text, '(\d+):([^,}]+)', 'g') AS m;
    IF EXISTS (SELECT FROM unnest(weights) AS w WHERE w < 0) THEN
        RAISE EXCEPTION 'sparsesql.bm25_search: query weights must be >= 0' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM sparsesql._bm25(c.name, c.settings, NULL, coalesce(ids, '{}'), coalesce(weights, '{}'), k);
END
$fn$;

COMMENT ON FUNCTION sparsesql.bm25_search(text, sparsevec, int) IS
    'top k documents of a collection for a sparsevec of term weights, indexed by term_id as the terms column is';

-- Cosine similarity through pgvector, as sparsesql/retrieval/dense.py: ordered by distance
-- (an HNSW index on the embeddings serves it when there is one), then by score and doc_id.
CREATE FUNCTION sparsesql.dense_search(collection text, query vector, k int DEFAULT 10)
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

COMMENT ON FUNCTION sparsesql.dense_search(text, vector, int) IS
    'top k documents of a collection by cosine similarity of their embeddings to a query vector';
