"""Writing a benchmark's result: <out>.md for people (also printed), <out>.json for the numbers."""

from __future__ import annotations

import json
from pathlib import Path


def write(out: Path, lines: list[str], data: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(lines))
