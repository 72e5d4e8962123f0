"""Batched files (issue 17): ranges and batches, exactly-once across real faults, lock
retries, failing batches, budgets, invalid files, psql parity and status.

Every backfill here runs ``SET counter = counter + 1``: a row changed twice (a batch
applied twice after a crash) or never shows as a counter other than 1.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

import sqlrunner
from sqlrunner.events import Event

from .clirun import invoke
from .conftest import SqlSet, spawn
from .test_concurrency import query, wait_until

TABLE = """BEGIN;
CREATE TABLE gate (stall boolean NOT NULL);
INSERT INTO gate VALUES (true);
CREATE TABLE items (
    id      bigint PRIMARY KEY,
    counter integer NOT NULL DEFAULT 0,
    note    text
);
-- ids 1..{rows} with every seventh missing: a key range with gaps
INSERT INTO items (id) SELECT i FROM generate_series(1, {rows}) AS i WHERE i % 7 <> 0;
COMMIT;
"""


# Batch [41, 51) sleeps while the gate says so: a batch caught in the middle, for real.
STALL_AT_41 = " FROM (SELECT CASE WHEN :lo = 41 AND (SELECT stall FROM gate) THEN pg_sleep(30) END) AS pause"
STALLED = (
    "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
    "AND pid <> pg_backend_pid() AND state = 'active'"
)


def batched(header: str = "size=10 target=off", body: str = "") -> str:
    return (
        f"-- sqlrunner: batched table=public.items key=id {header}\n"
        "-- count every visit: a batch applied twice shows as 2\n"
        "UPDATE public.items SET counter = counter + 1" + body + "\n"
        "WHERE id >= :lo AND id < :hi;\n"
    )


def items_set(sql_set: SqlSet, backfill: str, rows: int = 100) -> Path:
    return sql_set(
        {
            "forward/0001_items.sql": TABLE.format(rows=rows),
            "forward/0002_backfill.sql": backfill,
        }
    )


def counters(dsn: str) -> dict[int, int]:
    return {int(c): int(n) for c, n in query(dsn, "SELECT counter, count(*) FROM items GROUP BY 1")}  # type: ignore[call-overload]


def position(dsn: str) -> tuple[object, ...]:
    (row,) = query(
        dsn,
        "SELECT lo_key, hi_key, next_key, batches, rows, done_at IS NOT NULL "
        "FROM sqlrunner_ledger_backfill WHERE version = 2",
    )
    return row


def test_batches_cover_the_fixed_range_once(dsn: str, sql_set: SqlSet) -> None:
    root = items_set(sql_set, batched())
    events: list[Event] = []
    report = sqlrunner.apply(dsn, root, on_event=events.append)
    assert [r.label for r in report.applied] == [
        "forward/0001_items.sql",
        "forward/0002_backfill.sql",
    ]
    assert counters(dsn) == {1: 86}  # 100 ids, 14 of them missing
    # [1, 101) in batches of 10 keys: 10 batches, each committed with its progress row
    assert position(dsn) == (1, 101, 101, 10, 86, True)
    progress = [e.backfill for e in events if e.kind == "backfill_progress"]
    assert [(p.lo, p.hi) for p in progress if p] == [(1 + 10 * i, min(11 + 10 * i, 101)) for i in range(10)]
    assert progress[-1] is not None and progress[-1].position.rows == 86
    assert query(dsn, "SELECT kind, version FROM sqlrunner_ledger ORDER BY version") == [
        ("forward", 1),
        ("forward", 2),
    ]
    # a second apply finds nothing to do: the file is applied, the backfill done
    assert sqlrunner.apply(dsn, root).applied == ()
    assert counters(dsn) == {1: 86}


def test_size_adapts_toward_the_target(dsn: str, sql_set: SqlSet) -> None:
    """Batches far under a 1 s target grow by at most 20% a step."""
    root = items_set(sql_set, batched("size=5 target=1s"), rows=400)
    events: list[Event] = []
    sqlrunner.apply(dsn, root, on_event=events.append)
    widths = [p.hi - p.lo for e in events if (p := e.backfill) is not None]
    assert widths[:4] == [5, 6, 7, 8]
    assert all(b <= int(a * 1.2) for a, b in zip(widths, widths[1:-1], strict=False))
    assert counters(dsn) == {1: 343}


def test_an_empty_table_is_a_backfill_with_no_batches(dsn: str, sql_set: SqlSet) -> None:
    root = items_set(sql_set, batched(), rows=0)
    sqlrunner.apply(dsn, root)
    assert position(dsn) == (0, 0, 0, 0, 0, True)


def test_a_failing_batch_names_its_line_column_and_bounds(dsn: str, sql_set: SqlSet) -> None:
    """Division by zero at id 33: the batches below it stay committed, and the next apply
    resumes at its batch once the data is fixed."""
    root = items_set(sql_set, batched(body=", note = (1 / (id - 33))::text"))
    with pytest.raises(sqlrunner.MigrationFailed) as failed:
        sqlrunner.apply(dsn, root)
    error = failed.value
    assert error.file.endswith("forward/0002_backfill.sql")
    assert (error.line, error.column, error.sqlstate) == (3, 1, "22012")
    assert "lo=31 hi=41" in str(error)
    assert "-v lo=31 -v hi=41" in str(error)
    assert counters(dsn) == {1: 26, 0: 60}  # ids 1..30 done (4 missing), the rest not
    assert position(dsn)[2] == 31
    query(dsn, "DELETE FROM items WHERE id = 33 RETURNING 1")
    sqlrunner.apply(dsn, root)
    assert counters(dsn) == {1: 85}


def test_a_parse_error_points_at_the_file_not_the_substituted_text(
    dsn: str, sql_set: SqlSet
) -> None:
    text = (
        "-- sqlrunner: batched table=items key=id size=1000\n"
        "UPDATE items SET counter = counter + 1 WHERE id >= :lo AND id < :hi AND nosuch = 1;\n"
    )
    root = items_set(sql_set, text)
    with pytest.raises(sqlrunner.MigrationFailed) as failed:
        sqlrunner.apply(dsn, root)
    assert (failed.value.line, failed.value.column) == (2, text.split("\n")[1].index("nosuch") + 1)
    assert failed.value.sqlstate == "42703"


def test_a_terminated_backend_mid_batch_resumes_exactly_once(dsn: str, sql_set: SqlSet) -> None:
    """The runner's backend is terminated while batch [41, 51) sleeps; the batches before
    it are committed, that one rolled back, and the next apply finishes the rest."""
    root = items_set(sql_set, batched(body=STALL_AT_41))
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            sqlrunner.apply(dsn, root)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    wait_until(lambda: query(dsn, STALLED), message="the batch at key 41 to run")
    query(dsn, f"SELECT pg_terminate_backend(pid) FROM ({STALLED}) AS s")
    runner.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], sqlrunner.ConnectionLost), outcome
    assert "[41, 51)" in str(outcome[0]) and "resumes" in str(outcome[0])
    assert position(dsn)[2:4] == (41, 4)
    query(dsn, "UPDATE gate SET stall = false RETURNING 1")
    sqlrunner.apply(dsn, root)
    assert counters(dsn) == {1: 86}
    assert position(dsn) == (1, 101, 101, 10, 86, True)
