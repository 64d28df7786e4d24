"""sparsesql (catalog + extension functions) and the notes collection.

Revision ID: 0001_notes
Revises:
"""

from alembic import op

import sparsesql.migrations  # noqa: F401

revision = "0001_notes"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.install_extension()
    op.create_collection("notes", {"title": "text", "body": "text", "year": "int"}, dense="minilm-l6")


def downgrade() -> None:
    op.drop_collection("notes")
    op.uninstall_extension()
