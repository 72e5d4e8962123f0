"""Behind a real PgBouncer in transaction-pooling mode.

The runner lock is a transaction-level advisory lock held by an open
transaction, which pins one server connection for the run; everything else
works statement by statement or transaction by transaction, which is what a
transaction pooler supports. PgBouncer comes from Debian (``apt-get install
pgbouncer``; .ci/run installs it). Without it this module is skipped locally
and fails in CI.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import (
    SqlSet,
    advisory_locks,
    apply_at_once,
    cli,
    kill_runner_in_slow_statement,
    query,
    wait_until,
)
from .faults import pgbouncer
from .test_concurrency import BASE, SLOW


@pytest.fixture
def bouncer_dsn(dsn: str) -> Iterator[str]:
    """A DSN for ``dsn``'s database through a fresh PgBouncer in transaction mode."""
    with pgbouncer(dsn, "") as through:
        yield through


def test_concurrent_runners_behind_transaction_pooler_apply_once(
    dsn: str, bouncer_dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_slow.sql": SLOW.format(seconds=0.5),
            "forward/0003_idx.sql": "-- sqlrunner: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_v_idx ON orders (v);\n",
        }
    )
    outcomes = apply_at_once(4, root, bouncer_dsn)
    assert [code for code, _, _ in outcomes] == [0] * 4, outcomes
    assert query(dsn, "SELECT migration, count(*) FROM runs GROUP BY 1 ORDER BY 1") == [
        (1, 1),
        (2, 1),
    ]
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger") == [(3,)]
    assert advisory_locks(dsn) == 0, "a lock was stranded on a pooled server connection"


def test_killed_runner_behind_pooler_leaves_no_lock(
    dsn: str, bouncer_dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {"forward/0001_base.sql": BASE, "forward/0002_slow.sql": SLOW.format(seconds=30)}
    )
    kill_runner_in_slow_statement(root, runner_dsn=bouncer_dsn, observer_dsn=dsn)
    wait_until(lambda: advisory_locks(dsn) == 0, timeout=15, message="the runner lock to go")
    (root / "forward/0002_slow.sql").write_text(SLOW.format(seconds=0))
    result = cli("--sql-dir", str(root), "apply", "--lock-timeout", "2s", dsn=bouncer_dsn)
    assert result.returncode == 0, result.stderr
    assert query(dsn, "SELECT migration, count(*) FROM runs GROUP BY 1 ORDER BY 1") == [
        (1, 1),
        (2, 1),
    ]
