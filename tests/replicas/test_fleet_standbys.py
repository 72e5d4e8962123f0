"""``fleet apply`` with the standby options on a real streaming pair: every target's apply
waits for, and is bounded by, the standbys of its own server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from sqlrunner import fleet

from .conftest import Replicated
from .test_lag_gate import BIG, ROWS
from .test_wait_replicas import THINGS


@pytest.fixture
def two_targets(replicated: Replicated) -> Iterator[list[str]]:
    """The test's database and a second one on the same primary, both replayed."""
    pair, other = replicated.pair, replicated.dbname + "_2"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(other))
    pair.sql(pair.primary(), drop)
    pair.sql(pair.primary(), sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    pair.caught_up()
    try:
        yield [replicated.primary, pair.primary(other)]
    finally:
        pair.reset()
        pair.sql(pair.primary(), drop)


def test_each_target_waits_for_its_standby_and_fails_8_when_replay_is_paused(
    replicated: Replicated, two_targets: list[str], sql_set: Any
) -> None:
    replicated.pair.sql(replicated.pair.standby(), "SELECT pg_wal_replay_pause()")
    started = time.monotonic()

    report = fleet.apply(two_targets, sql_set(THINGS), wait_replicas=0.5)

    assert time.monotonic() - started < 20
    assert [(r.outcome, r.exit_code, r.error_kind) for r in report.results] == [
        ("failed", 8, "ReplicasBehind")
    ] * 2
    assert all(
        "standby standby1 (127.0.0.1, slot slot1) has not replayed it" in (r.error or "")
        for r in report.results
    )
    assert all(r.applied == ("forward/0001_things.sql",) for r in report.results)
    assert report.exit_code == 7


def test_the_lag_gate_bounds_each_target_by_replica_wait(
    replicated: Replicated, two_targets: list[str], sql_set: Any
) -> None:
    """Without max_replica_lag the file would run to its end; without replica_wait each
    target would wait 300 s (the default) for the paused standby."""
    replicated.pair.sql(replicated.pair.standby(), "SELECT pg_wal_replay_pause()")
    started = time.monotonic()

    report = fleet.apply(two_targets, sql_set(BIG), max_replica_lag=1 << 20, replica_wait=1)

    assert time.monotonic() - started < 20
    for result in report.results:
        assert (result.outcome, result.exit_code) == ("failed", 8), result
        assert (result.error or "").startswith("a standby stayed more than 1.0 MB behind for 1s")
    # Each stopped before the file's end, after one INSERT at most: the standby is one per
    # server, so the other target's WAL may hold this one before its first statement.
    for dsn in two_targets:
        recorded = "SELECT count(*) FROM sqlrunner_ledger WHERE kind = 'forward'"
        assert replicated.pair.sql(dsn, recorded) == [(0,)]
        if replicated.pair.sql(dsn, "SELECT to_regclass('big') IS NOT NULL") == [(True,)]:
            assert replicated.pair.sql(dsn, "SELECT count(*) FROM big") in ([(0,)], [(ROWS,)])
