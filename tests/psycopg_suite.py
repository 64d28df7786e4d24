"""Run psycopg 3's own test suite (../shared/vendor/psycopg-tests.tar.gz) against a DSN.

Used by tests/test_psycopg_suite.py (straight to PostgreSQL, then through `sparsesql serve`) and
runnable by hand to see one module's difference:

    .venv/bin/python tests/psycopg_suite.py tests/test_copy.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "shared" / "vendor" / "psycopg-tests.tar.gz"
PER_TEST_TIMEOUT = 15


def extract(into: Path) -> Path:
    """The suite's root (holding tests/), extracted once into `into`."""
    root = into / "psycopg-tests"
    if not root.exists():
        with tarfile.open(VENDOR) as archive:
            archive.extractall(into, filter="data")
    return root


def run(root: Path, dsn: str, modules: list[str], report: Path, timeout: float, deselect: str = "") -> dict[str, str]:
    """Each test's outcome (passed, failed, error, skipped, timeout) by its node id. The per-test
    timeout is pytest-timeout's signal method: a hung test fails alone, the run goes on."""
    command = [
        sys.executable, "-m", "pytest", *modules, *(["-k", deselect] if deselect else []), "-q", "-p", "no:randomly", "-o", f"cache_dir={report.with_suffix('.cache')}",
        "-p", "no:cov", f"--timeout={PER_TEST_TIMEOUT}", "--timeout-method=signal",
        f"--junitxml={report}", "-o", "junit_family=xunit1",
        # a folder of its own: by default each pytest run deletes all but the newest three under
        # /tmp/pytest-of-<user>, the calling test session's own folder (and database) included
        f"--basetemp={report.with_suffix('.tmp')}",
    ]
    env = {**os.environ, "PSYCOPG_TEST_DSN": dsn, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    return outcomes(report)


def marked(root: Path, dsn: str, modules: list[str], marker: str) -> set[str]:
    """The node ids of the tests psycopg marks with `marker` (as the reports name them)."""
    command = [sys.executable, "-m", "pytest", *modules, "--collect-only", "-q", "-m", marker, "-p", "no:randomly",
               "-o", f"cache_dir={root / '.collect-cache'}"]
    env = {**os.environ, "PSYCOPG_TEST_DSN": dsn}
    listing = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300).stdout
    return {line.strip() for line in listing.splitlines() if "::" in line}


def outcomes(report: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test = f"{case.get('file') or case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                text = (child.get("message") or "") + (child.text or "")
                outcome = "timeout" if "Timeout (>" in text else "failed" if child.tag == "failure" else "error"
            elif child.tag == "skipped":
                outcome = "skipped"
        out[test] = outcome
    return out


def messages(report: Path, tests: set[str]) -> dict[str, str]:
    """The first line of each listed test's failure, for a readable assertion."""
    out = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test = f"{case.get('file') or case.get('classname')}::{case.get('name')}"
        if test in tests:
            for child in case:
                if child.tag in ("failure", "error"):
                    out[test] = (child.get("message") or "").splitlines()[0][:300] if child.get("message") else ""
    return out


if __name__ == "__main__":
    # DIRECT_DSN (PostgreSQL) and SERVED_DSN (a `sparsesql serve` over it); modules as arguments
    direct, served = os.environ["DIRECT_DSN"], os.environ["SERVED_DSN"]
    where = Path(os.environ.get("SUITE_DIR", "/tmp/psycopg-suite"))
    where.mkdir(parents=True, exist_ok=True)
    suite = extract(where)
    mods = sys.argv[1:]
    a = run(suite, direct, mods, where / "direct.xml", 3600, os.environ.get("DESELECT", ""))
    b = run(suite, served, mods, where / "served.xml", 3600, os.environ.get("DESELECT", ""))
    lost = {k for k, v in a.items() if v == "passed" and b.get(k) != "passed"}
    print(f"direct passed {sum(v == 'passed' for v in a.values())}/{len(a)}; served passed {sum(v == 'passed' for v in b.values())}/{len(b)}")
    for test, message in sorted(messages(where / "served.xml", lost).items()):
        print(f"{b.get(test)}\t{test}\t{message}")
    for test in sorted(lost - set(messages(where / "served.xml", lost))):
        print(f"{b.get(test)}\t{test}")
