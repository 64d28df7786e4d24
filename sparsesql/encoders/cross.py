"""Cross-encoders for RERANK: a sentence-transformers CrossEncoder loaded from a local folder.

A RERANK may load only folders under the roots `SPARSESQL_RERANKERS` names (os.pathsep-separated;
by default `<SPARSESQL_HOME>/rerankers`): a query sent to a server must not make it read any
folder on its disk. A folder is a cross-encoder when its config.json names a sequence
classification architecture with one label (a relevance score); a bi-encoder's folder (such as
all-MiniLM-L6-v2's), which CrossEncoder would otherwise load with a random head, is refused.
Each folder is loaded once per process and kept; nothing is downloaded (local files only).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from sparsesql.resources import home

_LOADED: dict[Path, Any] = {}
_LOCK = threading.Lock()


def roots() -> list[Path]:
    """The folders RERANK may load models from."""
    configured = os.environ.get("SPARSESQL_RERANKERS")
    if configured:
        return [Path(p).expanduser().resolve() for p in configured.split(os.pathsep) if p]
    return [home() / "rerankers"]


def locate(model: str) -> tuple[Path | None, str]:
    """The model's folder, or None and why it cannot be used: a relative name is looked up under
    each root in turn; an absolute path must lie under one."""
    allowed = roots()
    given = Path(model).expanduser()
    candidates = [given.resolve()] if given.is_absolute() else [(root / given).resolve() for root in allowed]
    where = ", ".join(str(r) for r in allowed)
    inside = [c for c in candidates if any(c == r or r in c.parents for r in allowed)]
    if not inside:
        return None, f"RERANK loads models only from folders under {where} (SPARSESQL_RERANKERS); {model!r} is outside them"
    folder = next((c for c in inside if c.is_dir()), None)
    if folder is None:
        return None, f"RERANK's model folder {model!r} does not exist (looked under {where})"
    return folder, _not_a_cross_encoder(folder) or ""


def _not_a_cross_encoder(folder: Path) -> str | None:
    config = folder / "config.json"
    if not config.is_file():
        return f"folder {str(folder)!r} holds no config.json: it is not a transformers model"
    try:
        settings = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        return f"{str(config)!r} is not readable JSON: {exc}"
    architectures = settings.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        kind = ", ".join(map(str, architectures)) or "no architecture"
        return (f"folder {str(folder)!r} holds {kind}, not a cross-encoder (a sequence classification model, as "
                "sentence-transformers' CrossEncoder saves)")
    labels = len(settings.get("id2label") or {"0": ""})
    if labels != 1:
        return f"folder {str(folder)!r} holds a classifier of {labels} labels; a reranker gives one relevance score"
    return None


def load_cross_encoder(folder: Path) -> Any:
    """The CrossEncoder in `folder` (checked by `locate`), loaded once per process."""
    with _LOCK:
        if folder not in _LOADED:
            import transformers
            from sentence_transformers import CrossEncoder

            transformers.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
            _LOADED[folder] = CrossEncoder(str(folder), device="cpu", local_files_only=True)
        return _LOADED[folder]
