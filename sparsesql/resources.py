"""Where the non-Python files (grammar, migrations, extension) live, installed or checked out.

A wheel carries them inside the package as `_grammar/`, `_migrations/` and `_extension/` (pyproject's
force-include); a source checkout keeps them at the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    """Return the folder `name` ("grammar", "migrations" or "extension"), preferring the installed copy."""
    installed = _PACKAGE / f"_{name}"
    if installed.exists():
        return installed
    return _PACKAGE.parent / name
