"""The key that signs result cursors (`SELECT ..., cursor ... AFTER :cursor`, docs/dialect.md).

A cursor names a row of one search's ranking (its position, score and document) and the search
it belongs to. It is signed with HMAC-SHA256 under this database's key so that one altered in
transit, or made up, is refused instead of starting a page somewhere else. The key is 32 random
bytes made here, once per database: every process and server worker over the database accepts
the others' cursors, across restarts. A cursor grants nothing a query could not ask for itself,
so every role that can search may read the key.

Revision ID: 0003_cursor_key
Revises: 0002_posting_blocks
"""

import secrets

from alembic import op
from sqlalchemy import text

revision = "0003_cursor_key"
down_revision = "0002_posting_blocks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE sparsesql.cursor_key (key bytea NOT NULL CHECK (length(key) = 32), one boolean PRIMARY KEY DEFAULT true CHECK (one))")
    op.get_bind().execute(text("INSERT INTO sparsesql.cursor_key (key) VALUES (:key)"), {"key": secrets.token_bytes(32)})
    op.execute("GRANT SELECT ON sparsesql.cursor_key TO PUBLIC")


def downgrade() -> None:
    op.execute("DROP TABLE sparsesql.cursor_key")
