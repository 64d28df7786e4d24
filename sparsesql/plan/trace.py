"""What a run did: each stage's statement, bound parameters, rows and time.

`Database(trace=print)` receives every statement as it runs; EXPLAIN ANALYZE prints the same
records. Parameters are abbreviated (vectors and long lists) so a trace stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageRecord:
    stage: str
    label: str = ""
    sql: str = ""
    params: dict = field(default_factory=dict)
    rows: int | None = None
    ms: float | None = None
    detail: str = ""
    plan: str = ""  # PostgreSQL's own EXPLAIN ANALYZE of the statement (distributed collections: Citus' plan)


def short(value: object) -> str:
    """A parameter as it is worth reading: vectors and long lists are cut."""
    if hasattr(value, "to_list"):
        value = value.to_list()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)) and len(value) > 6:
        head = ", ".join(f"{v:.4g}" if isinstance(v, float) else repr(v) for v in value[:4])
        return f"[{head}, ... {len(value)} items]"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
