"""Where the non-Python files (grammar, migrations) live, installed or checked out.

A wheel carries them inside the package as `_grammar/` and `_migrations/` (pyproject's
force-include); a source checkout keeps them at the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    """Return the folder `name` ("grammar" or "migrations"), preferring the installed copy."""
    installed = _PACKAGE / f"_{name}"
    if installed.exists():
        return installed
    return _PACKAGE.parent / name
