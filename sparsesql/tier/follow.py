"""The life the dense codes and the filter columns share: built once per collection, brought to
each search's snapshot by the change log, persisted as one snapshot file.

`get` brings a collection's state to the version the search's catalog row shows, inside the
search's REPEATABLE READ snapshot, by reading the change log past the last entry applied
(deleted documents removed, added ones fetched). A new process starts from the snapshot under
`SPARSESQL_HOME/tiers/` and replays the changes since; without one it reads the collection from
PostgreSQL. A subclass says how to build, change, save and read back its own state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo
from sparsesql.tier.changes import TierAhead, TierRefused, changes_since
from sparsesql.tier.snapshots import read_snapshot, snapshot_folder, write_snapshot

T = TypeVar("T")
SAVE_SHARE = 0.1  # snapshot again once this share of the documents changed since the last save


@dataclass
class Followed(Generic[T]):
    data: T
    seq: int  # the last change-log entry applied
    identity: str  # the collection's creation time: a re-created namesake differs
    source: str  # the tier's `origin` (read from PostgreSQL) or "snapshot"
    load_ms: float
    version: int | None = None  # the catalog's write counter when the change log was last read
    changed: int = 0  # documents added or removed since the last snapshot


class FollowedTier(Generic[T]):
    """One kind of per-collection state; `Tiers.lock` guards its use and updates."""

    file = ""  # the snapshot's file name (without .npz)
    origin = ""  # what a load reads from PostgreSQL (EXPLAIN says "from <origin>")
    # Serve a first load from the snapshot it wrote, mapped, so the process keeps no private copy
    # of what other processes (a server's workers) map from the same file.
    remap = False

    def __init__(self, home: Path | None) -> None:
        self.home = home
        self.loaded: dict[str, Followed[T]] = {}

    # what a subclass provides
    def build(self, conn: psycopg.Connection, info: CollectionInfo) -> T:
        raise NotImplementedError

    def apply(self, conn: psycopg.Connection, info: CollectionInfo, data: T, removed: np.ndarray, added: list[int]) -> None:
        raise NotImplementedError

    def to_arrays(self, data: T) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def from_arrays(self, arrays: dict[str, np.ndarray], info: CollectionInfo) -> T | None:
        """The state a snapshot holds; None when its layout is older than this code's (built again)."""
        raise NotImplementedError

    def size(self, data: T) -> int:
        """How many documents `data` holds (a snapshot is rewritten after SAVE_SHARE of them changed)."""
        raise NotImplementedError

    def refused(self, data: T) -> str | None:
        """Why freshly loaded state may not serve (over a budget), or None."""
        return None

    def get(self, conn: psycopg.Connection, info: CollectionInfo) -> Followed[T]:
        """The collection's state as of the caller's snapshot, whose catalog row is `info`;
        raises TierRefused when it cannot serve it."""
        loaded = self.loaded.get(info.name)
        if loaded is None or loaded.identity != info.created:
            loaded = self._snapshot(info) or self._load(conn, info)
            refused = self.refused(loaded.data)
            if refused:
                raise TierRefused(refused)
            self.loaded[info.name] = loaded
        if loaded.version is not None and info.version < loaded.version:
            # Another session's newer snapshot moved the state past this one's: serving it would
            # answer for documents this snapshot cannot see.
            raise TierAhead(f"the memory tier is at version {loaded.version}, newer than this search's snapshot ({info.version})")
        if loaded.version != info.version:
            self._follow(conn, info, loaded)
            loaded.version = info.version
        return loaded

    def _load(self, conn: psycopg.Connection, info: CollectionInfo) -> Followed[T]:
        start = time.perf_counter()
        seq = conn.execute(sql.SQL("SELECT coalesce(max(seq), 0) FROM {}").format(info.table("changes"))).fetchone()[0]
        loaded = Followed(self.build(conn, info), seq, info.created, self.origin, (time.perf_counter() - start) * 1000)
        self._save(info, loaded)
        mapped = self._snapshot(info) if self.remap else None
        if mapped is None or mapped.seq != seq:
            return loaded
        mapped.source, mapped.load_ms = loaded.source, loaded.load_ms
        return mapped

    def _follow(self, conn: psycopg.Connection, info: CollectionInfo, loaded: Followed[T]) -> None:
        change = changes_since(conn, info, loaded.seq)
        if change is None:
            return
        removed, added, last = change
        self.apply(conn, info, loaded.data, removed, added)
        loaded.seq = last
        loaded.changed += len(removed) + len(added)
        if loaded.changed > SAVE_SHARE * max(self.size(loaded.data), 1000):
            self._save(info, loaded)

    def _save(self, info: CollectionInfo, loaded: Followed[T]) -> None:
        folder = snapshot_folder(self.home, info.name, loaded.identity)
        if folder is None:
            return
        write_snapshot(folder, self.file, self.to_arrays(loaded.data), {"seq": loaded.seq, "identity": loaded.identity})
        loaded.changed = 0

    def _snapshot(self, info: CollectionInfo) -> Followed[T] | None:
        folder = snapshot_folder(self.home, info.name, info.created)
        if folder is None or not (folder / f"{self.file}.npz").exists():
            return None
        start = time.perf_counter()
        meta, arrays = read_snapshot(folder / f"{self.file}.npz")
        if meta.get("identity") != info.created:
            return None
        data = self.from_arrays(arrays, info)
        if data is None:
            return None
        return Followed(data, int(meta["seq"]), info.created, "snapshot", (time.perf_counter() - start) * 1000)
