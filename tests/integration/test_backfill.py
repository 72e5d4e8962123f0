"""Batched files (issue 17): ranges and batches, exactly-once across real faults, lock
retries, failing batches, budgets, invalid files, psql parity and status.

Every backfill here runs ``SET counter = counter + 1``: a row changed twice (a batch
applied twice after a crash) or never shows as a counter other than 1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlrunner
from sqlrunner.report import Event

from .clirun import invoke
from .conftest import SqlSet, finish, lock_holder, query, spawn, wait_until

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
STALL_AT_41 = (
    " FROM (SELECT CASE WHEN :lo = 41 AND (SELECT stall FROM gate) THEN pg_sleep(30) END) AS pause"
)
# every batch's text holds the pg_sleep: the one that sleeps is [41, 51), in its sleep
STALLED = (
    "SELECT pid FROM pg_stat_activity WHERE query LIKE '%CASE WHEN 41 = 41 AND%' "
    "AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()"
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
    rows = query(dsn, "SELECT counter, count(*) FROM items GROUP BY 1")
    return {int(str(c)): int(str(n)) for c, n in rows}


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
    assert [(p.lo, p.hi) for p in progress if p] == [
        (1 + 10 * i, min(11 + 10 * i, 101)) for i in range(10)
    ]
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
    assert all(b <= int(a * 1.2) for a, b in itertools.pairwise(widths))
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


@contextlib.contextmanager
def apply_in_background(dsn: str, root: Path) -> Iterator[list[BaseException]]:
    """``sqlrunner.apply`` in a thread while the block acts on the database; the list
    then holds what the apply raised (the thread is joined on leaving the block)."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            sqlrunner.apply(dsn, root)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        yield outcome
    finally:
        runner.join(timeout=30)


def test_a_terminated_backend_mid_batch_resumes_exactly_once(dsn: str, sql_set: SqlSet) -> None:
    """The runner's backend is terminated while batch [41, 51) sleeps; the batches before
    it are committed, that one rolled back, and the next apply finishes the rest."""
    root = items_set(sql_set, batched(body=STALL_AT_41))
    with apply_in_background(dsn, root) as outcome:
        wait_until(lambda: query(dsn, STALLED), message="the batch at key 41 to run")
        query(dsn, f"SELECT pg_terminate_backend(pid) FROM ({STALLED}) AS s")
    assert len(outcome) == 1 and isinstance(outcome[0], sqlrunner.ConnectionLost), outcome
    assert "[41, 51)" in str(outcome[0]) and "resumes" in str(outcome[0])
    assert position(dsn)[2:4] == (41, 4)
    query(dsn, "UPDATE gate SET stall = false RETURNING 1")
    sqlrunner.apply(dsn, root)
    assert counters(dsn) == {1: 86}
    assert position(dsn) == (1, 101, 101, 10, 86, True)


# Batch [41, 51) sleeps 2 s: long enough for the test to move the progress row under it.
PAUSE_AT_41 = " FROM (SELECT CASE WHEN :lo = 41 THEN pg_sleep(2) END) AS pause"
IN_41 = STALLED.replace("41 = 41 AND%", "41 = 41 THEN pg_sleep(2)%")


def test_a_batch_whose_progress_row_moved_under_it_rolls_back(dsn: str, sql_set: SqlSet) -> None:
    """Another runner (one that wrongly believed it held the runner lock) applies batch
    [41, 51) and moves the progress row to 51 while this run's own [41, 51) is in flight.
    The progress UPDATE is guarded by ``next_key = lo``: this run's batch rolls back
    with LockLost instead of committing the same rows a second time."""
    root = items_set(sql_set, batched(body=PAUSE_AT_41))
    with apply_in_background(dsn, root) as outcome:
        wait_until(lambda: query(dsn, IN_41), message="the batch at key 41 to run")
        # what the other runner commits: the batch and its progress row, in one transaction
        query(
            dsn,
            "WITH batch AS (UPDATE items SET counter = counter + 1 WHERE id >= 41 AND id < 51) "
            "UPDATE sqlrunner_ledger_backfill SET next_key = 51, batches = batches + 1, "
            "rows = rows + 8 WHERE version = 2 AND next_key = 41 RETURNING 1",
        )
    assert len(outcome) == 1 and isinstance(outcome[0], sqlrunner.LockLost), outcome
    assert "batch [41, 51)" in str(outcome[0]) and "moved" in str(outcome[0])
    assert counters(dsn) == {1: 43, 0: 43}  # [1, 51) once, the rest not yet
    sqlrunner.apply(dsn, root)
    assert counters(dsn) == {1: 86}
    assert position(dsn) == (1, 101, 101, 10, 86, True)


