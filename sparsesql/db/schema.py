"""Per-collection tables and indexes: the one code path behind CREATE/DROP COLLECTION.

The dialect, the Python API and the Alembic operations all call `create_collection` and
`drop_collection` with a psycopg connection, inside the caller's transaction when there is one.

Tables of collection `c`, all in the `sparsesql` schema:
    c__docs      doc_id (internal), id (external, unique), declared fields, metadata jsonb,
                 doc_len (tokens after analysis), content_hash, and the document's sparse vector
                 as two aligned arrays, term_ids (ascending) and weights (BM25: term frequency;
                 precomputed: the supplied weight), with no cap on the number of terms; with a
                 BM25 field, `positions`: its term ids in text order, a token each (0 for a
                 stopword, -1 between two text fields), what phrases are matched against; with
                 two or more text fields, `field_tfs` (each term's count in each text field,
                 term by term as term_ids, field by field within) and `field_lens` (each text
                 field's length), what BM25F scores from
    c__postings  the inverted index in blocks: (term_id, block) -> doc_ids bigint[] ascending and
                 their tfs real[], at most BLOCK_POSTINGS a block, keyed by the block's first doc
                 id. Each ingest batch appends one block per term (more past BLOCK_POSTINGS); doc
                 ids only grow (writers hold the catalog row lock), so a term's blocks cover
                 disjoint, increasing ranges and the block holding doc d is the term's last
                 block whose key is <= d. A row per posting made the server maintain a btree
                 entry per posting: eight times slower to write and four times larger.
    c__vocab     term_id, term, df
    c__dense     doc_id -> embedding vector(dim)
    c__changes   seq -> (doc_id, added): every document added or removed, written in the same
                 transaction as the change, in commit order (writers hold the catalog row's
                 lock), so an in-memory tier catches up by reading past the last seq it applied
"""

from __future__ import annotations

from typing import Iterable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from sparsesql.db.catalog import (
    DENSE_MODELS,
    FIELD_TYPES,
    RESERVED,
    CollectionInfo,
    Field,
    Settings,
    SparseField,
    check_name,
    get_collection,
    settings_json,
)
from sparsesql.errors import CheckError, ConfigError

MAX_SPARSE_FIELDS = 8
BLOCK_POSTINGS = 1024  # a deleted document rewrites one block per term: a few KB each


def make_fields(fields: list[tuple[str, str]] | dict[str, str]) -> tuple[Field, ...]:
    """Validate declared fields: plain names, not reserved, not repeated, of a known type."""
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    out: list[Field] = []
    for name, type_name in pairs:
        folded = check_name(name, "field")
        if folded in RESERVED:
            raise CheckError(f"field name {folded!r} is reserved (reserved: {', '.join(sorted(RESERVED))})")
        if any(f.name == folded for f in out):
            raise CheckError(f"field {folded!r} is declared twice")
        canonical = FIELD_TYPES.get(" ".join(type_name.lower().split()))
        if canonical is None:
            raise CheckError(
                f"field {folded!r} has unknown type {type_name!r}; known types: {', '.join(sorted(FIELD_TYPES))}"
            )
        out.append(Field(folded, canonical))
    return tuple(out)


def _option_number(options: dict, name: str, default: float, *, integer: bool = False) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        raise CheckError(f"option {name} => expects {kind}, got {value!r}")
    return int(value) if integer else float(value)


