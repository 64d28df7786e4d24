"""The catalog: one row per collection with its fields, settings and exact statistics.

`n_docs` and `sum_len` (the sum of document lengths) are kept exact by every write in the same
transaction as the write, so BM25's N and avgdl computed at query time are never stale.
`version` counts committed writes; in-memory tiers compare it to know when to refresh.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from sparsesql.errors import CheckError, ConfigError

SCHEMA = "sparsesql"
CATALOG_REVISION = "0004_field_lengths"

# Declared field types: the names a user may write -> the PostgreSQL type stored.
FIELD_TYPES = {
    "text": "text",
    "int": "integer",
    "integer": "integer",
    "bigint": "bigint",
    "real": "real",
    "float": "double precision",
    "double": "double precision",
    "double precision": "double precision",
    "numeric": "numeric",
    "bool": "boolean",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
}
NUMERIC_TYPES = {"integer", "bigint", "real", "double precision", "numeric"}
# Columns of every collection, and the names a document's vectors go by (Collection.add's
# "vector" and "sparse", INSERT's embedding and sparse, the ORM's `embedding`).
RESERVED = {"id", "metadata", "score", "doc_id", "doc_len", "content_hash", "terms", "vector", "embedding", "sparse", "positions", "field_tfs", "field_lens"}
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
DENSE_MODELS = {"minilm-l6": 384}


@dataclass(frozen=True)
class Field:
    name: str
    type: str


@dataclass(frozen=True)
class SparseField:
    """One sparse representation of every document, with its own vocabulary, postings and df.

    `kind` is "bm25" (the analyzer's terms, BM25 at query time; at most one per collection) or
    "learned" (a model's tokens with weights, scored by dot product). A learned field's `model`
    is the local masked-LM folder that encodes its documents (and, in full mode, its queries),
    or "none" when the vectors are supplied with each document. `slot` places the field's
    storage: slot 0 is the docs table's own term_ids/weights/doc_len with `<c>__vocab` and
    `<c>__postings` (the BM25 field when there is one, so the catalog's sum_len is its
    length); slot i > 0 adds the columns term_ids__i/weights__i and the tables `<c>__vocab__i`,
    `<c>__postings__i` (a number, not the name, keeps every table name within PostgreSQL's 63).
    """

    name: str
    kind: str = "bm25"
    model: str = "none"
    slot: int = 0
    top_k: int | None = None  # learned, encoded at ingest: keep each document's top_k weights

    @property
    def bm25(self) -> bool:
        return self.kind == "bm25"

    def column(self, base: str) -> sql.Identifier:
        """The docs table's column `term_ids` or `weights` of this field."""
        return sql.Identifier(base if self.slot == 0 else f"{base}__{self.slot}")


@dataclass(frozen=True)
class Settings:
    """How a collection analyses and embeds; fixed at creation.

    `sparse` is the kind of slot 0 ("bm25" or "precomputed": what the SQL functions of the
    extension read); `sparse_fields` lists every sparse field in the order declared, empty for
    collections made before there could be several (their one field is derived from `sparse`).
    """

    sparse: str = "bm25"
    dense: str = "minilm-l6"
    dim: int = 384
    k1: float = 0.9
    b: float = 0.4
    text_fields: tuple[str, ...] = ()
    sparse_fields: tuple[SparseField, ...] = ()
    positions: bool = False  # the docs table's `positions` (BM25 terms in text order, for phrases); older collections lack it
    field_stats: bool = False  # the docs table's `field_tfs`/`field_lens` and the catalog's field_len (BM25F over two or more text fields)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    fields: tuple[Field, ...]
    settings: Settings
    n_docs: int = 0
    sum_len: int = 0
    version: int = 0
    extra: dict = field(default_factory=dict, compare=False)
    created: str = ""  # creation time as text: tells a re-created namesake apart
    field_len: tuple[int, ...] = ()  # each text field's total length (BM25F's averages; two or more text fields only)

    def table(self, kind: str) -> sql.Identifier:
        """The schema-qualified table `sparsesql.<name>__<kind>` (docs, postings, vocab, dense)."""
        return sql.Identifier(SCHEMA, f"{self.name}__{kind}")

    def field_table(self, sparse: SparseField, kind: str) -> sql.Identifier:
        """A sparse field's `vocab` or `postings` table."""
        return self.table(kind if sparse.slot == 0 else f"{kind}__{sparse.slot}")

    @property
    def sparse_fields(self) -> tuple[SparseField, ...]:
        if self.settings.sparse_fields:
            return self.settings.sparse_fields
        if self.settings.sparse == "bm25":
            return (SparseField("bm25"),)
        return (SparseField(self.settings.sparse, "learned"),)

    def sparse_field(self, name: str | None = None) -> SparseField:
        """A sparse field by name; None is the first declared (what SPARSE(:q) searches)."""
        fields = self.sparse_fields
        if name is None:
            return fields[0]
        for f in fields:
            if f.name == name.lower():
                return f
        raise CheckError(
            f"collection {self.name!r} has no sparse field {name!r} (sparse fields: {', '.join(f.name for f in fields)})"
        )

    def field_type(self, name: str) -> str | None:
        """The PostgreSQL type of a selectable column, or None when the name is unknown."""
        if name == "id":
            return "text"
        if name == "metadata":
            return "jsonb"
        for f in self.fields:
            if f.name == name:
                return f.type
        return None

    @property
    def buckets(self) -> list[int] | None:
        """A distributed collection's distribution values, one per Citus shard, or None on one
        node. Document d's rows (its row, vector, postings, log entries) carry
        buckets[d % len(buckets)] in their `shard` column, so they share a shard, and each
        shard holds posting blocks of its own documents only."""
        return (self.extra.get("distributed") or {}).get("buckets")

    def shard_of(self, doc_ids: list[int]) -> list[int]:
        """The `shard` value of each document (distributed collections only)."""
        buckets = self.buckets
        return [buckets[d % len(buckets)] for d in doc_ids]

    @property
    def avgdl(self) -> float:
        return self.sum_len / self.n_docs if self.n_docs else 0.0


def check_name(name: str, what: str = "collection") -> str:
    """Fold to lowercase and require a plain identifier, so table names need no guessing."""
    folded = name.lower()
    if not NAME_RE.match(folded) or "__" in folded:
        raise CheckError(
            f"invalid {what} name {name!r}: use letters, digits and single underscores, "
            "starting with a letter or underscore, at most 48 characters"
        )
    return folded


def settings_from_json(data: dict) -> Settings:
    settings = dict(data)
    settings["text_fields"] = tuple(settings.get("text_fields", ()))
    settings["sparse_fields"] = tuple(SparseField(**f) for f in settings.get("sparse_fields", ()))
    return Settings(**settings)


def creation_options(settings: Settings) -> dict:
    """The WITH options that create a collection with these settings (autogenerate writes them
    into a drop_collection, to make it reversible)."""
    data = settings_json(settings)
    fields = settings.sparse_fields
    del data["sparse_fields"], data["positions"], data["field_stats"]
    if fields:
        data["sparse"] = [f.name for f in fields] if len(fields) > 1 else fields[0].name
        models = [f.model for f in fields if not f.bm25]
        if any(m != "none" for m in models):
            data["sparse_model"] = models if len(models) > 1 else models[0]
        top_k = [f.top_k for f in fields if f.top_k is not None]
        if top_k:
            data["sparse_top_k"] = top_k[0]
    return data


def _row_to_info(row: tuple) -> CollectionInfo:
    name, fields, settings, n_docs, sum_len, version, extra, created, field_len = row
    return CollectionInfo(
        name=name,
        fields=tuple(Field(f["name"], f["type"]) for f in fields),
        settings=settings_from_json(settings),
        n_docs=n_docs,
        sum_len=sum_len,
        version=version,
        extra=extra or {},
        created=created,
        field_len=tuple(field_len or ()),
    )


_SELECT = "SELECT name, fields, settings, n_docs, sum_len, version, extra, created_at::text, field_len FROM sparsesql.collections"


def get_collection(conn: psycopg.Connection, name: str) -> CollectionInfo | None:
    row = conn.execute(_SELECT + " WHERE name = %s", (name.lower(),)).fetchone()
    return _row_to_info(row) if row else None


def list_collections(conn: psycopg.Connection) -> list[CollectionInfo]:
    return [_row_to_info(r) for r in conn.execute(_SELECT + " ORDER BY name").fetchall()]


def settings_json(settings: Settings) -> dict:
    data = asdict(settings)
    data["text_fields"] = list(settings.text_fields)
    data["sparse_fields"] = [asdict(f) for f in settings.sparse_fields]
    return data


def set_extra(conn: psycopg.Connection, name: str, key: str, value: object) -> None:
    """Record a free-form fact about a collection (e.g. the fingerprint of its source corpus)."""
    from psycopg.types.json import Jsonb

    conn.execute(
        "UPDATE sparsesql.collections SET extra = extra || %s WHERE name = %s",
        (Jsonb({key: value}), name),
    )


def catalog_is_current(conn: psycopg.Connection) -> bool:
    """Whether the catalog is at CATALOG_REVISION, asked without failing the caller's transaction."""
    if conn.execute("SELECT to_regclass('sparsesql.alembic_version')").fetchone()[0] is None:
        return False
    return conn.execute("SELECT version_num FROM sparsesql.alembic_version").fetchone() == (CATALOG_REVISION,)


def conn_dsn(conn: psycopg.Connection) -> str:
    """The DSN of an open connection, password included, to open another one like it."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(conn.info.dsn, password=conn.info.password)


def ensure_catalog(conn: psycopg.Connection, dsn: str) -> None:
    """Bring the catalog to CATALOG_REVISION, running Alembic only when it is behind."""
    try:
        if catalog_is_current(conn):
            return
    except psycopg.Error as exc:
        raise ConfigError(f"cannot read the sparsesql catalog: {exc}") from exc
    from sparsesql.db.migrate import upgrade

    upgrade(dsn)
