"""A tier's snapshot files under SPARSESQL_HOME/tiers/: written whole and renamed, read back mapped."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np


def snapshot_folder(home: Path | None, name: str, identity: str) -> Path | None:
    """Where a collection's snapshot lives: its name and creation time, so a re-created namesake
    never loads the old one's."""
    if home is None:
        return None
    key = hashlib.sha256(f"{name}|{identity}".encode()).hexdigest()[:16]
    return home / "tiers" / f"{name}-{key}"


def write_snapshot(folder: Path, file: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """One file, written beside its final name and renamed whole: its arrays and its seq always
    agree, and a crash mid-write leaves the previous snapshot (or none)."""
    folder.mkdir(parents=True, exist_ok=True)
    _remove_orphans(folder, file)
    tmp = folder / f"{file}.{os.getpid()}.{threading.get_ident()}.tmp.npz"  # writers in other processes share the folder
    np.savez(tmp, **arrays, meta=np.array(json.dumps(meta)))
    tmp.replace(folder / f"{file}.npz")


def _remove_orphans(folder: Path, file: str) -> None:
    """Temporary files of writers that died before their rename (kill -9): a process that no
    longer exists will not finish them."""
    for tmp in folder.glob(f"{file}.*.tmp.npz"):
        pid = tmp.name.split(".")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)


def read_snapshot(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A snapshot's metadata and arrays, the arrays memory-mapped copy-on-write from the file.

    np.savez stores each array uncompressed, as a .npy member of a zip, so its bytes lie in the
    file as they lie in memory: mapping them lets every process on the machine share one copy
    through the page cache, and a new process answers before it has read the whole index (pages
    come in as queries touch them). A page the process writes (a deletion's alive flag) becomes
    its own; the file is never written. A later snapshot replaces the file by rename, so a
    mapped one stays intact until its readers drop it.
    """
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for member in archive.infolist():
            name = member.filename.removesuffix(".npy")
            if member.compress_type != zipfile.ZIP_STORED:
                with archive.open(member) as data:
                    arrays[name] = np.lib.format.read_array(data)
                continue
            f.seek(member.header_offset)
            local = f.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(member.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
            count = int(np.prod(shape))
            if dtype.hasobject or count == 0 or shape == ():
                f.seek(member.header_offset + 30 + name_len + extra_len)
                arrays[name] = np.lib.format.read_array(f)
            else:
                arrays[name] = np.memmap(path, dtype=dtype, mode="c", offset=f.tell(), shape=shape, order="F" if fortran else "C")
    meta = json.loads(str(arrays.pop("meta")))
    return meta, arrays
