"""Behind PgBouncer in transaction mode nothing the runner sets outlives its transaction.

A session SET lands on whichever server connection the pooler picked and stays there
for the next client; the runner's settings are SET LOCAL, so a pooled server
connection never keeps ``synchronous_commit = off`` or the runner's timeouts.
"""

from __future__ import annotations

import psycopg
import pytest

import sqlrunner

from .conftest import SqlSet
from .test_pgbouncer import bouncer_dsn  # noqa: F401  (the fixture)

POOL_SIZE = 6  # default_pool_size in the bouncer_dsn fixture


def settings_on_every_pooled_connection(through: str) -> set[tuple[object, ...]]:
    """One open transaction per server connection of the pool, all at once."""
    conns = [psycopg.connect(through, prepare_threshold=None) for _ in range(POOL_SIZE)]
    try:
        return {
            tuple(
                c.execute(
                    "SELECT pg_backend_pid(), current_setting('synchronous_commit'), "
                    "current_setting('client_connection_check_interval'), "
                    "current_setting('lock_timeout'), current_setting('search_path')"
                ).fetchone()
                or ()
            )
            for c in conns
        }
    finally:
        for c in conns:
            c.close()


def test_no_runner_setting_stays_on_a_pooled_server_connection(
    dsn: str,
    bouncer_dsn: str,  # noqa: F811
    sql_set: SqlSet,
) -> None:
    no_tx = "-- sqlrunner: no-transaction\n"
    root = sql_set(
        {
            "forward/0001_t.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            "forward/0002_idx.sql": no_tx + "CREATE INDEX CONCURRENTLY t_id_idx ON t (id);\n"
            "ALTER TABLE t ADD COLUMN n int;\n",
            "forward/0003_fails.sql": no_tx + "ALTER TABLE t ADD COLUMN m int;\nSELECT 1/0;\n",
        }
    )
    with pytest.raises(sqlrunner.MigrationFailed) as failure:
        sqlrunner.apply(bouncer_dsn, root)
    assert (failure.value.line, failure.value.sqlstate) == (3, "22012")
    seen = settings_on_every_pooled_connection(bouncer_dsn)
    assert len({pid for pid, *_ in seen}) == POOL_SIZE
    assert {tuple(row[1:]) for row in seen} == {("on", "0", "0", '"$user", public')}
