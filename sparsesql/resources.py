"""Where sparsesql's files live: the non-Python files it ships (grammar, migrations, extension),
installed or checked out, and the data folder it keeps (the embedded server, tiers, models).

A wheel carries the shipped files inside the package as `_grammar/`, `_migrations/` and
`_extension/` (pyproject's force-include); a source checkout keeps them at the repository's top
level.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    """Return the folder `name` ("grammar", "migrations" or "extension"), preferring the installed copy."""
    installed = _PACKAGE / f"_{name}"
    if installed.exists():
        return installed
    return _PACKAGE.parent / name


def home() -> Path:
    """The data folder: `SPARSESQL_HOME`, or `./.sparsesql` where the process runs."""
    return Path(os.environ.get("SPARSESQL_HOME", ".sparsesql")).expanduser().resolve()
