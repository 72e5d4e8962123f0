"""Through PgBouncer in transaction mode: the standbys' positions are plain SELECTs."""

from __future__ import annotations

from typing import Any

import pytest

import sqlrunner
from tests.integration.faults import round_robin_pgbouncer
from tests.integration.test_pgbouncer import bouncer_dsn

from .conftest import Replicated
from .test_wait_replicas import THINGS

__all__ = ["bouncer_dsn"]  # the fixture, used through ``dsn`` below


@pytest.fixture
def dsn(replicated: Replicated) -> str:
    """The database PgBouncer (``bouncer_dsn``) pools: this test's, on the pair's primary."""
    return replicated.primary


def test_apply_through_pgbouncer_waits_for_the_standby(
    replicated: Replicated, bouncer_dsn: str, sql_set: Any
) -> None:
    replicated.pair.delay_replay("1s")
    report = sqlrunner.apply(
        bouncer_dsn, sql_set(THINGS), wait_replicas=20, max_replica_lag=1 << 30
    )
    assert report.replicas is not None
    assert [s.name for s in report.replicas.standbys] == ["standby1"]
    assert replicated.pair.sql(replicated.standby, "SELECT label FROM things") == [("one",)]


def test_a_long_wait_through_a_round_robin_pooler_never_uses_a_prepared_statement(
    replicated: Replicated, sql_set: Any
) -> None:
    """A wait of 2 s re-reads the standbys' positions every 0.1 s with one query text:
    psycopg would prepare it after five reads, and a round-robin pooler would send the
    sixth to a server connection that never saw it ("prepared statement does not
    exist"); the run's connections never prepare."""
    replicated.pair.delay_replay("2s")
    with round_robin_pgbouncer(replicated.primary) as through:
        report = sqlrunner.apply(
            through, sql_set(THINGS), wait_replicas=20, max_replica_lag=1 << 30
        )
    assert report.replicas is not None and report.replicas.waited_ms >= 1000, report.replicas
    assert replicated.pair.sql(replicated.standby, "SELECT label FROM things") == [("one",)]
