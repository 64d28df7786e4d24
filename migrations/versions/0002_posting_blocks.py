"""Posting blocks: every collection's postings as (term_id, block) -> doc_ids[], tfs[], and each
document's own sparse vector as two arrays (term_ids, weights) in place of a sparsevec.

A row per posting cost the server a btree entry per posting: ingest ran eight times slower and
the table was four times larger. Blocks hold at most 1,024 postings (BLOCK_POSTINGS in
sparsesql/db/schema.py), keyed by their first doc id. The documents' arrays have no cap, where a
sparsevec held at most 16,000 nonzeros (past it, the column was NULL). The sparsesql extension's
BM25 function reads the new layout from version 0.3; an installed extension (or the plain
functions) is updated here, and taken back to 0.2 on downgrade.

The upgrade rewrites every documents row (its new arrays) and the posting table: on a large
collection, run `VACUUM FULL ANALYZE` on `sparsesql."<name>__docs"` afterwards to give back the
old row versions (measured on 1M synthetic documents: upgrade 474 s; the documents table went from
3.4 GB to 1.5 GB in a 28 s VACUUM FULL; its blocks take 1.4 GB, where rows would take about 11 GB
at the 57.6 MB per 494,721 postings measured for rows).

Revision ID: 0002_posting_blocks
Revises: 0001_catalog
"""

from alembic import op
from sqlalchemy import text

from sparsesql import extension

revision = "0002_posting_blocks"
down_revision = "0001_catalog"
branch_labels = None
depends_on = None

BLOCK = 1024


def _collections() -> list[str]:
    return [r[0] for r in op.get_bind().execute(text("SELECT name FROM sparsesql.collections ORDER BY name")).fetchall()]


def _set_aside(name: str) -> str:
    """Rename the posting table out of the way, dropping its primary key (whose name the new
    table's own key takes); returns the old table's qualified name."""
    old = f'sparsesql."{name}__postings_old"'
    op.execute(f'ALTER TABLE sparsesql."{name}__postings" RENAME TO "{name}__postings_old"')
    key = op.get_bind().execute(
        text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND contype = 'p'"), {"t": old}
    ).scalar()
    op.execute(f'ALTER TABLE {old} DROP CONSTRAINT "{key}"')
    return old


def _version(text_: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text_.split("."))


def _functions(source: str, target: str) -> None:
    """Bring sparsesql's SQL functions, as an extension or as plain functions, to `target`."""
    bind = op.get_bind()
    installed = bind.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'sparsesql'")).scalar()
    if installed is not None:
        upgrading = _version(source) < _version(target)
        behind = _version(installed) < _version(target) if upgrading else _version(installed) > _version(target)
        if behind:
            available = bind.execute(
                text("SELECT 1 FROM pg_available_extension_versions WHERE name = 'sparsesql' AND version = :v"), {"v": target}
            ).scalar()
            if available is None:
                raise RuntimeError(
                    f"the sparsesql extension {installed} is installed but this server lacks version {target}'s files; "
                    "run `sparsesql install-extension` on the server's host, then migrate again"
                )
            op.execute(f"ALTER EXTENSION sparsesql UPDATE TO '{target}'")
        return
    plain = bind.execute(text("SELECT to_regprocedure('sparsesql._bm25(text, jsonb, text[], int[], float8[], int)')")).scalar()
    if plain is not None:
        newer = bind.execute(text("SELECT to_regprocedure('sparsesql._sparse(text, jsonb, text, int, text[], float8[], int, boolean)')")).scalar()
        if newer is not None and _version(target) < _version("0.4"):  # 0.4's sparse fields read blocks too: back to 0.3 first
            op.execute(extension.update_sql("0.4", "0.3"))
        op.execute(extension.update_sql(source, target))


def upgrade() -> None:
    for name in _collections():
        docs = f'sparsesql."{name}__docs"'
        op.execute(f"ALTER TABLE {docs} ADD COLUMN term_ids integer[], ADD COLUMN weights real[]")
        op.execute(
            f"UPDATE {docs} AS d SET term_ids = x.t, weights = x.w FROM (SELECT doc_id, array_agg(term_id ORDER BY term_id) AS t, "
            f'array_agg(tf ORDER BY term_id) AS w FROM sparsesql."{name}__postings" GROUP BY doc_id) AS x WHERE d.doc_id = x.doc_id'
        )
        op.execute(f"UPDATE {docs} SET term_ids = '{{}}', weights = '{{}}' WHERE term_ids IS NULL")
        op.execute(f"ALTER TABLE {docs} ALTER term_ids SET NOT NULL, ALTER weights SET NOT NULL, DROP COLUMN terms")
        old = _set_aside(name)
        new = f'sparsesql."{name}__postings"'
        op.execute(
            f"CREATE TABLE {new} (term_id integer NOT NULL, block bigint NOT NULL, doc_ids bigint[] NOT NULL, "
            "tfs real[] NOT NULL, PRIMARY KEY (term_id, block))"
        )
        op.execute(f"ALTER TABLE {new} ALTER doc_ids SET STORAGE EXTERNAL, ALTER tfs SET STORAGE EXTERNAL")
        op.execute(
            f"INSERT INTO {new} SELECT term_id, min(doc_id), array_agg(doc_id ORDER BY doc_id), array_agg(tf ORDER BY doc_id) "
            f"FROM (SELECT term_id, doc_id, tf, (row_number() OVER (PARTITION BY term_id ORDER BY doc_id) - 1) / {BLOCK} AS chunk "
            f"FROM {old}) AS s GROUP BY term_id, chunk"
        )
        op.execute(f"DROP TABLE {old}")
    _functions("0.2", "0.3")


def downgrade() -> None:
    _functions("0.3", "0.2")
    for name in _collections():
        docs = f'sparsesql."{name}__docs"'
        old = _set_aside(name)
        new = f'sparsesql."{name}__postings"'
        op.execute(
            f"CREATE TABLE {new} (term_id integer NOT NULL, doc_id bigint NOT NULL, tf real NOT NULL, "
            "PRIMARY KEY (term_id, doc_id) INCLUDE (tf))"
        )
        op.execute(f"INSERT INTO {new} SELECT b.term_id, p.doc_id, p.tf FROM {old} AS b CROSS JOIN LATERAL unnest(b.doc_ids, b.tfs) AS p(doc_id, tf)")
        op.execute(f"CREATE INDEX ON {new} (doc_id)")
        op.execute(f"DROP TABLE {old}")
        op.execute(f"ALTER TABLE {docs} ADD COLUMN terms sparsevec")
        op.execute(
            f"UPDATE {docs} SET terms = CAST('{{' || coalesce((SELECT string_agg(u.t || ':' || u.w, ',' ORDER BY u.t) "
            "FROM unnest(term_ids, weights) AS u(t, w)), '') || '}/1000000000' AS sparsevec) WHERE cardinality(term_ids) <= 16000"
        )
        op.execute(f"ALTER TABLE {docs} DROP COLUMN term_ids, DROP COLUMN weights")