def make_settings(fields: tuple[Field, ...], options: dict) -> Settings:
    """Turn CREATE COLLECTION's WITH options into settings, refusing unknown or bad ones."""
    known = {"dense", "sparse", "sparse_model", "sparse_top_k", "dim", "k1", "b", "text_fields"}
    unknown = set(options) - known
    if unknown:
        raise CheckError(f"unknown option {sorted(unknown)[0]} => for a collection; known options: {', '.join(sorted(known | PLACEMENT))}")
    sparse_fields = make_sparse_fields(options)
    dense = str(options.get("dense", "minilm-l6"))
    if dense.lower() in DENSE_MODELS:
        dense = dense.lower()
        dim = DENSE_MODELS[dense]
        if "dim" in options and _option_number(options, "dim", dim, integer=True) != dim:
            raise CheckError(f"option dim => {options['dim']} does not match dense model {dense!r}, which has {dim}")
    elif dense.lower() == "none":
        dense = "none"
        if "dim" not in options:
            raise CheckError("option dense => 'none' (vectors supplied by you) needs dim => N")
        dim = _option_number(options, "dim", 0, integer=True)
    else:
        from sparsesql.encoders.dense import load_dense_encoder

        dim = load_dense_encoder(dense).dim
    if not 1 <= dim <= 16000:
        raise CheckError(f"option dim => {dim} is out of range: pgvector's vector holds 1 to 16000 dimensions")
    k1, b = _option_number(options, "k1", 0.9), _option_number(options, "b", 0.4)
    if k1 < 0 or not 0 <= b <= 1:
        raise CheckError(f"option {'k1' if k1 < 0 else 'b'} => is out of range: BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1 => {k1}, b => {b})")
    text_fields = options.get("text_fields")
    declared_text = tuple(f.name for f in fields if f.type == "text")
    if text_fields is None:
        text_fields = declared_text
    else:
        listed = [text_fields] if isinstance(text_fields, str) else text_fields
        if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
            raise CheckError(f"option text_fields => expects a field name or a list of them, got {text_fields!r}")
        text_fields = tuple(t.lower() for t in listed)
        for t in text_fields:
            if t not in declared_text:
                raise CheckError(f"option text_fields => names {t!r}, which is not a declared text field")
    return Settings(
        sparse="bm25" if sparse_fields[0].bm25 else "precomputed",
        dense=dense,
        dim=dim,
        k1=k1,
        b=b,
        text_fields=text_fields,
        sparse_fields=sparse_fields,
        positions=any(f.bm25 for f in sparse_fields),
        field_stats=any(f.bm25 for f in sparse_fields) and len(text_fields) > 1,
    )


def _names(options: dict, key: str, default: object) -> list[str]:
    value = options.get(key, default)
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, list) or not listed or not all(isinstance(v, str) for v in listed):
        raise CheckError(f"option {key} => expects a name or a non-empty list of names, got {value!r}")
    return listed


def make_sparse_fields(options: dict) -> tuple[SparseField, ...]:
    """The sparse fields of `sparse => ['bm25', 'splade']`, `sparse_model => ...` and
    `sparse_top_k => n`, in declared order. 'bm25' is the analyzer's field; any other name is a
    learned field, encoded by its entry of sparse_model (one local folder per learned field, or
    'none': vectors supplied at ingest; no sparse_model means all supplied). A model folder is
    loaded here, so a wrong path fails CREATE COLLECTION rather than the first ingest."""
    names: list[str] = []
    for raw in _names(options, "sparse", "bm25"):
        name = check_name(raw, "sparse field")
        if name in names:
            raise CheckError(f"option sparse => names field {name!r} twice")
        names.append(name)
    if len(names) > MAX_SPARSE_FIELDS:
        raise CheckError(f"option sparse => declares {len(names)} fields; a collection holds at most {MAX_SPARSE_FIELDS}")
    learned = [n for n in names if n != "bm25"]
    models = ["none"] * len(learned)
    if "sparse_model" in options:
        models = _names(options, "sparse_model", None)
        if not learned:
            raise CheckError("option sparse_model => needs a learned sparse field: name one in sparse => ['bm25', 'splade']")
        if len(models) != len(learned):
            raise CheckError(
                f"option sparse_model => gives {len(models)} model(s) for {len(learned)} learned field(s) "
                f"({', '.join(learned)}): one local folder (or 'none') per learned field, in order"
            )
    top_k = None
    if "sparse_top_k" in options:
        top_k = int(_option_number(options, "sparse_top_k", 0, integer=True))
        if top_k < 1:
            raise CheckError(f"option sparse_top_k => must be at least 1, got {top_k}")
        if all(m.lower() == "none" for m in models):
            raise CheckError("option sparse_top_k => prunes model-encoded documents; no field has a sparse_model")
    resolved = {}
    for name, model in zip(learned, models):
        if model.lower() == "none":
            resolved[name] = "none"
        else:
            from sparsesql.encoders.sparse import load_sparse_encoder

            try:
                resolved[name] = load_sparse_encoder(model).path
            except ConfigError as exc:
                raise CheckError(f"option sparse_model => for field {name!r}: {exc.message}") from None
    primary = "bm25" if "bm25" in names else names[0]
    slots = {primary: 0, **{n: i + 1 for i, n in enumerate(n for n in names if n != primary)}}
    return tuple(
        SparseField(n)
        if n == "bm25"
        else SparseField(n, "learned", resolved[n], slots[n], top_k if resolved[n] != "none" else None)
        for n in names
    )


