"""What the CLI writes besides the report: the progress of a run, the library's log, and
the --json documents of commands without a report value.

Each finished file gets one line on stderr (the final report then gives only
the summary). A statement that runs long is never silent: on a terminal a live
line shows its elapsed time, and without one (CI, container logs) a heartbeat
line is printed every ``heartbeat`` seconds; for index builds both add the phase
and blocks done from ``pg_stat_progress_create_index`` (read on a third
connection, opened only once a statement has run for a second). ``log_format
"json"`` writes the same events as JSON lines, for log shippers.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Any, TextIO

import psycopg

from ..errors import ConnectionFailed
from ..fleet_report import FleetEvent, FleetListener, TargetResult
from ..report import SCHEMA_VERSION, Event, json_default, when
from ..session import connect

INDEX_PROGRESS = """
SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total
FROM pg_stat_progress_create_index WHERE pid = %s
"""
# The least verbosity at which each kind of event is printed (-q is -1: none).
SHOWN_FROM = {
    "file_finished": 0,
    "retry": 0,
    "waiting": 0,
    "note": 0,
    "server_message": 0,
    "file_started": 1,
    "statement_skipped": 1,
    "statement_started": 2,
}


def json_line(kind: str, message: str, **fields: Any) -> str:
    """One event for log shippers, timestamped like every other sqlrunner output."""
    ts = when(datetime.now().astimezone())
    return json.dumps({"ts": ts, "event": kind, "message": message, **fields}, default=str)


class ProgressPrinter:
    """A listener for the runner's events; ``close()`` ends the live line."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        verbosity: int = 0,
        dsn: str | None = None,
        live: bool | None = None,
        heartbeat: float = 10.0,
        log_format: str = "text",
    ) -> None:
        self.stream = sys.stderr if stream is None else stream  # stderr as it is now
        self.verbosity = verbosity
        self.dsn = dsn
        self.as_json = log_format == "json"
        self.live = not self.as_json and (self.stream.isatty() if live is None else live)
        self.heartbeat = heartbeat
        self.files_listed = False  # whether a file's line was printed (the report skips them)
        self._current: Event | None = None
        self._started = 0.0
        self._beats = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._watch: psycopg.Connection[Any] | None = None
        self._backfill_shown = False  # the live line shows a backfill's position
        self._backfill_at = -math.inf  # when the last backfill line was printed

    def __call__(self, event: Event) -> None:
        if event.kind == "backfill_progress":
            self._backfill(event)
            return
        with self._lock:
            self._clear_live()
            if event.kind == "statement_started":
                self._current, self._started, self._beats = event, time.monotonic(), 0
                if self.verbosity >= 0 and self._ticker is None:
                    self._ticker = threading.Thread(target=self._tick, daemon=True)
                    self._ticker.start()
            else:
                self._current = None
            if self.verbosity < SHOWN_FROM.get(event.kind, 0):
                return
            self.files_listed |= event.kind == "file_finished"
            self._print(event.kind, self._detailed(event), **_fields(event))

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self._lock:
            self._clear_live()
        if self._watch is not None:
            self._watch.close()

    def _detailed(self, event: Event) -> str:
        """-v adds what the plain line leaves out: statements run, attempts."""
        result = event.result
        if self.verbosity < 1 or result is None:
            return event.message
        attempts = f", {result.attempts} attempts" if result.attempts > 1 else ""
        mode = ", no-transaction" if result.no_transaction else ""
        return f"{event.message} [{result.statements} statements{attempts}{mode}]"

    def _print(self, kind: str, message: str, **fields: Any) -> None:
        line = json_line(kind, message, **fields) if self.as_json else message
        print(line, file=self.stream, flush=True)

    def _clear_live(self) -> None:
        if self.live and (self._current is not None or self._backfill_shown):
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._backfill_shown = False

    def _backfill(self, event: Event) -> None:
        """A batch committed: on a terminal the live line shows the position; without one
        a line every ``heartbeat`` seconds (every batch with -v)."""
        with self._lock:
            self._clear_live()
            self._current = None
            if self.verbosity < 0:
                return
            if self.live:
                self.stream.write("\r\x1b[2K  " + event.message[:150])
                self.stream.flush()
                self._backfill_shown = True
            elif self.verbosity >= 1 or time.monotonic() - self._backfill_at >= self.heartbeat:
                self._backfill_at = time.monotonic()
                self._print("backfill", f"  {event.message}", **_fields(event))

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                event, elapsed = self._current, time.monotonic() - self._started
            if event is None or elapsed < 1.0:
                continue
            beat = not self.live and elapsed >= self.heartbeat * (self._beats + 1)
            if not (self.live or beat):
                continue
            progress = self._index_progress(event)
            with self._lock:
                if self._current is not event:
                    continue
                if self.live:
                    line = f"  {event.message[:90]}  {elapsed:5.1f}s{progress}"
                    self.stream.write("\r\x1b[2K" + line)
                    self.stream.flush()
                else:
                    self._beats = int(elapsed // self.heartbeat)
                    self._print(
                        "heartbeat",
                        f"  still running after {elapsed:.0f}s: {event.message[:120]}{progress}",
                        elapsed_s=round(elapsed, 1),
                        **_fields(event),
                    )

    def _index_progress(self, event: Event) -> str:
        if self.dsn is None or event.backend_pid is None:
            return ""
        try:
            if self._watch is None:
                self._watch = connect(self.dsn, application_name="sqlrunner progress")
            row = self._watch.execute(INDEX_PROGRESS, (event.backend_pid,)).fetchone()
        except (psycopg.Error, ConnectionFailed):
            return ""
        if row is None:
            return ""
        phase, blocks_done, blocks_total, tuples_done, tuples_total = row
        if blocks_total:
            return f"  [{phase}: {blocks_done}/{blocks_total} blocks]"
        if tuples_total:
            return f"  [{phase}: {tuples_done}/{tuples_total} tuples]"
        return f"  [{phase}]"


def _fields(event: Event) -> dict[str, Any]:
    """The structured part of an event, for JSON lines."""
    fields: dict[str, Any] = {}
    if event.migration is not None:
        fields["file"] = event.migration.display_path
    if event.statement is not None:
        fields["line"] = event.statement.line
    if event.result is not None:
        fields["duration_ms"] = event.result.duration_ms
        fields["attempts"] = event.result.attempts
    if event.backfill is not None:
        done = event.backfill.position
        fields |= {
            "rows": done.rows,
            "batches": done.batches,
            "next_key": done.next_key,
            "hi_key": done.hi_key,
            "rate_rows_s": round(event.backfill.rate, 1),
            "eta_s": None if event.backfill.eta_s is None else round(event.backfill.eta_s, 1),
        }
    return fields


def document(kind: str, **fields: Any) -> str:
    """One --json document: its kind and schema version first, timestamps in ISO 8601."""
    body = {"report": kind, "schema_version": SCHEMA_VERSION, **fields}
    return json.dumps(body, default=json_default, indent=2)


@contextmanager
def log_to_stderr(verbosity: int) -> Iterator[None]:
    """The library's log on stderr for one command: errors only, -v adds events, -vv everything.

    The progress printer shows the runner's events (-v and -vv add detail there);
    their log records, for services, are left out here so no line shows twice.
    """
    root, own = logging.getLogger(), logging.getLogger("sqlrunner")
    levels = root.level, own.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(lambda record: not hasattr(record, "sqlrunner_event"))  # printed already
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)
    own.setLevel(
        {1: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 1 else logging.ERROR)
    )
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        own.setLevel(levels[1])


def fleet_printer(stream: TextIO, verbosity: int = 0, log_format: str = "text") -> FleetListener:
    """The CLI's listener: each event a line on ``stream`` (-q: failures only), or a JSON line."""

    def show(event: FleetEvent) -> None:
        result = event.result
        failed = result is not None and result.exit_code not in (0, 6)
        if verbosity < 0 and not failed:
            return
        if log_format == "json":
            fields = asdict(result) if result is not None else {}
            fields.pop("error", None)  # it is the message
            line = json_line(
                event.kind, event.message, done=event.done, total=event.total, **fields
            )
        else:  # a target's warnings under its line (services read them in their log)
            warnings = result.warnings if isinstance(result, TargetResult) else ()
            line = "\n".join([event.message, *(f"    warning: {w}" for w in warnings)])
        print(line, file=stream, flush=True)

    return show
