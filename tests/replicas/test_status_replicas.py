"""status --replicas: each standby from LSNs, whether replay is paused, and the slots."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.clirun import invoke

from .conftest import Replicated


def test_status_shows_each_standby_from_lsns_and_its_paused_replay(
    replicated: Replicated, sql_set: Any
) -> None:
    replicated.pair.pause_replay()
    replicated.pair.sql(
        replicated.primary, "CREATE TABLE filler AS SELECT g FROM generate_series(1, 20000) g"
    )
    run = invoke(
        "--dsn",
        replicated.primary,
        "--sql-dir",
        str(sql_set({})),
        "--json",
        "status",
        "--replicas",
        "--replica",
        replicated.standby,
    )
    assert run.code == 0, run.output
    document = json.loads(run.stdout)
    assert document["report"] == "status" and document["up_to_date"] is True
    streaming, named = document["replicas"]["standbys"]
    assert streaming["name"] == "standby1" and streaming["state"] == "streaming"
    assert streaming["bytes_behind"] > 100_000  # the filler's WAL, from LSNs
    assert streaming["sent_lsn"] and streaming["replay_lsn"]
    assert named["paused"] is True and named["bytes_behind"] > 100_000
    assert named["seconds_behind"] is not None
    text = invoke(
        "--dsn",
        replicated.primary,
        "--sql-dir",
        str(sql_set({})),
        "status",
        "--replicas",
        "--replica",
        replicated.standby,
    ).stdout
    assert "standby1 (127.0.0.1, slot slot1): streaming, sent " in text
    assert "replay paused" in text
    assert "slot1 physical active" in text


def test_status_warns_about_an_inactive_slot_retaining_wal(
    replicated: Replicated, sql_set: Any
) -> None:
    replicated.pair.stop("standby")
    replicated.pair.sql(
        replicated.primary, "CREATE TABLE filler AS SELECT g FROM generate_series(1, 100000) g"
    )
    run = invoke(
        "--dsn", replicated.primary, "--sql-dir", str(sql_set({})), "--json", "status", "--replicas"
    )
    assert run.code == 0, run.output
    replicas = json.loads(run.stdout)["replicas"]
    assert replicas["standbys"] == []
    (slot,) = replicas["slots"]
    assert slot["name"] == "slot1" and slot["active"] is False
    assert slot["retained_bytes"] > 1 << 20
    (warning,) = replicas["notes"]
    assert warning.startswith("slot slot1 is inactive and retains ")
    assert "of WAL on the primary" in warning and "disk-full risk" in warning
    assert f"warning: {warning}" in run.stderr  # the text, on stderr in --json mode
