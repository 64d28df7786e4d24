"""An HNSW index on the notes' vectors and the kNN graph DIVERSIFY ... hops walks.

Revision ID: 0002_notes_indexes
Revises: 0001_notes
"""

from alembic import op

import sparsesql.migrations  # noqa: F401

revision = "0002_notes_indexes"
down_revision = "0001_notes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_dense_index("notes", method="hnsw", m=16, ef_construction=64)
    op.build_graph("notes", k=8)


def downgrade() -> None:
    op.drop_graph("notes")
    op.drop_dense_index("notes")