def postings_ddl(postings: sql.Composable, *, sharded: bool = False) -> list[sql.Composed]:
    """The block posting table (with the `shard` distribution column when `sharded`). Its
    arrays are stored uncompressed (ids and small floats barely compress, and every write would
    pay for trying)."""
    shard, key = (sql.SQL("shard integer NOT NULL, "), sql.SQL("shard, ")) if sharded else (sql.SQL(""), sql.SQL(""))
    return [
        sql.SQL(
            "CREATE TABLE {} ({}term_id integer NOT NULL, block bigint NOT NULL, doc_ids bigint[] NOT NULL, "
            "tfs real[] NOT NULL, PRIMARY KEY ({}term_id, block))"
        ).format(postings, shard, key),
        sql.SQL("ALTER TABLE {} ALTER doc_ids SET STORAGE EXTERNAL, ALTER tfs SET STORAGE EXTERNAL").format(postings),
    ]


def _vocab_ddl(vocab: sql.Composable) -> sql.Composed:
    """The vocabulary. Every ingest batch updates the df of each of its terms (tens of thousands
    of rows a batch); with half of each page free those updates stay on their page (HOT, no
    index entries): 0.121 -> 0.048 ms a document in batches of 5,000, measured by timing
    each statement of a 20,000-document load."""
    return sql.SQL(
        "CREATE TABLE {} (term_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "term text NOT NULL UNIQUE, df integer NOT NULL DEFAULT 0 CHECK (df >= 0)) WITH (fillfactor = 50)"
    ).format(vocab)


def _ddl(info: CollectionInfo, *, sharded: bool = False) -> list[sql.Composable]:
    """The collection's tables; `sharded` gives the distributed layout, where every per-document
    table carries the `shard` column Citus places rows by (catalog.CollectionInfo.buckets) and
    each unique key includes it, as Citus requires. `id` is then indexed, not UNIQUE: ids stay
    unique because every write holds the collection's catalog row lock while it checks them."""
    docs, dense = info.table("docs"), info.table("dense")
    columns = sql.SQL("").join(
        sql.SQL("{} {}, ").format(sql.Identifier(f.name), sql.SQL(f.type)) for f in info.fields
    )
    extra = [f for f in info.sparse_fields if f.slot > 0]
    arrays = sql.SQL("").join(
        sql.SQL(", {} integer[] NOT NULL, {} real[] NOT NULL").format(f.column("term_ids"), f.column("weights")) for f in extra
    )
    if sharded:
        identity = sql.SQL("shard integer NOT NULL, id text NOT NULL")
        key, dense_key = sql.SQL(", PRIMARY KEY (doc_id, shard)"), sql.SQL("doc_id bigint NOT NULL, shard integer NOT NULL")
        dense_ref = sql.SQL(", PRIMARY KEY (doc_id, shard), FOREIGN KEY (doc_id, shard) REFERENCES {} ON DELETE CASCADE").format(docs)
        log = sql.SQL("shard integer NOT NULL, seq bigint GENERATED ALWAYS AS IDENTITY, doc_id bigint NOT NULL, added boolean NOT NULL, PRIMARY KEY (shard, seq)")
    else:
        identity, key = sql.SQL("id text NOT NULL UNIQUE"), sql.SQL("")
        dense_key, dense_ref = sql.SQL("doc_id bigint PRIMARY KEY REFERENCES {} ON DELETE CASCADE").format(docs), sql.SQL("")
        log = sql.SQL("seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, doc_id bigint NOT NULL, added boolean NOT NULL")
    positions = sql.SQL(", positions integer[] NOT NULL" if info.settings.positions else "")
    if info.settings.field_stats:
        positions += sql.SQL(", field_tfs real[] NOT NULL, field_lens integer[] NOT NULL")
    statements: list[sql.Composable] = [
        sql.SQL(
            "CREATE TABLE {} (doc_id bigint GENERATED BY DEFAULT AS IDENTITY{}, {}, {}metadata jsonb NOT NULL DEFAULT '{{}}', "
            "doc_len integer NOT NULL CHECK (doc_len >= 0), content_hash text NOT NULL, "
            "term_ids integer[] NOT NULL, weights real[] NOT NULL{}{}{})"
        ).format(docs, sql.SQL("") if sharded else sql.SQL(" PRIMARY KEY"), identity, columns, arrays, positions, key),
    ]
    if sharded:
        statements.append(sql.SQL("CREATE INDEX {} ON {} (id)").format(sql.Identifier(f"{info.name}__docs_id_idx"), docs))
    for f in sorted(info.sparse_fields, key=lambda f: f.slot):
        statements += [_vocab_ddl(info.field_table(f, "vocab")), *postings_ddl(info.field_table(f, "postings"), sharded=sharded)]
    return statements + [
        sql.SQL("CREATE TABLE {} ({}, embedding vector({}) NOT NULL{})").format(dense, dense_key, sql.Literal(info.settings.dim), dense_ref),
        sql.SQL("CREATE TABLE {} ({})").format(info.table("changes"), log),
    ]


