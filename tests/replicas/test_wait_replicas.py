"""apply --wait-replicas: success means the standby has it too; exit 8 when it has not."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sqlrunner
from sqlrunner.report import Event
from tests.integration.clirun import invoke, run_process

from .conftest import Replicated

THINGS = {
    "forward/0001_things.sql": "BEGIN;\nCREATE TABLE things (id int PRIMARY KEY, label text);\n"
    "INSERT INTO things VALUES (1, 'one');\nCOMMIT;\n",
    "rollback/0001_things.sql": "BEGIN;\nDROP TABLE things;\nCOMMIT;\n",
}
NOTE = {
    "forward/0002_note.sql": "BEGIN;\nALTER TABLE things ADD COLUMN note text;\nCOMMIT;\n",
    "rollback/0002_note.sql": "BEGIN;\nALTER TABLE things DROP COLUMN note;\nCOMMIT;\n",
}


def on_standby(db: Replicated, query: str) -> list[tuple[Any, ...]]:
    return db.pair.sql(db.standby, query)


def test_apply_returns_once_the_standby_shows_the_new_table(
    replicated: Replicated, sql_set: Any
) -> None:
    # Replay runs a second behind: without the wait, the table is not there yet.
    replicated.pair.delay_replay("1s")
    sql_dir = sql_set(THINGS)
    run = invoke(
        "--dsn",
        replicated.primary,
        "--sql-dir",
        str(sql_dir),
        "--json",
        "apply",
        "--wait-replicas=20",
    )
    assert run.code == 0, run.output
    assert on_standby(replicated, "SELECT label FROM things") == [("one",)]
    waited = json.loads(run.stdout)["replicas"]
    assert [s["name"] for s in waited["standbys"]] == ["standby1"]
    assert waited["standbys"][0]["slot"] == "slot1"
    assert waited["standbys"][0]["bytes_behind"] <= 0
    assert waited["waited_ms"] >= 500  # it did wait for the delayed replay
    assert "standby standby1 (127.0.0.1, slot slot1) replayed" in run.stderr


def test_nothing_to_apply_does_not_wait(replicated: Replicated, sql_set: Any) -> None:
    sql_dir = sql_set(THINGS)
    sqlrunner.apply(replicated.primary, sql_dir)
    replicated.pair.pause_replay()
    started = time.monotonic()
    report = sqlrunner.apply(replicated.primary, sql_dir, wait_replicas=30)
    assert time.monotonic() - started < 5
    assert report.applied == () and report.replicas is None


def test_paused_replay_exits_8_within_the_timeout_naming_the_standby(
    replicated: Replicated, sql_set: Any
) -> None:
    replicated.pair.pause_replay()
    sql_dir = sql_set(THINGS)
    started = time.monotonic()
    with pytest.raises(sqlrunner.ReplicasBehind) as caught:
        sqlrunner.apply(replicated.primary, sql_dir, wait_replicas=1.5)
    assert 1.5 <= time.monotonic() - started < 6
    message = str(caught.value)
    assert message.startswith("applied on the primary; standby standby1 (127.0.0.1, slot slot1)")
    assert "has not replayed it: " in message and " behind" in message
    assert "received but not replayed" in message
    assert caught.value.exit_code == 8
    assert caught.value.standbys == ("standby1 (127.0.0.1, slot slot1)",)
    assert [f.name for f in caught.value.report.applied] == ["things"]  # type: ignore[attr-defined]
    # the run itself is done and recorded on the primary
    assert replicated.pair.sql(
        replicated.primary, "SELECT version FROM sqlrunner_ledger WHERE kind = 'forward'"
    ) == [(1,)]


def test_a_standby_named_by_dsn_says_its_replay_is_paused(
    replicated: Replicated, sql_set: Any
) -> None:
    replicated.pair.pause_replay()
    with pytest.raises(sqlrunner.ReplicasBehind) as caught:
        sqlrunner.apply(
            replicated.primary, sql_set(THINGS), wait_replicas=1, replicas=[replicated.standby]
        )
    message = str(caught.value)
    assert f"port={replicated.pair.standby_port}" in message
    assert "replay paused (SELECT pg_wal_replay_resume() on the standby resumes it)" in message


def test_resumed_replay_lets_the_wait_succeed(replicated: Replicated, sql_set: Any) -> None:
    replicated.pair.pause_replay()
    resume = threading.Timer(1.0, replicated.pair.resume_replay)
    resume.start()
    started = time.monotonic()
    try:
        report = sqlrunner.apply(replicated.primary, sql_set(THINGS), wait_replicas=30)
    finally:
        resume.join()
    assert time.monotonic() - started >= 1.0
    assert report.replicas is not None and report.replicas.standbys[0].name == "standby1"
    assert on_standby(replicated, "SELECT count(*) FROM things") == [(1,)]


def test_a_query_on_the_standby_holding_the_table_stalls_replay_and_is_named(
    replicated: Replicated, sql_set: Any
) -> None:
    sql_dir = sql_set({**THINGS, **NOTE})
    sqlrunner.apply(replicated.primary, sql_dir, to=1, wait_replicas=20)
    # Replay waits as long as the query runs instead of cancelling it after 30 s.
    replicated.pair.configure_standby("max_standby_streaming_delay", "-1")
    reader = psycopg.connect(replicated.standby, application_name="report reader")
    try:
        reader.execute("SELECT count(*) FROM things")  # its transaction holds ACCESS SHARE
        with pytest.raises(sqlrunner.ReplicasBehind) as caught:
            sqlrunner.apply(
                replicated.primary, sql_dir, wait_replicas=2, replicas=[replicated.standby]
            )
        message = str(caught.value)
        assert "has not replayed it" in message
        assert "replay waits for a lock held by pid" in message
        assert "(report reader): SELECT count(*) FROM things" in message
        assert "standby standby1 (127.0.0.1, slot slot1) has not replayed it" in message
    finally:
        reader.close()
    replicated.pair.caught_up()  # the query ended: replay goes on
    assert on_standby(replicated, "SELECT note FROM things") == [(None,)]


def test_a_standby_that_stops_during_the_wait_is_named(
    replicated: Replicated, sql_set: Any
) -> None:
    replicated.pair.pause_replay()
    stop = threading.Timer(0.5, replicated.pair.stop, ("standby",))
    stop.start()
    try:
        with pytest.raises(sqlrunner.ReplicasBehind) as caught:
            sqlrunner.apply(replicated.primary, sql_set(THINGS), wait_replicas=3)
    finally:
        stop.join()
    assert "standby standby1 (127.0.0.1, slot slot1) has not replayed it: disconnected" in str(
        caught.value
    )


def test_a_stopped_standby(replicated: Replicated, sql_set: Any) -> None:
    replicated.pair.stop("standby")
    sql_dir = sql_set(THINGS)
    # Named with --replica: refused before anything runs (exit 3), the database untouched.
    named = invoke(
        "--dsn",
        replicated.primary,
        "--sql-dir",
        str(sql_dir),
        "apply",
        "--wait-replicas=5",
        "--replica",
        replicated.standby + " password=hunter2",
    )
    assert named.code == 3, named.output
    assert named.errors[0].startswith("sqlrunner: error: cannot reach standby ")
    assert f"port={replicated.pair.standby_port}" in named.errors[0]
    assert named.errors[0].endswith("| nothing was run")
    assert "hunter2" not in named.output and "password=***" in named.errors[0]
    assert replicated.pair.sql(
        replicated.primary, "SELECT to_regclass('sqlrunner_ledger') IS NULL"
    ) == [(True,)]
    # Not named: it streams no more, so there is nothing to wait for; its slot is named.
    events: list[Event] = []
    report = sqlrunner.apply(replicated.primary, sql_dir, wait_replicas=5, on_event=events.append)
    assert report.replicas is not None and report.replicas.standbys == ()
    note = "slot slot1 is inactive: its standby is not streaming and was not waited for"
    assert note in report.replicas.notes
    assert any(e.kind == "warning" and e.message == note for e in events)


def test_exit_code_8_as_the_shell_sees_it(replicated: Replicated, sql_set: Any) -> None:
    replicated.pair.pause_replay()
    sql_dir: Path = sql_set(THINGS)
    done = run_process(
        "--dsn", replicated.primary, "--sql-dir", str(sql_dir), "apply", "--wait-replicas", "1"
    )
    assert done.code == 8, done.stderr
    errors = done.errors
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert errors[0].startswith(
        "sqlrunner: error: applied on the primary; standby standby1 (127.0.0.1, slot slot1) "
        "has not replayed it: "
    )
    assert "applied 1 migration(s)" in done.stdout  # what the run did, before the error


def test_positions_hidden_from_the_role_are_refused_before_anything_runs(
    replicated: Replicated, sql_set: Any
) -> None:
    pair, role = replicated.pair, f"app_{replicated.dbname}"[:60]
    pair.sql(pair.primary(), f"DROP ROLE IF EXISTS {role}")
    pair.sql(pair.primary(), f"CREATE ROLE {role} LOGIN")
    pair.sql(pair.primary(), f"ALTER DATABASE {replicated.dbname} OWNER TO {role}")
    try:
        as_app = replicated.primary.replace("user=postgres", f"user={role}")
        with pytest.raises(sqlrunner.UsageError) as caught:
            sqlrunner.apply(as_app, sql_set(THINGS), wait_replicas=5)
        assert str(caught.value) == (
            f"pg_stat_replication shows 1 standby(s) but hides their positions from role {role}: "
            "grant it pg_read_all_stats, or name each standby with apply --replica DSN | nothing was run"
        )
        assert pair.sql(replicated.primary, "SELECT to_regclass('sqlrunner_ledger')") == [(None,)]
        # Named by DSN, the standby is waited for; the hidden row is a note.
        report = sqlrunner.apply(
            as_app, sql_set(THINGS), wait_replicas=10, replicas=[replicated.standby]
        )
        assert report.replicas is not None and len(report.replicas.standbys) == 1
        assert any("hides their positions" in n for n in report.replicas.notes)
    finally:
        pair.sql(pair.primary(), f"ALTER DATABASE {replicated.dbname} OWNER TO postgres")
        pair.sql(replicated.primary, f"DROP OWNED BY {role}")
        pair.sql(pair.primary(), f"DROP ROLE {role}")


def test_the_json_error_of_exit_8_names_the_standbys_and_what_was_applied(
    replicated: Replicated, sql_set: Any
) -> None:
    replicated.pair.pause_replay()
    run = invoke(
        "--dsn", replicated.primary, "--sql-dir", str(sql_set(THINGS)), "--json",
        "apply", "--wait-replicas=1",
    )  # fmt: skip
    assert run.code == 8, run.output
    error = json.loads(run.stdout)
    assert error["report"] == "error" and error["exit_code"] == 8
    assert error["error"] == "ReplicasBehind"
    assert error["standbys"] == ["standby1 (127.0.0.1, slot slot1)"]
    assert [f["name"] for f in error["result"]["applied"]] == ["things"]
