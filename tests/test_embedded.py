"""The embedded server: started on demand in a data folder, reused by later starts, stopped
cleanly; and the checks that name what an external server lacks."""

from __future__ import annotations

import psycopg
import pytest

from sparsesql.db import embedded
from sparsesql.db.connect import server_problem


def test_start_reuse_stop(tmp_path):
    home = tmp_path / "home"
    dsn = embedded.start(home)
    pid = (home / "pgdata" / "postmaster.pid").read_text().split()[0]
    assert embedded.start(home) == dsn
    assert (home / "pgdata" / "postmaster.pid").read_text().split()[0] == pid
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "sparsesql"
    assert embedded.stop(home) is True
    assert not (home / "pgdata" / "postmaster.pid").exists()
    assert embedded.stop(home) is False
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)


@pytest.mark.parametrize(
    "server, default, installed, expected",
    [
        (180006, "0.8.6", "0.8.6", None),
        (140000, "0.7.0", None, None),
        (130011, "0.8.0", None, "PostgreSQL 13 at db.example is too old"),
        (160002, None, None, "does not have pgvector: install pgvector >= 0.7 (for example `apt install postgresql-16-pgvector`)"),
        (160002, "0.8.0", "0.6.2", "pgvector 0.6.2 is installed in this database; sparsesql needs >= 0.7"),
        (160002, "0.5.1", None, "offers pgvector 0.5.1; sparsesql needs >= 0.7"),
    ],
)
def test_server_problems_name_the_fix(server, default, installed, expected):
    problem = server_problem(server, default, installed, "db.example")
    if expected is None:
        assert problem is None
    else:
        assert expected in problem
