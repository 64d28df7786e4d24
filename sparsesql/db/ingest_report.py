"""What a write reports (documents added, updated, unchanged, rejected) and the upkeep it owes
the structures built over a collection's documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import psycopg

from sparsesql.db.catalog import CollectionInfo


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (position, why) of skipped documents

    def __iadd__(self, other: "IngestReport") -> "IngestReport":
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        return self


Hook = Callable[[psycopg.Connection, CollectionInfo, list[int]], None]


@dataclass(frozen=True)
class Upkeep:
    """What a write owes the structures built over a collection's documents: `added(conn, info,
    doc_ids)` runs after new rows (vectors included) are in, `removed` after rows are gone, both
    inside the batch's transaction so the structure commits or rolls back with the rows."""

    added: Hook
    removed: Hook
