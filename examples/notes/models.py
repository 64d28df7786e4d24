"""The notes app's model: one collection, mapped read-only with sparsesql.orm.Document."""

from sqlalchemy.orm import DeclarativeBase, Mapped

from sparsesql.orm import Document


class Base(DeclarativeBase):
    pass


class Note(Document, Base):
    __collection__ = "notes"
    __collection_options__ = {"dense": "minilm-l6"}

    title: Mapped[str | None]
    body: Mapped[str | None]
    year: Mapped[int | None]
