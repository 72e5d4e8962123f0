"""repair takes the runner lock and refuses what makes no sense, under a real concurrent run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

import sqlrunner

from .conftest import SqlSet, query, sleeping_runner, wait_until

BASE = "BEGIN;\nCREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY);\nCOMMIT;\n"
SLOW = "BEGIN;\nCREATE TABLE IF NOT EXISTS slow (id int);\nSELECT pg_sleep(2);\nCOMMIT;\n"
HAND_RUN = "BEGIN;\nCREATE TABLE IF NOT EXISTS by_hand (id int);\nCOMMIT;\n"


def test_mark_applied_during_a_run_waits_for_it_then_refuses(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_slow.sql": SLOW})
    sqlrunner.apply(dsn, root, to=1)
    run = sleeping_runner(root, dsn)  # in 0002's pg_sleep
    try:
        started = time.monotonic()
        with pytest.raises(sqlrunner.UsageError, match="already applied"):
            sqlrunner.repair(dsn, root, mark_applied=2, runner_wait=30)
        assert time.monotonic() - started > 0.5  # it waited for the run
        assert run.wait(timeout=30) == 0, run.stderr.read() if run.stderr else ""
    finally:
        run.kill()
        run.wait()
    assert query(dsn, "SELECT version FROM sqlrunner_ledger ORDER BY 1") == [(1,), (2,)]
    assert query(
        dsn, "SELECT count(*) FROM sqlrunner_ledger_history WHERE action = 'mark-applied'"
    ) == [(0,)]


def test_repair_gives_up_on_a_long_run_naming_it_and_changes_nothing(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_slow.sql": SLOW})
    sqlrunner.apply(dsn, root, to=1)
    run = sleeping_runner(root, dsn)  # in 0002's pg_sleep
    try:
        with pytest.raises(sqlrunner.RunnerBusy, match="sqlrunner lock") as busy:
            sqlrunner.repair(dsn, root, forget=1, reapply=True, runner_wait=0.3)
        assert busy.value.exit_code == 5
        assert run.wait(timeout=30) == 0
    finally:
        run.kill()
        run.wait()
    assert query(dsn, "SELECT version FROM sqlrunner_ledger ORDER BY 1") == [(1,), (2,)]


def test_forget_of_a_file_that_still_exists_is_refused_unless_reapply(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_hand.sql": HAND_RUN})
    sqlrunner.apply(dsn, root)

    with pytest.raises(sqlrunner.UsageError) as refused:
        sqlrunner.repair(dsn, root, forget=2)
    message = str(refused.value)
    assert "forward/0002_hand.sql still exists" in message and "--reapply" in message
    assert refused.value.exit_code == 2
    assert query(dsn, "SELECT version FROM sqlrunner_ledger ORDER BY 1") == [(1,), (2,)]

    assert "forget 0002_hand" in sqlrunner.repair(dsn, root, forget=2, reapply=True)
    assert [r.version for r in sqlrunner.apply(dsn, root).applied] == [2]

    (root / "forward/0002_hand.sql").unlink()  # the usual case: the file was deleted
    sqlrunner.repair(dsn, root, forget=2)
    assert query(dsn, "SELECT version FROM sqlrunner_ledger ORDER BY 1") == [(1,)]


def test_repair_racing_a_first_apply_does_not_fail_on_a_catalog_duplicate_key(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_hand.sql": HAND_RUN})
    errors: list[BaseException] = []

    def attempt(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    # Hold back every CREATE TABLE in public (CREATE locks the schema; an uncommitted DROP
    # SCHEMA holds that lock) until both the first apply and the repair have got there,
    # then let them race to create the ledger tables.
    with psycopg.connect(dsn) as holder:
        holder.execute("DROP SCHEMA public CASCADE")
        threads = [
            threading.Thread(target=attempt, args=(lambda: sqlrunner.apply(dsn, root, to=1),)),
            threading.Thread(
                target=attempt, args=(lambda: sqlrunner.repair(dsn, root, mark_applied=2),)
            ),
        ]
        for thread in threads:
            thread.start()
        wait_until(
            lambda: query(dsn, "SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0] >= 1,
            "a ledger creation to wait for the schema",
        )
        time.sleep(1.0)  # time for a second creator to queue as well, if one can
        holder.rollback()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert query(dsn, "SELECT version FROM sqlrunner_ledger ORDER BY 1") == [(1,), (2,)]