def create_collection(
    conn: psycopg.Connection,
    name: str,
    fields: list[tuple[str, str]] | dict[str, str],
    options: dict | None = None,
    *,
    if_not_exists: bool = False,
) -> CollectionInfo:
    """Create the catalog row and the tables of a collection, atomically."""
    name = check_name(name)
    declared = make_fields(fields)
    options = dict(options or {})
    shards = placement(options)
    settings = make_settings(declared, options)
    info = CollectionInfo(name=name, fields=declared, settings=settings)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sparsesql.collection.' || %s))", (name,))
        existing = get_collection(conn, name)
        if existing is not None:
            if if_not_exists:
                return existing
            raise CheckError(f"collection {name!r} already exists (use CREATE COLLECTION IF NOT EXISTS)")
        conn.execute(
            "INSERT INTO sparsesql.collections (name, fields, settings) VALUES (%s, %s, %s)",
            (name, Jsonb([{"name": f.name, "type": f.type} for f in declared]), Jsonb(settings_json(settings))),
        )
        for statement in _ddl(info, sharded=shards is not None):
            conn.execute(statement)
        if shards is not None:
            _distribute(conn, info, shards)
    return info


MAX_SHARDS = 1024
PLACEMENT = {"distributed", "shards"}  # options that place the tables rather than say how documents are scored


def placement(options: dict) -> int | None:
    """`distributed => true[, shards => n]`, taken out of `options`: the shard count, or None."""
    distributed = options.pop("distributed", False)
    shards = options.pop("shards", None)
    if not isinstance(distributed, bool):
        raise CheckError(f"option distributed => expects true or false, got {distributed!r}")
    if shards is not None and not distributed:
        raise CheckError("option shards => applies to a distributed collection: add distributed => true")
    if not distributed:
        return None
    shards = 32 if shards is None else shards
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise CheckError(f"option shards => expects a whole number from 1 to {MAX_SHARDS}, got {shards!r}")
    return shards


def _distribute(conn: psycopg.Connection, info: CollectionInfo, shards: int) -> list[int]:
    """Spread a collection's empty tables in the sharded layout over the Citus workers: the
    per-document tables (documents, vectors, postings, change log) co-located by `shard`, the
    vocabularies and the catalog as reference tables (a copy on every node). Returns the
    distribution values, one per shard, recorded in the catalog row (CollectionInfo.buckets).

    A search's joins carry `shard = shard`, so Citus runs each of them on every shard, where
    the shard computes its exact top k, and merges those (docs/scaling.md). With the
    vocabularies and catalog left local, Citus 14.0.1's coordinator crashed (signal 11) on the
    sparse statements, which join them to distributed tables."""
    _require_citus(conn)
    docs = info.table("docs").as_string(conn)  # the regclass text Citus' functions take
    conn.execute("SELECT create_distributed_table(%s, 'shard', shard_count => %s)", (docs, shards))
    placed = [info.table("dense"), info.table("changes"), *(info.field_table(f, "postings") for f in info.sparse_fields)]
    for table in placed:
        conn.execute("SELECT create_distributed_table(%s, 'shard', colocate_with => %s)", (table.as_string(conn), docs))
    for field in info.sparse_fields:
        conn.execute("SELECT create_reference_table(%s)", (info.field_table(field, "vocab").as_string(conn),))
    if conn.execute("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'sparsesql.collections'::regclass").fetchone() is None:
        conn.execute("SELECT create_reference_table('sparsesql.collections')")
    # The smallest value hashing into each shard, in hash order: document d goes to shard
    # d % shards, round robin, and every shard holds only blocks of its own documents.
    buckets = [r[0] for r in conn.execute(
        "SELECT min(v) FROM generate_series(0, %s) AS v JOIN pg_dist_shard AS s ON s.logicalrelid = %s::regclass "
        "AND worker_hash(v) BETWEEN s.shardminvalue::int AND s.shardmaxvalue::int GROUP BY s.shardminvalue "
        "ORDER BY s.shardminvalue::int",
        (64 * shards + 1024, docs),
    ).fetchall()]
    if len(buckets) != shards:
        raise ConfigError(f"Citus made {len(buckets)} hash ranges with integers below {64 * shards + 1024} for {shards} shards")
    tables = ["docs", "dense", "changes", "postings"]
    conn.execute(
        "UPDATE sparsesql.collections SET extra = extra || %s WHERE name = %s",
        (Jsonb({"distributed": {"shards": shards, "by": "shard", "tables": tables, "buckets": buckets}}), info.name),
    )
    return buckets