def next_key(dsn: str) -> int | None:
    """The stored next key; None before the first batched file created the table."""
    if query(dsn, "SELECT to_regclass('sqlrunner_ledger_backfill')") == [(None,)]:
        return None
    rows = query(dsn, "SELECT next_key FROM sqlrunner_ledger_backfill WHERE version = 2")
    return int(str(rows[0][0])) if rows else None


def test_kill_9_at_random_moments_changes_every_row_exactly_once(dsn: str, sql_set: SqlSet) -> None:
    """A real ``sqlrunner apply`` killed with SIGKILL ten times at random moments of its
    backfill (inside a batch, between two, while committing), then run to completion:
    every row's counter is 1, and the progress row says done."""
    pause = " FROM (SELECT pg_sleep(0.02)) AS pause"
    root = items_set(sql_set, batched(body=pause).replace(" id ", " items.id "), rows=1400)
    sqlrunner.apply(dsn, root, to=1)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    stops: list[int | None] = []
    for _ in range(10):
        before = next_key(dsn)
        runner = spawn("--sql-dir", str(root), "apply", dsn=dsn)
        # this run's first batch committed: from here on, a random moment
        # (the first run stores next_key = 1 before its first batch: not a commit yet)
        wait_until(
            lambda: next_key(dsn) not in (before, None, 1),  # noqa: B023
            timeout=30,
            message="a batch to commit",
        )
        time.sleep(rng.uniform(0, 0.3))
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        stops.append(next_key(dsn))
    code, stderr = finish(spawn("--sql-dir", str(root), "apply", dsn=dsn), timeout=120)
    assert code == 0, (seed, stops, stderr)
    assert counters(dsn) == {1: 1200}, (seed, stops)
    assert position(dsn) == (1, 1400, 1400, 140, 1200, True), (seed, stops)
    assert all(k is not None and 1 < k < 1400 for k in stops), (seed, stops)


def apply_past_a_blocker(
    dsn: str, root: Path, lock: str
) -> tuple[sqlrunner.ApplyReport, list[str]]:
    """Apply the backfill of ``root`` (its table made first) while another session holds
    what ``lock`` takes, letting go at the first retry: the report and the retry messages."""
    sqlrunner.apply(dsn, root, to=1)
    retries: list[str] = []
    with lock_holder(dsn, lock) as blocker:

        def listen(event: Event) -> None:
            if event.kind == "retry":
                retries.append(event.message)
                blocker.commit()

        report = sqlrunner.apply(dsn, root, lock_timeout="100ms", on_event=listen)
    return report, retries


def test_a_batch_waits_out_a_row_lock_and_retries(dsn: str, sql_set: SqlSet) -> None:
    root = items_set(sql_set, batched())
    report, retries = apply_past_a_blocker(
        dsn, root, "SELECT * FROM items WHERE id = 55 FOR UPDATE"
    )
    assert retries and "batch [51, 61)" in retries[0]
    assert report.applied[0].attempts >= 2
    assert counters(dsn) == {1: 86}


