-- sparsesql 0.4 -> 0.3: without sparse fields' search functions.

\echo Use "ALTER EXTENSION sparsesql UPDATE TO '0.3'" to load this file. \quit

DROP FUNCTION sparsesql.sparse_search(text, text, int, text);
DROP FUNCTION sparsesql.sparse_search(text, text[], int, text);
DROP FUNCTION sparsesql.sparse_search(text, jsonb, int, text);
DROP FUNCTION sparsesql._sparse(text, jsonb, text, int, text[], float8[], int, boolean);
DROP FUNCTION sparsesql._field(text, text, jsonb, text);