def _require_citus(conn: psycopg.Connection) -> None:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() is None:
        raise ConfigError(
            "distributed => true needs the citus extension in this database (CREATE EXTENSION citus on a Citus "
            "coordinator; `sparsesql cluster start` runs a local cluster)"
        )


def _kinds(info: CollectionInfo) -> list[str]:
    """The collection's own tables, in the order they can be dropped (the graph is not one:
    BUILD GRAPH makes it, and a new layout keeps it)."""
    fields = sorted(info.sparse_fields, key=lambda f: f.slot)
    return ["changes", *(k if f.slot == 0 else f"{k}__{f.slot}" for f in fields for k in ("postings", "vocab")), "dense", "docs"]


def user_indexes(conn: psycopg.Connection, info: CollectionInfo, kinds: Iterable[str]) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the indexes on the collection's tables of `kinds` that
    are not its own (no key or unique constraint's, not the distributed layout's index on id):
    the ones a user or a migration made."""
    constraint_indexes = "SELECT conname FROM pg_constraint WHERE connamespace = 'sparsesql'::regnamespace"
    return [tuple(r) for r in conn.execute(
        f"SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'sparsesql' AND tablename = ANY(%s) "
        f"AND indexname NOT IN ({constraint_indexes}) AND indexname <> %s ORDER BY indexname",
        ([f"{info.name}__{k}" for k in kinds], f"{info.name}__docs_id_idx"),
    ).fetchall()]


def _relayout(conn: psycopg.Connection, info: CollectionInfo, shards: int | None) -> None:
    """Rebuild the collection's tables in the other layout, distributed over `shards` shards or
    back on the coordinator (None), with every row, id, sequence position, index and grant as it
    was; the caller holds the transaction. Citus' own undistribute_table refuses tables with
    identity columns and ALTER TABLE cannot add the distribution column to a distributed table,
    so the rows go through temporary copies: document ids, term ids and change-log positions
    keep their values, and posting blocks are formed again from the documents' term arrays
    (per shard when distributed)."""
    kinds = _kinds(info)
    names = [f"{info.name}__{k}" for k in kinds]
    indexes = [definition for _, definition in user_indexes(conn, info, kinds)]
    grants = conn.execute(
        "SELECT c.relname, a.privilege_type, coalesce(r.rolname, 'PUBLIC') FROM pg_class AS c "
        "CROSS JOIN LATERAL aclexplode(c.relacl) AS a LEFT JOIN pg_roles AS r ON r.oid = a.grantee "
        "WHERE c.relnamespace = 'sparsesql'::regnamespace AND c.relname = ANY(%s) AND a.grantee <> c.relowner",
        (names,),
    ).fetchall()
    kept = [k for k in kinds if not k.startswith("postings")]  # postings are formed again from the documents
    columns = {k: [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'shard' "
        "ORDER BY attnum", (f'sparsesql."{info.name}__{k}"',)).fetchall()] for k in kept}
    identities = [("docs", "doc_id"), ("changes", "seq"), *((k, "term_id") for k in kinds if k.startswith("vocab"))]
    positions = [conn.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, %s))", (f'sparsesql."{info.name}__{k}"', column)).fetchone()[0]
                 for k, column in identities]
    for k in kept:
        conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT * FROM {}").format(sql.Identifier(f"was__{k}"), info.table(k)))
    for k in kinds:
        conn.execute(sql.SQL("DROP TABLE {}").format(info.table(k)))
    conn.execute("UPDATE sparsesql.collections SET extra = extra - 'distributed' WHERE name = %s", (info.name,))
    for statement in _ddl(info, sharded=shards is not None):
        conn.execute(statement)
    buckets = _distribute(conn, info, shards) if shards is not None else None
    for k in reversed(kept):
        listed = [sql.Identifier(c) for c in columns[k]]
        target, source = list(listed), list(listed)
        if buckets and k in ("docs", "dense", "changes"):
            target.append(sql.Identifier("shard"))
            source.append(sql.SQL("({}::int[])[doc_id % {} + 1]").format(sql.Literal(buckets), sql.Literal(len(buckets))))
        conn.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
            info.table(k), sql.SQL(", ").join(target), sql.SQL(", ").join(source), sql.Identifier(f"was__{k}")))
    for f in info.sparse_fields:
        _form_blocks(conn, info, f, sharded=buckets is not None)
    for (k, column), last in zip(identities, positions):
        if last is not None:
            conn.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s)", (f'sparsesql."{info.name}__{k}"', column, last))
    for definition in indexes:
        conn.execute(definition)
    for table, privilege, grantee in grants:
        role = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), sql.Identifier("sparsesql", table), role))


def _form_blocks(conn: psycopg.Connection, info: CollectionInfo, field: SparseField, *, sharded: bool) -> None:
    """One field's posting blocks from the documents' own term arrays: each term's documents in
    id order (per shard when sharded), BLOCK_POSTINGS to a block keyed by its first id, so a
    term's blocks cover disjoint, increasing ranges as ingest keeps them."""
    shard = sql.SQL("d.shard, ") if sharded else sql.SQL("")
    conn.execute(sql.SQL(
        "INSERT INTO {p} ({shard_col}term_id, block, doc_ids, tfs) SELECT {shard_col}term_id, min(doc_id), "
        "array_agg(doc_id ORDER BY doc_id), array_agg(tf ORDER BY doc_id) FROM (SELECT {shard}t.term_id, d.doc_id, t.tf, "
        "(row_number() OVER (PARTITION BY {shard}t.term_id ORDER BY d.doc_id) - 1) / {n} AS part "
        "FROM {docs} AS d CROSS JOIN LATERAL unnest(d.{terms}, d.{weights}) AS t(term_id, tf)) AS x "
        "GROUP BY {shard_col}term_id, part"
    ).format(
        p=info.field_table(field, "postings"), shard=shard, shard_col=sql.SQL("shard, ") if sharded else sql.SQL(""),
        n=sql.Literal(BLOCK_POSTINGS), docs=info.table("docs"), terms=field.column("term_ids"), weights=field.column("weights"),
    ))


