"""sparsesql's SQLAlchemy client: collections mapped as classes, searches composed with select().

    from sqlalchemy import select
    from sqlalchemy.orm import DeclarativeBase, Mapped
    from sparsesql.orm import Document, search, hybrid, sparse, dense, rrf, coverage

See docs/orm.md.
"""

from sparsesql.orm.connection import database_url
from sparsesql.orm.model import Document, collection_spec
from sparsesql.orm.search import (
    Facet,
    Hit,
    Search,
    average,
    coverage,
    dense,
    like,
    hybrid,
    linear,
    mmr,
    rm3,
    rocchio,
    rrf,
    search,
    sparse,
)
from sparsesql.orm.write import add, create_collection, drop_collection

__all__ = [
    "Document",
    "Facet",
    "Hit",
    "Search",
    "add",
    "average",
    "collection_spec",
    "coverage",
    "create_collection",
    "database_url",
    "dense",
    "like",
    "drop_collection",
    "hybrid",
    "linear",
    "mmr",
    "rm3",
    "rocchio",
    "rrf",
    "search",
    "sparse",
]
