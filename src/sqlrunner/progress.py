"""What the CLI shows while a run goes on.

Each finished file gets a plain line on stderr. On a terminal, a long statement
also gets a live line with its elapsed time and, for index builds, the phase
and blocks done from ``pg_stat_progress_create_index`` (read on a third
connection, opened only once a statement has run for a second). In CI and
container logs (no terminal) there is no live line, only the plain lines.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

if TYPE_CHECKING:  # a no-op run creates no events: the module loads with the runner
    from .events import Event

INDEX_PROGRESS = """
SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total
FROM pg_stat_progress_create_index WHERE pid = %s
"""


class ProgressPrinter:
    """A listener for the runner's events; ``close()`` ends the live line."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        dsn: str | None = None,
        live: bool | None = None,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream  # stderr as it is now
        self.quiet = quiet
        self.dsn = dsn
        self.live = self.stream.isatty() if live is None else live
        self._current: Event | None = None
        self._started = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._watch: psycopg.Connection[Any] | None = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._clear_live()
            if event.kind == "statement_started":
                self._current, self._started = event, time.monotonic()
                if self.live and self._ticker is None:
                    self._ticker = threading.Thread(target=self._tick, daemon=True)
                    self._ticker.start()
                return
            self._current = None
            if event.kind in ("file_finished", "retry", "waiting", "note") and not (
                self.quiet and event.kind == "file_finished"
            ):
                print(event.message, file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self._lock:
            self._clear_live()
        if self._watch is not None:
            self._watch.close()

    def _clear_live(self) -> None:
        if self.live and self._current is not None:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                event, elapsed = self._current, time.monotonic() - self._started
            if event is None or elapsed < 1.0:
                continue
            line = f"  {event.message[:90]}  {elapsed:5.1f}s{self._index_progress(event)}"
            with self._lock:
                if self._current is event:
                    self.stream.write("\r\x1b[2K" + line)
                    self.stream.flush()

    def _index_progress(self, event: Event) -> str:
        if self.dsn is None or event.backend_pid is None:
            return ""
        try:
            if self._watch is None:
                self._watch = psycopg.connect(
                    self.dsn, autocommit=True, application_name="sqlrunner progress"
                )
            row = self._watch.execute(INDEX_PROGRESS, (event.backend_pid,)).fetchone()
        except psycopg.Error:
            return ""
        if row is None:
            return ""
        phase, blocks_done, blocks_total, tuples_done, tuples_total = row
        if blocks_total:
            return f"  [{phase}: {blocks_done}/{blocks_total} blocks]"
        if tuples_total:
            return f"  [{phase}: {tuples_done}/{tuples_total} tuples]"
        return f"  [{phase}]"
