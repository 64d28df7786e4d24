"""The long fuzz run: the properties of tests/test_fuzz.py for N cases each, with a count.

    .venv/bin/python benchmarks/fuzz.py --cases 20000        (or: make fuzz)

The inputs are tests/test_fuzz.py's: grammar-generated statements whose numbers and names are
sometimes edges (integers past 64 bits, `1e999`, names past 63 bytes) and byte mutations that
also stretch characters into long runs and add thousands of parentheses.

Prints how many inputs were generated, parsed, refused with QuerySyntaxError, checked, refused
by the checker, and crashed (anything else: must be 0). Runs on the embedded server in
benchmarks/.cache/ unless --dsn is given.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import sparsesql  # noqa: E402
from sparsesql.db import embedded  # noqa: E402
from sparsesql.errors import QuerySyntaxError  # noqa: E402
from tests.test_fuzz import mutated, statements  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    db = sparsesql.connect(args.dsn or embedded.start(HERE / ".cache"))
    counts: Counter[str] = Counter()
    crashes: list[tuple[str, str]] = []

    @settings(max_examples=args.cases, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data(), mutate=st.booleans())
    def run(data, mutate):
        text = data.draw(statements())
        if mutate:
            text = mutated(text, data)
        counts["inputs"] += 1
        try:
            sparsesql.parse(text)
        except QuerySyntaxError:
            counts["syntax errors"] += 1
            return
        except Exception as exc:  # noqa: BLE001  (a crash is what we are counting)
            crashes.append((text, repr(exc)))
            return
        counts["parsed"] += 1
        try:
            db.check(text, q="x", v=[1.0, 0.0, 0.0], n=5)
            counts["checked"] += 1
        except sparsesql.Error:
            counts["check errors"] += 1
        except Exception as exc:  # noqa: BLE001
            crashes.append((text, repr(exc)))

    run()
    counts["crashes"] = len(crashes)
    for key in ("inputs", "parsed", "syntax errors", "checked", "check errors", "crashes"):
        print(f"{key:14} {counts[key]}")
    for text, error in crashes[:20]:
        print(f"CRASH {error}: {text!r}")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
