"""sparsesql serve: the PostgreSQL wire protocol over the same Database path as in-process use."""
