"""--max-replica-lag: a large no-transaction file waits between statements for a slow standby."""

from __future__ import annotations

import time
from typing import Any

import pytest

import sqlrunner
from sqlrunner.report import Event

from .conftest import LagSampler, Replicated

STATEMENTS = 6
ROWS = 10_000  # each INSERT below writes about 3 MB of WAL (heap and index)
BIG = {
    "forward/0001_big.sql": "-- sqlrunner: no-transaction\n"
    "CREATE TABLE IF NOT EXISTS big (id int PRIMARY KEY, pad text);\n"
    + "".join(
        f"INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series({i * ROWS + 1}, "
        f"{(i + 1) * ROWS}) AS g ON CONFLICT (id) DO NOTHING;\n"
        for i in range(STATEMENTS)
    ),
    "rollback/0001_big.sql": "BEGIN;\nDROP TABLE big;\nCOMMIT;\n",
}
# Under one statement's WAL. Each commit record replays a second late, so replay stops
# there while the next statement's WAL piles up behind it: the gate then waits; the lag
# can pass the bound only by the statement running. How much WAL one statement writes
# varies (full-page images after a checkpoint), so the test measures it.
BOUND = 1 << 20


def test_max_replica_lag_holds_the_lag_of_a_large_no_transaction_file_under_the_bound(
    replicated: Replicated, sql_set: Any
) -> None:
    replicated.pair.delay_replay("1s")
    sql_dir = sql_set(BIG)
    events: list[Event] = []

    def listen(event: Event) -> None:
        events.append(event)
        gated.lsn_at(event)

    with LagSampler(replicated) as gated:
        report = sqlrunner.apply(
            replicated.primary,
            sql_dir,
            max_replica_lag=BOUND,
            replica_wait=30,
            on_event=listen,
        )
    assert report.applied[0].statements == STATEMENTS + 1
    # The gate holds the lag under the bound when each statement starts; only that
    # statement's WAL adds to it (twice the usual with full-page images after a
    # checkpoint). Measured against the primary's write position, the runner's own
    # asynchronous commits went unseen and two statements' WAL piled up (fixed: the gate
    # measures from the insert position). Without the gate the whole file's WAL piles up.
    largest = gated.largest_statement_wal()
    assert gated.peak <= BOUND + largest, (gated.peak, largest)
    waits = [e.message for e in events if e.kind == "waiting"]
    assert waits and "standby standby1 (127.0.0.1, slot slot1): " in waits[0]
    assert "to come within 1.0 MB" in waits[0]
    assert len(waits) >= 1
    # The same file again without the bound, the standby slower still: without the gate it
    # falls far behind (proof that the bound above was the gate's doing).
    sqlrunner.rollback(replicated.primary, sql_dir, allow_data_loss=True)
    replicated.pair.caught_up()
    replicated.pair.delay_replay("4s")
    with LagSampler(replicated) as free:
        sqlrunner.apply(replicated.primary, sql_dir)
    assert free.peak > BOUND + 2 * largest, (free.peak, largest)


def test_lag_gate_gives_up_with_exit_8_and_a_rerun_resumes(
    replicated: Replicated, sql_set: Any
) -> None:
    replicated.pair.pause_replay()
    sql_dir = sql_set(BIG)
    started = time.monotonic()
    with pytest.raises(sqlrunner.ReplicasBehind) as caught:
        sqlrunner.apply(replicated.primary, sql_dir, max_replica_lag=1 << 20, replica_wait=1)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith("a standby stayed more than 1.0 MB behind for 1s")
    assert "standby standby1 (127.0.0.1, slot slot1): " in message
    assert "run apply again once it has caught up: it resumes where it stopped" in message
    assert replicated.pair.sql(replicated.primary, "SELECT count(*) FROM big") == [(ROWS,)]
    replicated.pair.resume_replay()
    events: list[Event] = []
    report = sqlrunner.apply(
        replicated.primary, sql_dir, max_replica_lag=64 << 20, on_event=events.append
    )
    skipped = [e for e in events if e.kind == "statement_skipped"]
    # the CREATE TABLE and the first INSERT were done and recorded: not run again
    assert [e.statement.index for e in skipped if e.statement is not None] == [0, 1]
    assert [f.name for f in report.applied] == ["big"]
    assert replicated.pair.sql(replicated.primary, "SELECT count(*) FROM big") == [
        (ROWS * STATEMENTS,)
    ]
