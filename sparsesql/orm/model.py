"""Mapping a collection to a class: the documents table as a read-only SQLAlchemy entity.

    class Base(DeclarativeBase):
        pass

    class Paper(Document, Base):
        __collection__ = "papers"
        title: Mapped[str | None]
        year: Mapped[int | None]

`Paper` maps `sparsesql.papers__docs` (plus, deferred, its sparse `term_ids`/`weights` and its dense `embedding`
from `papers__dense`), so plain `select(Paper).where(...)` works as usual and
`sparsesql.orm.search` adds retrieval on top. The declared attributes are the collection's
fields: `collection_spec(Paper)` turns them into the fields and options of CREATE COLLECTION,
which `create_collection` and Alembic's autogenerate use.

Documents are written through sparsesql (`sparsesql.orm.add`, `Collection.add`, `sparsesql
ingest`), never by flushing instances: a row written past the engine would miss its postings,
vector and statistics, so the mapper refuses inserts, updates and deletes with a message that
says where to write instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pgvector.sqlalchemy import VECTOR
from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Float, Integer, Numeric, String, Table, Text, event, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL
from sqlalchemy.orm import Mapped, column_property, declared_attr, mapped_column
from sqlalchemy.types import TypeEngine

from sparsesql.db.catalog import SCHEMA, check_name
from sparsesql.errors import CheckError

# Columns every documents table has that are not declared fields.
ENGINE_COLUMNS = ("doc_id", "id", "metadata", "doc_len", "content_hash", "term_ids", "weights", "positions", "field_tfs", "field_lens")


class Document:
    """Mixin for a declarative class mapped to a collection named by `__collection__`.

    `__collection_options__` holds CREATE COLLECTION's WITH options (dense model, dim, k1, b,
    text_fields) for `create_collection` and autogenerate.
    """

    __collection__: ClassVar[str]
    __collection_options__: ClassVar[dict[str, Any]] = {}

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return f"{check_name(cls.__collection__)}__docs"

    @declared_attr.directive
    def __table_args__(cls) -> dict:
        info = {"sparsesql_collection": check_name(cls.__collection__), "sparsesql_options": dict(cls.__collection_options__)}
        return {"schema": SCHEMA, "info": info}

    doc_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[str] = mapped_column(Text, unique=True)
    meta: Mapped[dict] = mapped_column("metadata", JSONB, default=dict)
    # The sparse vector as aligned arrays: term ids ascending, weights (BM25: term frequency).
    term_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer), deferred=True)
    weights: Mapped[list[float]] = mapped_column(ARRAY(REAL), deferred=True)

    @property
    def terms(self) -> dict[int, float]:
        """The document's sparse vector, term id -> weight (loads the two deferred arrays)."""
        return dict(zip(self.term_ids, self.weights))

    @declared_attr
    def embedding(cls) -> Mapped[Any]:
        """The dense vector as pgvector's VECTOR type returns it, loaded from the collection's vector table on first access."""
        dense = Table(
            f"{check_name(cls.__collection__)}__dense",
            cls.metadata,
            Column("doc_id", BigInteger, primary_key=True),
            Column("embedding", VECTOR),
            schema=SCHEMA,
            extend_existing=True,
        )
        return column_property(select(dense.c.embedding).where(dense.c.doc_id == cls.doc_id).scalar_subquery(), deferred=True)


def _field_type(column_type: TypeEngine) -> str:
    """The CREATE COLLECTION type of a mapped column's SQLAlchemy type."""
    for cls, name in (
        (Boolean, "boolean"),
        (BigInteger, "bigint"),
        (Integer, "integer"),
        (Float, "double precision"),
        (Numeric, "numeric"),
        (DateTime, "timestamptz"),
        (Date, "date"),
        (String, "text"),
    ):
        if isinstance(column_type, cls):
            if cls is DateTime and not column_type.timezone:
                return "timestamp"
            if cls is Float and getattr(column_type, "precision", None) and column_type.precision <= 24:
                return "real"
            return name
    raise CheckError(f"column type {column_type!r} has no collection field type (use str, int, float, bool, date, datetime)")


def table_spec(table: Table) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(name, fields, options) of the collection a mapped table declares (what autogenerate reads)."""
    fields = {c.name: _field_type(c.type) for c in table.columns if c.name not in ENGINE_COLUMNS}
    return table.info["sparsesql_collection"], fields, dict(table.info.get("sparsesql_options", {}))


def collection_spec(entity: type) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(name, fields, options) of the collection a mapped class declares."""
    name, fields, _ = table_spec(mapped_table(entity))
    return name, fields, dict(entity.__collection_options__)


def mapped_table(entity: type) -> Table:
    """The documents table of a class mapped with `Document`, or a clear error."""
    if not (isinstance(entity, type) and issubclass(entity, Document) and hasattr(entity, "__table__")):
        raise CheckError(f"{entity!r} is not mapped to a collection: subclass sparsesql.orm.Document and a DeclarativeBase")
    return entity.__table__


def mapped_collection(entity: type) -> str:
    """The collection name of a class mapped with `Document`, or a clear error."""
    return mapped_table(entity).info["sparsesql_collection"]


def _refuse_write(mapper: Any, connection: Any, target: Document) -> None:
    raise CheckError(
        f"{type(target).__name__} rows are written through sparsesql (sparsesql.orm.add or Collection.add), "
        "which keeps postings, vectors and statistics in step; the ORM maps collections read-only"
    )


for _event in ("before_insert", "before_update", "before_delete"):
    event.listen(Document, _event, _refuse_write, propagate=True)
