"""psycopg 3's own test suite through `sparsesql serve`, beside the same suite straight to PostgreSQL.

The suite is a real driver's conformance tests, written by people who never saw this relay. Every
test that passes straight against PostgreSQL must pass through the server too, except those in
`EXPECTED` (each with its reason, also listed in docs/server.md). The modules are the ones that
exercise the protocol, in their sync form (the async twins send the same messages); psycopg's
memory-leak loops and its Ctrl-C subprocess test are left out for time (about 90 s each way here).

While the suite runs, a second client searches through the same server every half second, and
another server with 20 idle clients is watched for CPU spent while nobody asks it anything.
"""

from __future__ import annotations

import importlib.util
import threading
import time

import psutil
import psycopg
import pytest

from tests.conftest import fresh_database, start_server, stop_server
from tests.psycopg_suite import VENDOR, extract, marked, messages, run

MODULES = [
    "tests/test_connection.py", "tests/test_connection_info.py", "tests/test_cursor.py", "tests/test_cursor_raw.py",
    "tests/test_cursor_common.py", "tests/test_cursor_client.py", "tests/test_cursor_server.py", "tests/test_copy.py",
    "tests/test_prepared.py", "tests/test_pipeline.py", "tests/test_transaction.py", "tests/test_errors.py",
    "tests/test_notify.py", "tests/test_concurrency.py", "tests/test_adapt.py", "tests/test_typeinfo.py",
    "tests/test_psycopg_dbapi20.py", "tests/types",
]
DESELECT = "not leak and not test_ctrl_c"
EXPECTED: dict[str, str] = {
    # Each passes straight to PostgreSQL and cannot through any relay; docs/server.md lists them.
}
SUITE_SECONDS = 900


def _missing() -> str | None:
    if not VENDOR.exists():
        return f"psycopg's test suite not found at {VENDOR}"
    for module, package in (("pytest_timeout", "pytest-timeout"), ("pproxy", "pproxy"), ("anyio", "anyio")):
        if importlib.util.find_spec(module) is None:
            return f"the suite needs {package}: pip install -e '.[test]'"
    return None


class Searcher(threading.Thread):
    """A second client searching through the server every half second while the suite runs."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self.slowest = 0.0

    def run(self) -> None:
        while not self.stop.wait(0.5):
            start = time.monotonic()
            try:
                with psycopg.connect(self.dsn, connect_timeout=10, autocommit=True) as conn:
                    rows = conn.execute("SELECT id FROM suite_notes SEARCH SPARSE(%s) LIMIT 3", ("relay",)).fetchall()
                assert rows and rows[0][0] == "n1", rows
                self.answered += 1
            except Exception as exc:  # recorded and asserted on by the test
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, time.monotonic() - start)


def _cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_psycopg_suite_passes_through_the_relay(dsn, tmp_path_factory):
    home = tmp_path_factory.mktemp("psycopg-suite")
    suite = extract(home)
    with fresh_database(dsn, "psycopg_suite") as database:
        (home / "serve").mkdir()
        (home / "idle").mkdir()
        served = start_server(database, home / "serve", "--workers", "2")
        idle_server = start_server(database, home / "idle", "--workers", "1")
        try:
            with psycopg.connect(served.dsn(), autocommit=True) as conn:
                conn.execute("CREATE COLLECTION suite_notes (title text) WITH (dense => 'none', dim => 2)")
                conn.execute("INSERT INTO suite_notes (id, title, embedding) VALUES ('n1', 'a relay for every driver', '[1, 0]'), "
                             "('n2', 'unrelated words', '[0, 1]')")
            idle = [psycopg.connect(idle_server.dsn()) for _ in range(20)]
            for conn in idle[::2]:
                conn.execute("SELECT 1")  # half of them idle inside a transaction
            watched = psutil.Process(idle_server.process.pid)
            time.sleep(2)  # the idle server settles (its first metrics refresh, imports)
            cpu_before, wall_before = _cpu_seconds(watched), time.monotonic()

            direct = run(suite, database, MODULES, home / "direct.xml", SUITE_SECONDS, DESELECT)
            searcher = Searcher(served.dsn())
            searcher.start()
            through = run(suite, served.dsn(), MODULES, home / "served.xml", SUITE_SECONDS, DESELECT)
            # psycopg marks some tests `timing` ("can fail on cheese hardware"): a notification
            # racing a connection's close, say. The relay adds a hop to each side of the race, so
            # one of those lost through the server gets a second run, and counts as that run says.
            lost = {test for test, outcome in direct.items() if outcome == "passed" and through.get(test) != "passed"}
            retried = sorted(lost & marked(suite, database, MODULES, "timing"))
            if retried:
                through.update(run(suite, served.dsn(), retried, home / "retried.xml", SUITE_SECONDS))
            searcher.stop.set()
            searcher.join()

            idle_cpu, idle_wall = _cpu_seconds(watched) - cpu_before, time.monotonic() - wall_before
            for conn in idle:
                conn.close()
        finally:
            stop_server(served)
            stop_server(idle_server)

    passed_direct = {test for test, outcome in direct.items() if outcome == "passed"}
    assert len(passed_direct) > 2500, f"the suite ran only {len(passed_direct)} tests straight to PostgreSQL"
    lost = {test for test in passed_direct if through.get(test) != "passed"} - set(EXPECTED)
    assert not lost, "pass straight to PostgreSQL, not through sparsesql serve:\n" + "\n".join(
        f"{through.get(test)} {test}: {message}" for test, message in sorted(messages(home / "served.xml", lost).items()))
    assert len(retried) <= 3, f"more timing races lost than chance explains: {retried}"
    timed_out = sorted(test for test, outcome in through.items() if outcome == "timeout")
    assert not timed_out, f"tests that hung through the relay: {timed_out}"
    assert not searcher.failures, searcher.failures[:5]
    assert searcher.answered >= 60 and searcher.slowest < 5, (searcher.answered, searcher.slowest)
    assert idle_wall > 60
    assert idle_cpu < 0.02 * idle_wall, f"a server with 20 idle clients spent {idle_cpu:.2f} s of CPU in {idle_wall:.0f} s"