def test_fixing_the_key_range_waits_out_a_table_lock(dsn: str, sql_set: SqlSet) -> None:
    """min/max of the key need ACCESS SHARE: an ACCESS EXCLUSIVE holder is waited out
    with the lock_timeout and retries, like any migration."""
    root = items_set(sql_set, batched())
    _, retries = apply_past_a_blocker(dsn, root, "LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
    assert retries and "reading the key range of public.items" in retries[0]
    assert counters(dsn) == {1: 86}


def test_a_batch_gives_up_naming_the_blocker_then_resumes(dsn: str, sql_set: SqlSet) -> None:
    root = items_set(sql_set, batched())
    sqlrunner.apply(dsn, root, to=1)
    row_lock = "SELECT * FROM items WHERE id = 55 FOR UPDATE"
    with lock_holder(dsn, row_lock, "row holder") as blocker:
        with pytest.raises(sqlrunner.LockTimeout) as gave_up:
            sqlrunner.apply(dsn, root, lock_timeout="100ms", lock_retries=1)
        assert f"pid {blocker.info.backend_pid} (row holder" in str(gave_up.value)
        assert "batch [51, 61)" in str(gave_up.value)
        assert "resumes" in str(gave_up.value)
        blocker.rollback()
    assert position(dsn)[2] == 51
    sqlrunner.apply(dsn, root)
    assert counters(dsn) == {1: 86}


SLOW = " FROM (SELECT pg_sleep(0.1)) AS pause"


def test_budget_stops_between_batches_with_exit_6_then_resumes(dsn: str, sql_set: SqlSet) -> None:
    root = items_set(sql_set, batched(body=SLOW).replace(" id ", " items.id "))
    base = ("--dsn", dsn, "--sql-dir", str(root))
    stopped = invoke(*base, "--heartbeat", "0.5", "apply", "--budget", "0.35s")
    assert stopped.code == 6, stopped.output
    assert "pending: the backfill continues on the next apply" in stopped.stderr
    assert "backfill 10% (key 11 of [1, 101))" in stopped.stderr  # the first batch's line
    done_keys, done_rows = (int(str(v)) for v in position(dsn)[2:5:2])
    assert 11 <= done_keys < 101
    assert counters(dsn) == {1: done_rows, 0: 86 - done_rows}

    status = invoke(*base, "status")
    assert f"at key {done_keys} of [1, 101)" in status.stdout, status.output
    document = json.loads(invoke(*base, "--json", "status").stdout)
    (backfill,) = document["backfills"]
    assert (backfill["version"], backfill["next_key"], backfill["hi_key"]) == (2, done_keys, 101)
    assert invoke(*base, "status", "--exit-code").code == 6
    assert query(
        dsn,
        "SELECT outcome FROM sqlrunner_ledger_history WHERE kind = 'run' ORDER BY id DESC LIMIT 1",
    ) == [("pending",)]

    finished = invoke(*base, "apply")
    assert finished.code == 0, finished.output
    assert counters(dsn) == {1: 86}
    assert "at key" not in invoke(*base, "status").stdout


def test_a_budget_in_sqlrunner_toml_stops_the_backfill_like_the_flag(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    root = items_set(sql_set, batched(body=SLOW).replace(" id ", " items.id "))
    (tmp_path / "sqlrunner.toml").write_text(f'budget = "0.35s"\nsql_dir = "{root}"\n')
    stopped = invoke("--dsn", dsn, "apply", cwd=tmp_path)
    assert stopped.code == 6, stopped.output
    assert "stopped by the budget of 0.35s" in stopped.stderr
    assert 11 <= int(str(position(dsn)[2])) < 101


def test_budget_progress_lines_as_json_for_log_shippers(dsn: str, sql_set: SqlSet) -> None:
    root = items_set(sql_set, batched())
    run = invoke("--dsn", dsn, "--sql-dir", str(root), "-v", "--log-format", "json", "apply")
    assert run.code == 0, run.output
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    progress = [line for line in lines if line["event"] == "backfill"]
    assert len(progress) == 10  # -v: one per batch
    assert (progress[-1]["rows"], progress[-1]["batches"], progress[-1]["next_key"]) == (
        86,
        10,
        101,
    )
    assert progress[0]["eta_s"] is not None and progress[-1]["eta_s"] == 0


def test_an_edited_file_mid_backfill_is_drift_with_a_way_out(dsn: str, sql_set: SqlSet) -> None:
    root = items_set(sql_set, batched(body=", note = (1 / (id - 33))::text"))
    with pytest.raises(sqlrunner.MigrationFailed):
        sqlrunner.apply(dsn, root)
    edited = root / "forward/0002_backfill.sql"
    edited.write_text(batched(body=", note = (1 / nullif(id - 33, 0))::text"))
    with pytest.raises(sqlrunner.ChecksumMismatch) as drift:
        sqlrunner.apply(dsn, root)
    message = str(drift.value)
    assert "changed while its backfill is in progress" in message
    assert "up to key 31 of [1, 101)" in message
    assert counters(dsn) == {1: 26, 0: 60}
    # the message's way on: the rest of the range with the new text
    fix = message.split("(UPDATE ", 1)[1].split(")", 1)[0]
    query(dsn, f"UPDATE {fix} RETURNING 1")
    sqlrunner.apply(dsn, root)
    assert counters(dsn) == {1: 86}


HEAD = "-- sqlrunner: batched table=items key=id size=10"
ONE_BATCH = "UPDATE items SET counter = 1 WHERE id >= :lo AND id < :hi;\n"
# case: (file, line of the problem, what the message says)
INVALID = {
    "no key": (f"-- sqlrunner: batched table=items size=10\n{ONE_BATCH}", 1, "missing key="),
    "unknown option": (f"{HEAD} speed=3\n{ONE_BATCH}", 1, "unknown option 'speed'"),
    "bad target": (f"{HEAD} target=fast\n{ONE_BATCH}", 1, "invalid duration 'fast'"),
    "bad size": (f"{HEAD.replace('size=10', 'size=0')}\n{ONE_BATCH}", 1, "size=0"),
    "two statements": (
        f"{HEAD}\n{ONE_BATCH}DELETE FROM items WHERE id >= :lo AND id < :hi;\n",
        3,
        "exactly one statement",
    ),
    "no hi": (f"{HEAD}\nUPDATE items SET counter = 1 WHERE id >= :lo;\n", 2, "must use :hi"),
    "a transaction": (f"{HEAD}\nBEGIN;\n{ONE_BATCH}COMMIT;\n", 2, "no BEGIN/COMMIT"),
    "not DML": (
        f"{HEAD}\n{ONE_BATCH.replace('UPDATE items SET counter = 1', 'SELECT * FROM items')}",
        2,
        "must be an UPDATE",
    ),
    "other variable": (f"{HEAD}\n{ONE_BATCH.replace('1', ':who')}", 2, "psql variable :who"),
    "quoted bound": (HEAD + "\n" + ONE_BATCH.replace(":lo", ":'lo'"), 2, "without quotes"),
    "nothing": (f"{HEAD}\n-- to do\n", 1, "needs one UPDATE"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_an_invalid_batched_file_is_refused_before_anything_runs(
    dsn: str, sql_set: SqlSet, case: str
) -> None:
    text, line, fragment = INVALID[case]
    root = items_set(sql_set, text)
    (problem,) = sqlrunner.api.check(root).problems
    assert problem.path is not None and problem.path.endswith("forward/0002_backfill.sql")
    assert problem.line == line and fragment in problem.message, problem
    run = invoke("--dsn", dsn, "--sql-dir", str(root), "apply")
    assert run.code == 2, run.output
    assert f"0002_backfill.sql:{line}:" in run.stderr
    assert query(dsn, "SELECT to_regclass('items'), to_regclass('sqlrunner_ledger')") == [
        (None, None)
    ]


def test_the_header_table_must_exist_with_an_integer_key(dsn: str, sql_set: SqlSet) -> None:
    root = items_set(sql_set, batched().replace("key=id", "key=note"))
    run = invoke("--dsn", dsn, "--sql-dir", str(root), "apply")
    assert run.code == 2, run.output
    assert "key note is text: a batched key must be smallint, integer or bigint" in run.stderr


def test_one_batch_by_hand_with_psql_does_what_the_runner_does(
    dsn: str, sql_set: SqlSet, psql: list[str]
) -> None:
    """Quotes, dollar quotes and comments keep their :lo and :hi, under psql as under the
    runner; the bounds are the ones psql was given."""
    body = ",\n    note = ':lo stays' || $$ and :hi too$$ /* :hi */ -- not :lo either"
    root = items_set(sql_set, batched(body=body))
    sqlrunner.apply(dsn, root, to=1)
    path = root / "forward/0002_backfill.sql"
    by_hand = subprocess.run(
        [
            *psql,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "lo=11",
            "-v",
            "hi=21",
            "-f",
            str(path),
            "-d",
            dsn,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert by_hand.returncode == 0, by_hand.stderr
    assert "UPDATE 9" in by_hand.stdout  # 11..20 without 14
    expected = ":lo stays and :hi too"
    assert query(
        dsn, "SELECT min(id), max(id), count(*), min(note), max(note) FROM items WHERE counter = 1"
    ) == [(11, 20, 9, expected, expected)]
    sqlrunner.apply(dsn, root)
    assert counters(dsn) == {2: 9, 1: 77}
    assert query(dsn, "SELECT DISTINCT note FROM items") == [(expected,)]


def derived_set(sql_set: SqlSet, derived: str) -> Path:
    """items, then a column the backfill fills, then the backfill; each reversible."""
    header = f"size=50 target=off{derived}"
    return sql_set(
        {
            "forward/0001_items.sql": TABLE.format(rows=100),
            "forward/0002_label.sql": "BEGIN;\nALTER TABLE items ADD COLUMN label text;\nCOMMIT;\n",
            "rollback/0002_label.sql": "BEGIN;\nALTER TABLE items DROP COLUMN label;\nCOMMIT;\n",
            "forward/0003_fill_label.sql": batched(header, ", label = 'item ' || id"),
            "rollback/0003_fill_label.sql": (
                "BEGIN;\nUPDATE items SET label = NULL, counter = counter - 1;\nCOMMIT;\n"
            ),
        }
    )


def test_derived_columns_are_not_data_at_risk_but_other_overwrites_are(
    dsn: str, sql_set: SqlSet
) -> None:
    """The rollback resets the derived label (not data) and counter (data: asked); the
    drop of the derived label by the next rollback loses nothing a re-apply does not
    compute again."""
    root = derived_set(sql_set, " derived=label")
    sqlrunner.apply(dsn, root)
    would = sqlrunner.rollback(dsn, root, to=1, dry_run=True)
    assert would.data_at_risk == (
        "column items.counter: up to 86 values overwritten by UPDATE items SET label = NULL, "
        "counter = counter - 1 at rollback/0003_fill_label.sql:2",
    )
    with pytest.raises(sqlrunner.DataLossRefused):
        sqlrunner.rollback(dsn, root, to=1)
    (root / "rollback/0003_fill_label.sql").write_text(
        "BEGIN;\nUPDATE items SET label = NULL;\nCOMMIT;\n"
    )
    report = sqlrunner.rollback(dsn, root, to=1)
    assert report.data_at_risk == ()
    assert [r.version for r in report.rolled_back] == [3, 2]
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger_backfill") == [(0,)]
    sqlrunner.apply(dsn, root)  # the backfill runs again from its first key
    assert counters(dsn) == {2: 86}
    assert query(dsn, "SELECT count(*) FROM items WHERE label = 'item ' || id") == [(86,)]


def test_without_derived_the_backfilled_values_are_data_at_risk(dsn: str, sql_set: SqlSet) -> None:
    root = derived_set(sql_set, "")
    sqlrunner.apply(dsn, root)
    would = sqlrunner.rollback(dsn, root, to=1, dry_run=True)
    assert [line.split(":")[0] for line in would.data_at_risk] == [
        "column items.label",  # dropped by rollback/0002
        "column items.label",  # overwritten by rollback/0003
        "column items.counter",
    ]


def test_between_batches_runs_between_batches_and_may_stop_the_file(
    dsn: str, sql_set: SqlSet
) -> None:
    """The replica-lag gate's hook: called between two batches, never inside one; what
    it raises stops the file with every batch before it committed."""
    root = items_set(sql_set, batched())
    calls: list[int] = []

    class Behind(Exception):
        pass

    def gate() -> None:
        calls.append(int(str(position(dsn)[2])))
        if len(calls) == 4:
            raise Behind

    with pytest.raises(Behind):
        sqlrunner.apply(dsn, root, between_batches=gate)
    assert calls == [11, 21, 31, 41]  # each time with the batch before it committed
    assert counters(dsn) == {1: 35, 0: 51}
    calls.clear()
    sqlrunner.apply(dsn, root, between_batches=lambda: calls.append(0))
    assert len(calls) == 5  # six batches left: five gaps between them
    assert counters(dsn) == {1: 86}
