"""Rows as the CLI prints them: an aligned table, or JSON lines."""

from __future__ import annotations

import json

import click


def print_rows(rows: list, as_json: bool) -> None:
    if as_json:
        for row in rows:
            click.echo(json.dumps(dict(row), default=str))
        return
    if not rows:
        click.echo("(0 rows)")
        return
    columns = list(rows[0].keys())
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo(" | ".join(c.ljust(w) for c, w in zip(columns, widths)))
    click.echo("-+-".join("-" * w for w in widths))
    for r in cells:
        click.echo(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    text = json.dumps(value) if isinstance(value, dict) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
