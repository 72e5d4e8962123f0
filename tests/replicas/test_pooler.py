"""Through PgBouncer in transaction mode: the standbys' positions are plain SELECTs."""

from __future__ import annotations

from typing import Any

import pytest

import sqlrunner
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
