"""Each text field's total length, per collection: BM25F's average field lengths.

`SPARSE(:q, fields => (title => 2, body => 1))` normalises each text field's term counts by that
field's length over its average (Robertson and Zaragoza's BM25F). The averages are kept exact as
`n_docs` and `sum_len` are, by every write in its own transaction: `field_len[i]` is the sum of the
i-th text field's length over the collection's documents (empty for a collection made before, or
with fewer than two text fields, whose BM25 field's own length serves).

Revision ID: 0004_field_lengths
Revises: 0003_cursor_key
"""

from alembic import op

revision = "0004_field_lengths"
down_revision = "0003_cursor_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE sparsesql.collections ADD COLUMN field_len bigint[] NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE sparsesql.collections DROP COLUMN field_len")
