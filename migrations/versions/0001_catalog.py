"""The catalog: pgvector, the sparsesql schema and the collections table.

Revision ID: 0001_catalog
Revises:
"""

from alembic import op
from sqlalchemy import text

revision = "0001_catalog"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("CREATE SCHEMA IF NOT EXISTS sparsesql")
    op.execute(
        """
        CREATE TABLE sparsesql.collections (
            name       text PRIMARY KEY,
            fields     jsonb NOT NULL,
            settings   jsonb NOT NULL,
            n_docs     bigint NOT NULL DEFAULT 0 CHECK (n_docs >= 0),
            sum_len    bigint NOT NULL DEFAULT 0 CHECK (sum_len >= 0),
            version    bigint NOT NULL DEFAULT 0,
            extra      jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    """Drop every collection's tables, then the catalog; pgvector stays (others may use it)."""
    bind = op.get_bind()
    for (name,) in bind.execute(text("SELECT name FROM sparsesql.collections")).fetchall():
        for kind in ("graph", "changes", "postings", "vocab", "dense", "docs"):
            op.execute(f'DROP TABLE IF EXISTS sparsesql."{name}__{kind}"')
    op.execute("DROP TABLE sparsesql.collections")
