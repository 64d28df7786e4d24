"""Memory budgets as people write them: "2GB", "512 MB", "1.5GiB", "auto" or "none"."""

from __future__ import annotations

import os
import re

from sparsesql.errors import CheckError


def parse_bytes(size: int | str | None) -> int | None:
    """"2GB", "512 MB", "1.5GiB" or a number of bytes; None (or "none") for no limit; "auto": a quarter of
    this machine's physical memory (the default budget: a collection that fits it is served from
    memory, a larger one stays in SQL)."""
    if size is None or isinstance(size, int):
        return size
    if size.strip().lower() == "auto":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    if size.strip().lower() == "none":
        return None
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*", size)
    if match is None:
        raise CheckError(f"sparse_tier_memory {size!r} is not a size such as '2GB' or '512MB'")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))
