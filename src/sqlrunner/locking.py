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

Holding it is not enough: its connection can die mid-run (a watchdog that kills
idle transactions, a NAT drop, PgBouncer's ``idle_transaction_timeout``) and another
runner take over. So every migration checks, inside its own transaction and in the
same round trip as its ledger row and COMMIT, that the lock's backend still holds
the key (``RunnerLock.held_check``); a no-transaction statement checks before it
starts. A lost lock ends the run with ``LockLost`` (exit 5) and nothing commits
without it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from .errors import AppliedElsewhere, LockLost, LockTimeout, RunnerBusy
from .ledger import LedgerTables, is_duplicate
from .report import Event, Listener, fan_out
from .session import DEFAULTS, Options, connect

log = logging.getLogger("sqlrunner")

# A lock_timeout that expired, or a deadlock PostgreSQL broke by cancelling us: both
# rolled back the attempt, which may simply be tried again.
RETRYABLE = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-attempt lock_timeout and a bounded, jittered backoff between attempts.

    With the defaults (200 ms, 20 retries, backoff 0.1 s doubling to 3 s) a
    migration gives up after about a minute; other sessions never queue behind
    one attempt for longer than ``lock_timeout_ms``.
    """

    lock_timeout_ms: int = DEFAULTS.lock_timeout_ms
    retries: int = DEFAULTS.lock_retries
    base_delay: float = 0.1
    max_delay: float = 3.0

    @classmethod
    def of(cls, options: Options) -> RetryPolicy:
        return cls(options.lock_timeout_ms, options.lock_retries)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Sleep before each retry: exponential, capped, with +-50% jitter so runners desync."""
        rng = rng or random.Random()
        for attempt in range(self.retries):
            delay = min(self.max_delay, self.base_delay * 2**attempt)
            yield delay * rng.uniform(0.5, 1.5)

    @property
    def lock_timeout_setting(self) -> str:
        return f"{self.lock_timeout_ms}ms"


class Retryable(Exception):
    """An attempt failed on a lock (``RETRYABLE``) and changed nothing: it may run again.
    ``where`` names what waited (``forward/0002_x.sql:4``)."""

    def __init__(self, error: psycopg.Error, where: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.where = where


def with_retries(
    policy: RetryPolicy,
    attempt: Callable[[int], None],
    on_retry: Callable[[Retryable, int, float], None],
    give_up: Callable[[Retryable, int], LockTimeout],
) -> int:
    """The one retry loop: ``attempt(n)`` (n = 1, 2, ...) until it does not raise Retryable,
    sleeping the policy's jittered delays in between; returns the attempts it took.

    ``on_retry(failure, n, delay)`` is told before each sleep; when the retries run
    out, ``give_up(failure, n)`` is raised, with the last lock error as its cause.
    """
    delays = policy.delays()
    number = 0
    while True:
        number += 1
        try:
            attempt(number)
            return number
        except Retryable as failed:
            delay = next(delays, None)
            if delay is None:
                raise give_up(failed, number) from failed.error
            on_retry(failed, number, delay)
            time.sleep(delay)


def blocked_by(blockers: list[str]) -> str:
    """The "; blocked by ..." tail of a retry or give-up message ('' when nobody was seen)."""
    return f"; blocked by {' / '.join(blockers)}" if blockers else ""


def retry_message(failed: Retryable, number: int, delay: float, blockers: list[str]) -> str:
    """The ``retry`` event's text: what waited, on what, and who blocks it."""
    return (
        f"{failed.where}: {failed.error.diag.message_primary} (attempt {number}); "
        f"retrying in {delay:.1f}s{blocked_by(blockers)}"
    )


def gave_up(
    failed: Retryable, number: int, policy: RetryPolicy, blockers: list[str], next_step: str
) -> LockTimeout:
    """The error when the retries ran out: the last lock error, the blocker, what to do."""
    return LockTimeout(
        f"{failed.where}: gave up after {number} attempts ({failed.error.diag.message_primary}, "
        f"lock_timeout {policy.lock_timeout_setting})"
        f"{blocked_by(blockers) or '; the blocker is gone'} | {next_step}",
        blockers,
    )


HOLDER_QUERY = """
SELECT a.pid, coalesce(a.application_name, ''), a.usename, a.client_addr::text,
       a.backend_start, a.xact_start, a.state, a.query = '<insufficient privilege>'
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# Run inside the run-long lock transaction, so: clock_timestamp(), not the frozen now(),
# and pg_stat_clear_snapshot() first, or pg_stat_activity is read once per transaction.
BLOCKERS_QUERY = """
SELECT pid, coalesce(application_name, ''), usename, coalesce(state, ''),
       extract(epoch FROM clock_timestamp() - state_change)::int,
       left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 200),
       query = '<insufficient privilege>'
FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids({pid:d}))
"""

# pg_stat_activity shows another role's session to members of that role and of
# pg_read_all_stats only: anyone else sees its pid, role and application_name, NULL for
# its state, start times and client, and '<insufficient privilege>' for its query.
HIDDEN = "not visible to this role: grant it pg_read_all_stats to see it"


def describe_blockers(rows: list[tuple[Any, ...]]) -> list[str]:
    """One readable line per blocking backend: pid, application_name, state, idle time, query."""
    lines = []
    for pid, app, role, state, secs, query, hidden in rows:
        who = f"pid {pid} ({app or 'no application_name'}"
        if hidden:
            lines.append(f"{who}, role {role or '?'}): its state and query are {HIDDEN}")
        else:
            idle = f" for {secs}s" if secs is not None else ""
            lines.append(f"{who}, {state or 'no state'}{idle}): {query}")
    return lines


def describe_holder(row: tuple[Any, ...]) -> str:
    """The runner-lock holder in one line, saying plainly what this role cannot see."""
    pid, app, role, client, started, xact_start, state, hidden = row
    name = f"pid {pid} ({app or 'no application_name'})"
    if hidden:
        return f"{name} of role {role or '?'}; its client, start time and state are {HIDDEN}"
    since = xact_start or started
    when = f", holding since {since.isoformat(timespec='seconds')}" if since else ""
    return f"{name} from {client or 'local'}{when}, {state or 'no state'}"


# SQLSTATE of the check below (a user-defined class: no PostgreSQL error uses "SR").
LOCK_LOST_SQLSTATE = "SRL01"

# The lock connection's transaction must outlive any idle or transaction timeout the
# DBA set for the role or database: it idles on purpose, for the whole run. The
# server-side keepalives make the server drop it (and the lock) within seconds when the
# runner's host vanishes; the TCP settings are no-ops on Unix sockets.
LOCK_SESSION_LIMITS = (
    "SET LOCAL idle_in_transaction_session_timeout = 0; "
    "SET LOCAL tcp_keepalives_idle = 5; SET LOCAL tcp_keepalives_interval = 2; "
    "SET LOCAL tcp_keepalives_count = 3; SET LOCAL tcp_user_timeout = 10000"
)

# Inside each migration transaction. The runner never idles there on purpose (it sends
# the next statement as soon as the last one answered), so a runner that stops
# (SIGSTOP, a frozen VM, a dead network) releases its ACCESS EXCLUSIVE locks after
# this long. 5 s is far above any gap a busy client shows and short enough that the
# application's queued queries survive their own timeouts.
MIGRATION_LIMITS = (
    "SET LOCAL idle_in_transaction_session_timeout = '5s'",
    "SET LOCAL tcp_keepalives_idle = 5",
    "SET LOCAL tcp_keepalives_interval = 2",
    "SET LOCAL tcp_keepalives_count = 3",
    "SET LOCAL tcp_user_timeout = 10000",
)


class RunnerLock:
    """Hold the runner lock for the duration of a ``with`` block (see module docstring).

    ``pid`` is the lock backend's server pid (behind PgBouncer libpq's is not), and
    ``held_check()`` the SQL that fails unless that backend still holds the key.
    """

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
        self.pid = 0
        self.lost_reason: str | None = None
        self.conn: psycopg.Connection[tuple[Any, ...]] = connect(
            conninfo, autocommit=False, application_name=application_name
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

    def held_check(self) -> str:
        """SQL for the migration connection: raises LOCK_LOST_SQLSTATE unless our lock
        backend still holds the key. A migration's last round trip runs it just before its
        ledger rows and COMMIT, so nothing commits after the lock is gone. (A pid is
        reused only after the kernel's pid space wraps: not within one run.)"""
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        return (
            "DO $sqlrunner$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_locks "
            f"WHERE locktype = 'advisory' AND granted AND pid = {self.pid:d} "
            f"AND classid = {classid:d}::pg_catalog.int8::pg_catalog.oid "
            f"AND objid = {objid:d}::pg_catalog.int8::pg_catalog.oid AND objsubid = 1) "
            f"THEN RAISE EXCEPTION USING ERRCODE = '{LOCK_LOST_SQLSTATE}', "
            f"MESSAGE = 'its backend (pid {self.pid:d}) is gone or no longer holds it'; "
            "END IF; END$sqlrunner$"
        )

    def ensure_held(self, conn: psycopg.Connection[Any], where: str) -> None:
        """Raise LockLost unless the lock is still ours; one short round trip on ``conn``
        (for statements that run outside a transaction, before each one starts)."""
        if self.lost_reason is None:
            try:
                conn.execute(self.held_check())
            except psycopg.Error as exc:
                if exc.sqlstate != LOCK_LOST_SQLSTATE:
                    raise
                self.lost_reason = exc.diag.message_primary or "the runner lock is gone"
        if self.lost_reason is not None:
            raise self.lost(where)

    def lost(self, where: str) -> LockLost:
        """The error for a run that found its lock gone; ``where`` says what stopped."""
        reason = self.lost_reason or "the runner lock is gone"
        return LockLost(
            f"lost the runner lock: {reason}; stopped {where} | the lock connection died"
            " (a session killer, a network or NAT drop, a pooler's idle_transaction_timeout);"
            " another sqlrunner may be running now: check 'status', then run apply again"
        )

    def commit_failure(
        self, exc: psycopg.Error, tables: LedgerTables, path: str
    ) -> LockLost | None:
        """What a failed commit round trip of ``path`` means when the lock explains it:
        the lock check failed, or another runner recorded the file first."""
        if exc.sqlstate == LOCK_LOST_SQLSTATE:
            self.lost_reason = exc.diag.message_primary or self.lost_reason
            return self.lost(f"before committing {path}, which was rolled back")
        if is_duplicate(exc, tables):
            return AppliedElsewhere(
                f"{path}: another sqlrunner applied and recorded this file while this run was"
                " applying it (one of the two had lost the runner lock); this run's copy was"
                " rolled back, so it ran once | check 'status', then run apply again"
            )
        if self.lost_reason is not None:
            return self.lost(f"at {path}, which was rolled back")
        return None

    def blockers_of(self, pid: int) -> list[str]:
        """Who blocks backend ``pid`` right now (queried from the idle lock transaction)."""
        try:
            # No bound parameters on this connection: an extended-protocol query leaves
            # its portal, and the portal's snapshot, open until the transaction ends,
            # and CREATE INDEX CONCURRENTLY waits for every transaction holding one.
            self.conn.execute("SELECT pg_stat_clear_snapshot()")
            rows = self.conn.execute(BLOCKERS_QUERY.format(pid=pid)).fetchall()
        except psycopg.OperationalError as exc:  # the lock connection died: the lock too
            self.lost_reason = f"its connection failed: {' '.join(str(exc).split())[:200]}"
            return []
        except psycopg.Error:
            return []
        return describe_blockers(rows)

    @contextlib.contextmanager
    def watching(
        self, pid: int, lock_timeout_ms: int, seen: Callable[[list[str]], None]
    ) -> Iterator[None]:
        """While the block runs, once, halfway through its lock_timeout: tell ``seen`` who
        blocks backend ``pid``, so that a give-up message names the blocker even after the
        attempt's own wait is over (a retried statement's blocker is usually still there)."""
        timer = threading.Timer(lock_timeout_ms / 2000, lambda: seen(self.blockers_of(pid)))
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            timer.join()

    def _acquire(self) -> None:
        deadline = time.monotonic() + self.wait_seconds
        delay, announced = 0.05, False
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        while True:
            row = self.conn.execute(
                f"SELECT pg_try_advisory_xact_lock({self.key:d}), pg_backend_pid()"
            ).fetchone()
            if row is not None and row[0]:
                self.pid = int(row[1])
                limits = LOCK_SESSION_LIMITS
                if self.conn.info.server_version >= 170000:  # transaction_timeout is new in 17
                    limits += "; SET LOCAL transaction_timeout = 0"
                self.conn.execute(limits)
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
        return describe_holder(rows[0]) if rows else "the holder just finished"


def runner_lock(
    conninfo: str, options: Options, application_name: str, listener: Listener | None = None
) -> RunnerLock:
    """The runner lock of ``options``' ledger, waiting up to ``runner_wait`` for it and
    saying so (a ``waiting`` event); ``application_name`` shows who holds it."""
    emit = fan_out(listener)
    return RunnerLock(
        conninfo,
        LedgerTables.of(options).lock_key,
        options.runner_wait,
        application_name=application_name,
        on_wait=lambda message: emit(Event("waiting", message)),
    )