def distribute_collection(conn: psycopg.Connection, name: str, shards: int = 32) -> None:
    """Distribute an existing collection as `distributed => true` would have made it (its rows
    move to the workers), in one transaction."""
    placement({"distributed": True, "shards": shards})
    with conn.transaction():
        info = _locked(conn, name)
        if info.buckets:
            raise CheckError(f"collection {info.name!r} is distributed already")
        _require_citus(conn)
        _relayout(conn, info, shards)


def undistribute_collection(conn: psycopg.Connection, name: str) -> None:
    """Bring a distributed collection's rows back into tables of the coordinator alone (the way
    back from distribute_collection), in one transaction."""
    with conn.transaction():
        info = _locked(conn, name)
        if not info.buckets:
            raise CheckError(f"collection {info.name!r} is not distributed")
        _relayout(conn, info, None)


def _locked(conn: psycopg.Connection, name: str) -> CollectionInfo:
    info = require_collection(conn, name)
    conn.execute("SELECT 1 FROM sparsesql.collections WHERE name = %s FOR UPDATE", (info.name,))
    return require_collection(conn, name)


def drop_collection(conn: psycopg.Connection, name: str, *, if_exists: bool = False) -> bool:
    """Drop a collection's tables and catalog row; False when it did not exist and if_exists."""
    name = check_name(name)
    with conn.transaction():
        info = get_collection(conn, name)
        if info is None:
            if if_exists:
                return False
            raise CheckError(f"collection {name!r} does not exist")
        tables = [info.field_table(f, kind) for f in info.sparse_fields for kind in ("postings", "vocab")]
        for table in [info.table("graph"), info.table("changes"), *tables, info.table("dense"), info.table("docs")]:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute("DELETE FROM sparsesql.collections WHERE name = %s", (name,))
    return True


def require_collection(conn: psycopg.Connection, name: str) -> CollectionInfo:
    info = get_collection(conn, check_name(name))
    if info is None:
        raise CheckError(f"collection {name!r} does not exist")
    return info

