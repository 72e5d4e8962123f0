"""The runner lock (one sqlrunner at a time) and the lock_timeout retry policy.

The runner lock is a transaction-level advisory lock held by an open, idle
transaction on a second connection for the length of the run:

- a killed runner never leaves it behind: the server (or PgBouncer, which drops
  a server connection whose client vanished mid-transaction) ends the
  transaction and the lock with it;
- it is pooler-safe: an open transaction pins its server connection even in
  PgBouncer's transaction-pooling mode, unlike a session-level advisory lock,
  which would stay on whatever server connection happened to take it;
- it never stalls ``CREATE INDEX CONCURRENTLY``: between statements a READ
  COMMITTED transaction holds no snapshot (its xmin is 0), and the index build
  waits only for transactions that hold one. Waiting runners poll a *try* lock
  in short transactions for the same reason: a runner blocked inside
  ``pg_advisory_lock()`` holds a snapshot and would deadlock against the build.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from .errors import RunnerBusy, UsageError

log = logging.getLogger("sqlrunner")

RETRYABLE_SQLSTATES = frozenset({"55P03", "40P01"})  # lock_not_available, deadlock_detected
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min)?\s*$")


def duration_ms(value: str | int | float) -> int:
    """'200ms', '2s', '1min' or a number of milliseconds -> milliseconds."""
    if isinstance(value, (int, float)):
        return int(value)
    match = _DURATION.match(value)
    if match is None:
        raise UsageError(f"invalid duration {value!r}: use e.g. 200ms, 2s or 1min")
    number, unit = float(match[1]), match[2] or "ms"
    return int(number * {"ms": 1, "s": 1000, "sec": 1000, "min": 60000}[unit])


def lock_timeout_ms(value: str | int | float) -> int:
    """A per-attempt lock_timeout; 0 is refused because PostgreSQL reads it as "wait forever"."""
    milliseconds = duration_ms(value)
    if milliseconds < 1:
        raise UsageError(
            f"lock timeout {value!r} must be at least 1ms: PostgreSQL reads 0 as 'wait forever'"
        )
    return milliseconds


@dataclass(frozen=True)
class RetryPolicy:
    """Per-attempt lock_timeout and a bounded, jittered backoff between attempts.

    With the defaults (200 ms, 20 retries, backoff 0.1 s doubling to 3 s) a
    migration gives up after about a minute; other sessions never queue behind
    one attempt for longer than ``lock_timeout_ms``.
    """

    lock_timeout_ms: int = 200
    retries: int = 20
    base_delay: float = 0.1
    max_delay: float = 3.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise UsageError(f"lock retries must be 0 or more, not {self.retries}")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Sleep before each retry: exponential, capped, with +-50% jitter so runners desync."""
        rng = rng or random.Random()
        for attempt in range(self.retries):
            delay = min(self.max_delay, self.base_delay * 2**attempt)
            yield delay * rng.uniform(0.5, 1.5)

    @property
    def lock_timeout_setting(self) -> str:
        return f"{self.lock_timeout_ms}ms"


HOLDER_QUERY = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'),
       a.backend_start, a.xact_start, a.state
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# Run inside the run-long lock transaction, so: clock_timestamp(), not the frozen now(),
# and pg_stat_clear_snapshot() first, or pg_stat_activity is read once per transaction.
BLOCKERS_QUERY = """
SELECT pid, coalesce(application_name, ''), coalesce(state, ''),
       extract(epoch FROM clock_timestamp() - state_change)::int,
       left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 200)
FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids({pid:d}))
"""


def describe_blockers(rows: list[tuple[Any, ...]]) -> list[str]:
    """One readable line per blocking backend: pid, application_name, state, idle time, query."""
    return [
        f"pid {pid} ({app or 'no application_name'}, {state or 'unknown state'} "
        f"for {secs}s): {query}"
        for pid, app, state, secs, query in rows
    ]


class RunnerLock:
    """Hold the runner lock for the duration of a ``with`` block (see module docstring)."""

    def __init__(
        self,
        conninfo: str,
        key: int,
        wait_seconds: float,
        *,
        application_name: str,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.key = key
        self.wait_seconds = wait_seconds
        self.on_wait = on_wait
        self.conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
            conninfo, application_name=application_name, prepare_threshold=None
        )

    def __enter__(self) -> RunnerLock:
        try:
            self._acquire()
        except BaseException:
            self.conn.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()  # ends the transaction and releases the lock

    def blockers_of(self, pid: int) -> list[str]:
        """Who blocks backend ``pid`` right now (queried from the idle lock transaction)."""
        try:
            # No bound parameters on this connection: an extended-protocol query leaves
            # its portal, and the portal's snapshot, open until the transaction ends,
            # and CREATE INDEX CONCURRENTLY waits for every transaction holding one.
            self.conn.execute("SELECT pg_stat_clear_snapshot()")
            rows = self.conn.execute(BLOCKERS_QUERY.format(pid=pid)).fetchall()
        except psycopg.Error:
            return []
        return describe_blockers(rows)

    def _acquire(self) -> None:
        deadline = time.monotonic() + self.wait_seconds
        delay, announced = 0.05, False
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        while True:
            row = self.conn.execute(f"SELECT pg_try_advisory_xact_lock({self.key:d})").fetchone()
            if row is not None and row[0]:
                # The lock lives as long as this idle transaction: don't let the
                # server's idle_in_transaction_session_timeout end it mid-run.
                self.conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
                return
            self.conn.rollback()  # hold no snapshot, no transaction, while waiting
            holder = self._holder(classid, objid)
            if time.monotonic() >= deadline:
                raise RunnerBusy(
                    f"gave up after {self.wait_seconds:g}s waiting for another sqlrunner: {holder}",
                    [holder],
                )
            if not announced and self.on_wait is not None:
                self.on_wait(f"waiting for another sqlrunner to finish: {holder}")
                announced = True
            time.sleep(min(delay * random.uniform(0.5, 1.5), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    def _holder(self, classid: int, objid: int) -> str:
        rows = self.conn.execute(HOLDER_QUERY, (classid, objid)).fetchall()
        self.conn.rollback()
        if not rows:
            return "the holder just finished"
        pid, app, client, started, xact_start, state = rows[0]
        since = (
            (xact_start or started).isoformat(timespec="seconds")
            if (xact_start or started)
            else "?"
        )
        name = app or "no application_name"
        return f"pid {pid} ({name}) from {client}, holding since {since}, {state}"
