"""The backfill's progress line: live on a terminal, throttled to the heartbeat without."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

from sqlrunner.backfill import BatchProgress
from sqlrunner.events import Event
from sqlrunner.position import BackfillPosition
from sqlrunner.progress import ProgressPrinter

NOW = datetime(2026, 12, 2, 13, 0, tzinfo=timezone.utc)


def batch(done: int) -> Event:
    position = BackfillPosition(4, "c", 1, 1001, 1 + done * 100, 100, done, done * 90, NOW, NOW)
    progress = BatchProgress(
        "forward/0004_fill.sql", 1 + (done - 1) * 100, 1 + done * 100, 90, 40, position, 2250.0, 1.5
    )
    return Event("backfill_progress", progress.describe(), backfill=progress)


def test_the_line_says_rows_batches_rate_and_eta() -> None:
    assert batch(3).message == (
        "forward/0004_fill.sql: backfill 30% (key 301 of [1, 1001)), 270 rows in 3 batches, "
        "2,250 rows/s, ETA 1s; batch size 100"
    )


def test_without_a_terminal_one_line_per_heartbeat() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, live=False, heartbeat=3600)
    for done in (1, 2, 3):
        printer(batch(done))
    assert out.getvalue().splitlines() == ["  " + batch(1).message]


def test_verbose_prints_every_batch_and_json_has_the_numbers() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, verbosity=1, log_format="json")
    for done in (1, 2):
        printer(batch(done))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["event"], x["batches"], x["rows"], x["next_key"]) for x in lines] == [
        ("backfill", 1, 90, 101),
        ("backfill", 2, 180, 201),
    ]
    assert lines[0]["rate_rows_s"] == 2250.0 and lines[0]["eta_s"] == 1.5


def test_on_a_terminal_the_live_line_is_rewritten_then_cleared() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, live=True)
    printer(batch(1))
    printer(batch(2))
    printer(Event("note", "done"))
    assert out.getvalue() == (
        "\r\x1b[2K  "
        + batch(1).message
        + "\r\x1b[2K\r\x1b[2K  "
        + batch(2).message
        + "\r\x1b[2Kdone\n"
    )


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    ProgressPrinter(out, verbosity=-1)(batch(1))
    assert out.getvalue() == ""
