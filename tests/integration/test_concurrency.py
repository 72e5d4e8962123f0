"""Several runners, killed runners, application locks and crashed no-transaction files."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

import sqlrunner
from sqlrunner.report import Event

from .conftest import (
    SqlSet,
    advisory_locks,
    apply_at_once,
    cli,
    kill_runner_in_slow_statement,
    lock_holder,
    query,
    spawn,
    wait_until,
)

BASE = """BEGIN;
CREATE TABLE IF NOT EXISTS runs (migration int NOT NULL, pid int NOT NULL DEFAULT pg_backend_pid());
CREATE TABLE IF NOT EXISTS orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
CREATE TABLE IF NOT EXISTS knobs (seconds float NOT NULL);
INSERT INTO knobs VALUES (0);
INSERT INTO runs (migration) VALUES (1);
COMMIT;
"""

SLOW = """BEGIN;
INSERT INTO runs (migration) VALUES (2);
SELECT pg_sleep({seconds});
ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
COMMIT;
"""


def test_eight_concurrent_appliers_run_each_migration_once(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {"forward/0001_base.sql": BASE, "forward/0002_slow.sql": SLOW.format(seconds=0.5)}
    )
    outcomes = apply_at_once(8, root, dsn)
    assert [code for code, _, _ in outcomes] == [0] * 8, outcomes
    assert query(dsn, "SELECT migration, count(*) FROM runs GROUP BY 1 ORDER BY 1") == [
        (1, 1),
        (2, 1),
    ]
    assert sum("nothing to apply" in stdout for _, stdout, _ in outcomes) == 7
    assert advisory_locks(dsn) == 0


def test_killed_runner_leaves_no_lock_and_rerun_finishes(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {"forward/0001_base.sql": BASE, "forward/0002_slow.sql": SLOW.format(seconds=30)}
    )
    kill_runner_in_slow_statement(root, runner_dsn=dsn, observer_dsn=dsn)
    # The lock connection's idle transaction ends at once; the busy backend notices the
    # closed socket within client_connection_check_interval and rolls back. Until then it
    # holds the lock its INSERT took on runs (it has not reached the ALTER of orders).
    wait_until(lambda: advisory_locks(dsn) == 0, message="the runner lock to go")
    wait_until(
        lambda: (
            query(
                dsn,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c "
                "ON c.oid = l.relation WHERE c.relname IN ('runs', 'orders')",
            )[0][0]
            == 0
        ),
        timeout=10,
        message="the killed migration's table locks to go",
    )
    assert query(dsn, "SELECT count(*) FROM runs WHERE migration = 2") == [(0,)]
    (root / "forward/0002_slow.sql").write_text(SLOW.format(seconds=30).replace("(30)", "(0)"))
    # Editing a pending (never applied) file is not drift.
    result = cli("--sql-dir", str(root), "apply", dsn=dsn)
    assert result.returncode == 0, result.stderr
    assert query(dsn, "SELECT migration, count(*) FROM runs GROUP BY 1 ORDER BY 1") == [
        (1, 1),
        (2, 1),
    ]


def test_second_runner_waits_then_names_the_holder(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_slow.sql": SLOW.format(seconds=8)})
    first = spawn("--sql-dir", str(root), "apply", dsn=dsn)
    wait_until(lambda: advisory_locks(dsn) == 1, message="the first runner's lock")
    second = cli("--sql-dir", str(root), "apply", "--runner-wait", "1", dsn=dsn)
    assert second.returncode == 5, second.stderr
    assert "another sqlrunner" in second.stderr and "sqlrunner lock (" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.wait(timeout=60) == 0


def test_application_lock_gives_up_with_exit_5_and_writers_keep_flowing(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {"forward/0001_base.sql": BASE, "forward/0002_alter.sql": SLOW.format(seconds=0)}
    )
    sqlrunner.apply(dsn, root, to=1)
    stop, worst = threading.Event(), [0.0]

    def writer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                started = time.monotonic()
                conn.execute("INSERT INTO orders (v) VALUES ('x')")
                worst[0] = max(worst[0], time.monotonic() - started)
                time.sleep(0.01)

    # ACCESS SHARE, then idle in transaction
    with lock_holder(dsn, "SELECT count(*) FROM orders", "report-job"):
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            result = cli(
                "--sql-dir",
                str(root),
                "apply",
                "--lock-timeout",
                "100ms",
                "--lock-retries",
                "3",
                dsn=dsn,
            )
        finally:
            stop.set()
            thread.join()
    assert result.returncode == 5, result.stderr
    assert "forward/0002_alter.sql:4" in result.stderr
    assert "report-job" in result.stderr and "idle in transaction" in result.stderr
    assert "SELECT count(*) FROM orders" in result.stderr
    assert worst[0] < 1.0, f"a writer waited {worst[0]:.3f}s behind the migration"
    assert query(dsn, "SELECT count(*) FROM runs WHERE migration = 2") == [(0,)]
    assert query(dsn, "SELECT outcome FROM sqlrunner_ledger_history WHERE version = 2") == [
        ("failed",)
    ]


def test_lock_timeout_is_retried_until_the_blocker_leaves(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {"forward/0001_base.sql": BASE, "forward/0002_alter.sql": SLOW.format(seconds=0)}
    )
    sqlrunner.apply(dsn, root, to=1)
    events: list[Event] = []
    with lock_holder(dsn, "SELECT count(*) FROM orders") as blocker:
        leaves = threading.Timer(1.0, blocker.close)
        leaves.start()
        report = sqlrunner.apply(dsn, root, lock_timeout="100ms", on_event=events.append)
        leaves.join()
    assert report.applied[0].attempts > 1
    assert any(e.kind == "retry" and "lock timeout" in e.message for e in events)
    assert query(dsn, "SELECT count(*) FROM runs WHERE migration = 2") == [(1,)]


NO_TX = """-- sqlrunner: no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_v_idx ON orders (v);
SELECT pg_sleep((SELECT seconds FROM knobs));
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_v_id_idx ON orders (v, id);
"""


def test_crash_inside_no_transaction_file_resumes_after_done_statements(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_idx.sql": NO_TX})
    sqlrunner.apply(dsn, root, to=1)
    query(dsn, "UPDATE knobs SET seconds = 30 RETURNING 1")
    # killed in the file's second statement
    kill_runner_in_slow_statement(root, runner_dsn=dsn, observer_dsn=dsn)
    assert query(dsn, "SELECT statement_index FROM sqlrunner_ledger_progress") == [(0,)]
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE version = 2") == [(0,)]
    wait_until(lambda: advisory_locks(dsn) == 0, message="the runner lock to go")
    query(dsn, "UPDATE knobs SET seconds = 0 RETURNING 1")
    events: list[Event] = []
    report = sqlrunner.apply(dsn, root, on_event=events.append)
    assert [r.version for r in report.applied] == [2]
    skipped = [e.statement.index for e in events if e.kind == "statement_skipped" and e.statement]
    assert skipped == [0]
    assert query(
        dsn,
        "SELECT count(*) FROM pg_index WHERE indisvalid AND indexrelid::regclass::text "
        "IN ('orders_v_idx', 'orders_v_id_idx')",
    ) == [(2,)]
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger_progress") == [(0,)]


def test_invalid_index_from_failed_build_is_dropped_and_rebuilt(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_unique.sql": (
                "-- sqlrunner: no-transaction\n"
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_v_key ON orders (v);\n"
            ),
        }
    )
    sqlrunner.apply(dsn, root, to=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (v) VALUES ('dup'), ('dup')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY orders_v_key ON orders (v)")
        conn.execute("DELETE FROM orders WHERE id = (SELECT max(id) FROM orders)")
    assert query(
        dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_v_key'::regclass"
    ) == [(False,)]
    events: list[Event] = []
    sqlrunner.apply(dsn, root, on_event=events.append)
    assert any(e.kind == "note" and "INVALID index" in e.message for e in events)
    assert query(
        dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_v_key'::regclass"
    ) == [(True,)]


def test_index_build_after_a_lock_retry_does_not_wait_on_our_own_lock_connection(
    dsn: str, sql_set: SqlSet
) -> None:
    """Naming blockers queries the idle lock transaction; it must not leave a snapshot
    there, or the next CREATE INDEX CONCURRENTLY waits for it forever."""
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_alter.sql": SLOW.format(seconds=0),
            "forward/0003_idx.sql": "-- sqlrunner: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_note_idx ON orders (note);\n",
        }
    )
    sqlrunner.apply(dsn, root, to=1)
    with lock_holder(dsn, "SELECT count(*) FROM orders", "report-job") as blocker:
        runner = spawn("--sql-dir", str(root), "apply", "--lock-timeout", "100ms", dsn=dsn)
        # Once the ALTER has queued behind the blocker, let it retry a while (the retries
        # name the blocker), then end the blocker: however long the runner took to start.
        wait_until(
            lambda: (
                query(
                    dsn,
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE orders%'",
                )[0][0]
                == 1
            ),
            message="the ALTER to queue behind the blocker",
        )
        time.sleep(1.0)
        blocker.close()
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 0, stderr
    assert "report-job" in stderr  # the retry line named the blocker
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE version = 3") == [(1,)]
