"""Standbys: whether they replayed what a run committed, and a gate that waits while they lag.

ops-center reads from streaming standbys, so a migration committed on the primary
but not yet replayed there breaks a release that starts when ``apply`` returns.
Positions are compared as LSNs with ``pg_wal_lsn_diff``, never read from
``replay_lag`` alone: that column is the standby's own report of how long its
last replay took, and it goes stale (near zero) while replay is paused or waits
behind a query on the standby. The standbys are the physical ones streaming from
the primary (``pg_stat_replication``) plus any named by DSN (cascaded standbys,
or ones a pooler or a missing privilege hides); on those the runner also reads
whether replay is paused, the last replayed commit, and what replay waits for.

Everything here works on a connection it is given, plus short connections of
its own to the standbys named by DSN; it never prints and never sleeps longer
than it was allowed to wait.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import make_conninfo

from .errors import ConnectionFailed, ReplicasBehind, UsageError
from .report import Event, Listener, fan_out, when
from .session import connect, connection_options, mask_password, unparsable_dsn

if TYPE_CHECKING:
    from .report import ApplyReport
    from .session import Options

# The primary's position, and whether this role may read the standbys' positions:
# without pg_read_all_stats (or superuser) pg_stat_replication shows each walsender's
# pid and name but NULL for state and every LSN.
PRIMARY_QUERY = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END,
       current_user,
       pg_has_role('pg_read_all_stats', 'USAGE')
"""

# Physical standbys streaming from this server, measured against %(lsn)s (NULL: the
# WAL insert position, which counts the runner's asynchronous commits). Logical
# walsenders are connected to a database (datid set) and pg_basebackup shows as state
# 'backup': neither is a standby.
STREAMING_QUERY = """
SELECT coalesce(nullif(r.application_name, ''), 'walreceiver'),
       host(r.client_addr),
       s.slot_name,
       r.state,
       r.sent_lsn::text,
       r.replay_lsn::text,
       pg_wal_lsn_diff(coalesce(%(lsn)s::pg_lsn, pg_current_wal_insert_lsn()), r.flush_lsn)::bigint,
       pg_wal_lsn_diff(coalesce(%(lsn)s::pg_lsn, pg_current_wal_insert_lsn()), r.replay_lsn)
           ::bigint,
       extract(epoch FROM r.replay_lag)::float8
FROM pg_stat_replication AS r
JOIN pg_stat_activity AS a ON a.pid = r.pid
LEFT JOIN pg_replication_slots AS s ON s.active_pid = r.pid
WHERE a.datid IS NULL AND r.state IS DISTINCT FROM 'backup'
ORDER BY 1, 2
"""

# On a standby named by DSN, against the primary's %(lsn)s. Replay waiting for a lock
# shows as the startup process waiting on a relation lock that a query holds (a
# recovery conflict: max_standby_streaming_delay decides how long replay waits).
STANDBY_QUERY = """
SELECT pg_is_in_recovery(),
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       pg_wal_lsn_diff(%(lsn)s::pg_lsn, pg_last_wal_receive_lsn())::bigint,
       pg_wal_lsn_diff(%(lsn)s::pg_lsn, pg_last_wal_replay_lsn())::bigint,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
       pg_last_xact_replay_timestamp(),
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
       (SELECT string_agg(format('pid %%s (%%s): %%s', h.pid,
                                 coalesce(nullif(ha.application_name, ''), ha.usename),
                                 left(regexp_replace(ha.query, '\\s+', ' ', 'g'), 80)), '; ')
        FROM pg_stat_activity AS st
        JOIN pg_locks AS w ON w.pid = st.pid AND NOT w.granted
        JOIN pg_locks AS h ON h.granted AND h.pid <> w.pid AND h.locktype = w.locktype
         AND h.database IS NOT DISTINCT FROM w.database
         AND h.relation IS NOT DISTINCT FROM w.relation
        JOIN pg_stat_activity AS ha ON ha.pid = h.pid
        WHERE st.backend_type = 'startup')
"""

SLOTS_QUERY = """
SELECT slot_name, slot_type, active, restart_lsn::text,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status
FROM pg_replication_slots
ORDER BY slot_name
"""

UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bytes?|b|kb?|mb?|gb?|tb?)?\s*$", re.I)
POLL_S = 0.1  # between two looks at the standbys while waiting
REPORT_EVERY_S = 5.0  # a waiting event at most this often
CONNECT_S = 2  # one connection attempt to a standby named by DSN (libpq's least)
STREAMING = "pg_stat_replication"
NAMED = "replica DSN"


def parse_size(text: str) -> int:
    """Bytes from ``64MB``, ``1GB``, ``512kB`` or ``1048576`` (units of 1024, as
    PostgreSQL's own settings count them); UsageError otherwise."""
    match = SIZE.match(text)
    if match is None:
        raise UsageError(f"{text!r} is not a size: give bytes, or a number with kB, MB, GB or TB")
    unit = (match[2] or "b").lower()
    unit = "b" if unit.startswith("byte") else unit if unit.endswith("b") else unit + "b"
    return int(float(match[1]) * UNITS[unit])


def size(n: int) -> str:
    """``7456 bytes``, ``7.3 kB``, ``94.0 MB``: how far behind, for a person."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True, slots=True)
class Standby:
    """One standby's position, read once; ``bytes_behind`` is measured against the LSN
    asked for (the run's last commit, or the primary's current position)."""

    name: str
    source: str  # STREAMING, or NAMED for a standby given by DSN (--replica)
    state: str | None  # streaming, catchup, ...; "unreachable" / "disconnected" / "hidden"
    address: str | None = None  # the client address seen by the primary
    slot: str | None = None
    sent_lsn: str | None = None  # sent by the primary (received, for a standby read by DSN)
    replay_lsn: str | None = None
    bytes_unreceived: int | None = None  # not yet flushed to the standby's disk
    bytes_behind: int | None = None
    seconds_behind: float | None = None  # from the last replayed commit (standbys by DSN)
    replay_lag_s: float | None = None  # pg_stat_replication's own figure, shown, never trusted
    paused: bool | None = None  # None: not known (only a standby read by DSN tells)
    last_replayed_at: datetime | None = None
    blocked_by: str | None = None  # what holds the lock replay waits for
    error: str | None = None

    @property
    def label(self) -> str:
        where = ", ".join(x for x in (self.address, self.slot and f"slot {self.slot}") if x)
        return f"{self.name} ({where})" if where else self.name

    @property
    def caught_up(self) -> bool:
        return self.bytes_behind is not None and self.bytes_behind <= 0

    def why(self, stalled_since: datetime | None = None) -> str:
        """How far behind and the likeliest reason, for the one-line error."""
        behind = None if self.bytes_behind is None else f"{size(max(self.bytes_behind, 0))} behind"
        if self.state in ("unreachable", "disconnected", "not a standby"):
            return f"{self.state} ({self.error})" + (f", {behind} when last seen" if behind else "")
        if behind is None:
            return f"{self.state}: {self.error or 'no replay position reported yet'}"
        parts = [behind]
        if self.paused:
            parts.append("replay paused (SELECT pg_wal_replay_resume() on the standby resumes it)")
        elif self.blocked_by:
            parts.append(
                f"replay waits for a lock held by {self.blocked_by} (a recovery conflict: "
                "max_standby_streaming_delay bounds the wait)"
            )
        elif self.bytes_unreceived is not None and self.bytes_unreceived > 0:
            parts.append(f"{size(self.bytes_unreceived)} of it not yet received")
        elif self.bytes_unreceived is not None:
            hint = "; apply --replica DSN shows which" if self.source == STREAMING else ""
            parts.append(f"received but not replayed: replay paused or blocked there{hint}")
        if stalled_since is not None:
            parts.append(f"replay stalled since {when(stalled_since)}")
        if self.last_replayed_at is not None:
            parts.append(f"last replayed commit {when(self.last_replayed_at)}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Slot:
    """A replication slot: an inactive one keeps WAL on the primary until it is used or
    dropped (a disk-full risk, bounded only by max_slot_wal_keep_size)."""

    name: str
    slot_type: str
    active: bool
    restart_lsn: str | None
    retained_bytes: int | None
    wal_status: str | None

    @property
    def warning(self) -> str | None:
        if self.active or not self.retained_bytes or self.retained_bytes <= 0:
            return None
        return (
            f"slot {self.name} is inactive and retains {size(self.retained_bytes)} of WAL on "
            "the primary: it grows until its standby reconnects or the slot is dropped "
            "(disk-full risk; max_slot_wal_keep_size bounds it)"
        )


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """What an apply waited for: every standby replayed ``lsn`` (the run's last commit)."""

    lsn: str
    waited_ms: int
    standbys: tuple[Standby, ...]
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        done = [f"standby {s.label} replayed {self.lsn}" for s in self.standbys]
        waited = [f"waited {self.waited_ms} ms for the standbys"] if self.standbys else []
        return [*done, *waited, *self.notes]


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """``status --replicas``: each standby against the primary's position, and the slots."""

    target: str
    primary_lsn: str
    standbys: tuple[Standby, ...]
    slots: tuple[Slot, ...]
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        lines = [f"standbys of {self.target} (primary WAL at {self.primary_lsn}):"]
        lines += [f"  {_status_line(s)}" for s in self.standbys] or ["  none streaming"]
        lines += ["replication slots:"]
        lines += [
            f"  {s.name} {s.slot_type} {'active' if s.active else 'inactive'}, restart "
            f"{s.restart_lsn or '-'}, retains {size(s.retained_bytes or 0)}"
            f"{f', wal_status {s.wal_status}' if s.wal_status else ''}"
            for s in self.slots
        ] or ["  none"]
        return [*lines, *(f"warning: {n}" for n in self.notes)]


def _status_line(s: Standby) -> str:
    if s.bytes_behind is None:
        return f"{s.label}: {s.state}: {s.why()}"
    seconds = f"{s.seconds_behind:.1f} s" if s.seconds_behind is not None else "seconds unknown"
    lag = f" (replay_lag {s.replay_lag_s:.3f} s)" if s.replay_lag_s is not None else ""
    paused = {True: "replay paused", False: "replaying", None: "paused: unknown"}[s.paused]
    blocked = f", replay waits for {s.blocked_by}" if s.blocked_by else ""
    return (
        f"{s.label}: {s.state}, sent {s.sent_lsn}, replayed {s.replay_lsn}, "
        f"{size(max(s.bytes_behind, 0))} and {seconds} behind{lag}, {paused}{blocked}"
    )


@dataclass
class Standbys:
    """The standbys of the primary ``conn``, read as often as asked; the connections to
    standbys named by DSN are opened on first use and kept until ``close``."""

    conn: psycopg.Connection[Any]
    dsns: Sequence[str] = ()
    _open: dict[str, psycopg.Connection[Any]] = field(default_factory=dict)

    def primary_lsn(self) -> str:
        recovery, lsn, _user, _allowed = _primary(self.conn)
        if recovery or lsn is None:
            raise UsageError(
                "the connection reached a standby, not the primary (a load-balancing pooler "
                "in between?): point --dsn at the primary"
            )
        return str(lsn)

    def insert_lsn(self) -> str:
        """Where the primary inserts WAL: past commits made with synchronous_commit = off
        that are not written yet (the runner's own statements), which the write position
        (pg_current_wal_lsn) leaves out for up to three wal_writer_delay."""
        row = self.conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def read(self, lsn: str | None = None) -> tuple[list[Standby], int]:
        """(each standby against ``lsn``, or the current position; how many walsenders
        pg_stat_replication shows without their positions)."""
        rows = self.conn.execute(STREAMING_QUERY, {"lsn": lsn}).fetchall()
        streaming = [_streaming(row) for row in rows if row[3] is not None]
        if self.dsns:
            target = lsn or self.insert_lsn()
            streaming += [self._read_one(dsn, target) for dsn in self.dsns]
        return streaming, sum(1 for row in rows if row[3] is None)

    def _read_one(self, dsn: str, lsn: str) -> Standby:
        shown = mask_password(dsn)
        try:
            conn = self._open.get(dsn)
            if conn is None or conn.closed:
                conn = self._open[dsn] = _connect(dsn)
            row = conn.execute(STANDBY_QUERY, {"lsn": lsn}).fetchone()
        except psycopg.ProgrammingError:  # libpq's words would quote the DSN, password and all
            return Standby(shown, NAMED, "unreachable", error=unparsable_dsn(dsn))
        except psycopg.Error as exc:
            self._drop(dsn)
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            return Standby(shown, NAMED, "unreachable", error=reason)
        assert row is not None
        recovery, received, replayed, unreceived, behind, paused, at, ago, blocked = row
        if not recovery:
            return Standby(shown, NAMED, "not a standby", error="not in recovery")
        caught_up = behind is not None and behind <= 0
        return Standby(
            shown,
            NAMED,
            "paused" if paused else "replaying",
            sent_lsn=received,
            replay_lsn=replayed,
            bytes_unreceived=unreceived,
            bytes_behind=behind,
            seconds_behind=0.0 if caught_up else ago,
            paused=bool(paused),
            last_replayed_at=at,
            blocked_by=blocked,
        )

    def _drop(self, dsn: str) -> None:
        conn = self._open.pop(dsn, None)
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        for dsn in list(self._open):
            self._drop(dsn)


def _connect(dsn: str) -> psycopg.Connection[Any]:
    """One attempt, bounded to CONNECT_S: a wait re-reads the standby until its timeout,
    so a standby that does not answer must not hold a look for libpq's usual 10 s."""
    options = connection_options(dsn, CONNECT_S)
    conninfo = make_conninfo(dsn, application_name="sqlrunner replica check", **options)
    return psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)


def _primary(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = conn.execute(PRIMARY_QUERY).fetchone()
    assert row is not None
    return tuple(row)


def _streaming(row: tuple[Any, ...]) -> Standby:
    name, address, slot, state, sent, replayed, unreceived, behind, lag = row
    return Standby(
        name,
        STREAMING,
        state,
        address,
        slot,
        sent_lsn=sent,
        replay_lsn=replayed,
        bytes_unreceived=unreceived,
        bytes_behind=behind,
        seconds_behind=0.0 if behind is not None and behind <= 0 else None,
        replay_lag_s=lag,
    )


def _hidden_note(conn: psycopg.Connection[Any], hidden: int) -> str:
    user = _primary(conn)[2]
    return (
        f"pg_stat_replication shows {hidden} standby(s) but hides their positions from role "
        f"{user}: grant it pg_read_all_stats, or name each standby with apply --replica DSN"
    )


@contextmanager
def watching(
    conn: psycopg.Connection[Any], options: Options, emit: Listener | None
) -> Iterator[LagGate | None]:
    """Before anything runs: refuse standbys the run was asked to watch but cannot see
    (UsageError, exit 2) or reach (ConnectionFailed, exit 3); then the lag gate, when
    ``max_replica_lag`` asks for one. Without a replica option this costs nothing."""
    replicas, max_replica_lag = options.replicas, options.max_replica_lag
    if options.wait_replicas is None and max_replica_lag is None:
        yield None
        return
    standbys = Standbys(conn, tuple(replicas))
    try:
        standbys.primary_lsn()
        current, hidden = standbys.read()
        if hidden and not replicas:
            raise UsageError(f"{_hidden_note(conn, hidden)} | nothing was run")
        for s in current:
            if s.state == "unreachable":
                raise ConnectionFailed(
                    f"cannot reach standby {s.name} given with --replica: {s.error} "
                    "| nothing was run"
                )
            if s.state == "not a standby":
                raise UsageError(
                    f"--replica {s.name} is not a standby (it is not in recovery) | nothing was run"
                )
        yield (
            None
            if max_replica_lag is None
            else LagGate(
                standbys,
                max_replica_lag,
                options.replica_wait,
                emit,
                {s.label: s for s in current if s.state not in ("unreachable", "not a standby")},
            )
        )
    finally:
        standbys.close()


def await_replay(
    conn: psycopg.Connection[Any],
    report: ApplyReport,
    *,
    timeout: float,
    replicas: Sequence[str] = (),
    emit: Listener | None = None,
) -> ApplyReport:
    """The report with what was waited for, once every standby replayed the primary's
    position after the run's last commit; ReplicasBehind (exit 8), carrying the report,
    when one has not within ``timeout`` seconds."""
    lsn = Standbys(conn).primary_lsn()
    try:
        waited = wait_replayed(conn, lsn, timeout, replicas, emit)
    except ReplicasBehind as exc:
        raise ReplicasBehind(str(exc), exc.standbys, report) from None
    return replace(report, replicas=waited)


def wait_replayed(
    conn: psycopg.Connection[Any],
    lsn: str,
    timeout: float,
    replica_dsns: Sequence[str] = (),
    emit: Listener | None = None,
) -> ReplicaWait:
    """Wait until every standby replayed ``lsn``; ReplicasBehind naming each one that has
    not after ``timeout`` seconds. A standby that stops streaming during the wait counts
    as behind; one not streaming when the wait starts is a note (its slot is named)."""
    emit = fan_out(emit)
    standbys = Standbys(conn, tuple(replica_dsns))
    try:
        notes = _wait_notes(standbys)
        for note in notes:
            emit(Event("warning", note))
        return _wait(standbys, lsn, timeout, emit, notes)
    finally:
        standbys.close()


def _wait(
    standbys: Standbys, lsn: str, timeout: float, emit: Listener, notes: tuple[str, ...]
) -> ReplicaWait:
    started = reported = time.monotonic()
    seen: dict[str, Standby] = {}  # every standby seen during the wait, by label
    moved: dict[str, tuple[str | None, float, datetime]] = {}  # label -> last replay LSN seen
    while True:
        current, _hidden = standbys.read(lsn)
        now = time.monotonic()
        for s in current:
            seen[s.label] = s
            if s.label not in moved or moved[s.label][0] != s.replay_lsn:
                moved[s.label] = (s.replay_lsn, now, datetime.now().astimezone())
        labels = {s.label for s in current}
        gone = [
            replace(s, state="disconnected", error="it stopped streaming during the wait")
            for label, s in seen.items()
            if label not in labels and not s.caught_up
        ]
        behind = [s for s in current if not s.caught_up] + gone
        if not behind:
            return ReplicaWait(lsn, int((now - started) * 1000), tuple(current), notes)
        if now - started >= timeout:
            stalled = {label: wall for label, (_, at, wall) in moved.items() if now - at >= 1.0}
            each = "; ".join(
                f"standby {s.label} has not replayed it: {s.why(stalled.get(s.label))}"
                for s in behind
            )
            raise ReplicasBehind(
                f"applied on the primary; {each} (waited {timeout:g}s for {lsn}) | the "
                "migration stays applied and recorded: look at the standby ('sqlrunner status "
                "--replicas'); the release may start once it has caught up",
                [s.label for s in behind],
            )
        if now - reported >= REPORT_EVERY_S:
            reported = now
            each = "; ".join(f"standby {s.label}: {s.why()}" for s in behind)
            emit(Event("waiting", f"waiting for the standbys to replay {lsn}: {each}"))
        time.sleep(min(POLL_S, max(0.0, started + timeout - now)))


def _wait_notes(standbys: Standbys) -> tuple[str, ...]:
    """What a wait does not cover: no standby at all, hidden ones, inactive slots."""
    current, hidden = standbys.read()
    notes = [_hidden_note(standbys.conn, hidden)] if hidden else []
    if not current and not hidden:
        notes.append(
            "no standby streams from this server: nothing to wait for (name a cascaded "
            "standby, or one a pooler hides, with apply --replica DSN)"
        )
    notes += [
        f"slot {slot.name} is inactive: its standby is not streaming and was not waited for"
        for slot in read_slots(standbys.conn)
        if slot.slot_type == "physical" and not slot.active
    ]
    return tuple(notes)


@dataclass
class LagGate:
    """Between statements (of a no-transaction file, or a backfill's batches): waits while
    any standby is more than ``max_lag`` bytes behind the primary's current position, at
    most ``timeout`` seconds each time. Call it with no arguments."""

    standbys: Standbys
    max_lag: int
    timeout: float
    emit: Listener | None = None
    # every standby seen streaming since the run began: one that drops out of
    # pg_stat_replication (a restarting walreceiver) is not caught up, it is out of sight
    seen: dict[str, Standby] = field(default_factory=dict)

    def pause_while_behind(self) -> None:
        """Return once no standby is over the bound (one query when none is);
        ReplicasBehind (exit 8) when one stays over it for ``timeout`` seconds."""
        started = time.monotonic()
        reported: float | None = None
        while True:
            current, _hidden = self.standbys.read()
            self.seen.update((s.label, s) for s in current)
            labels = {s.label for s in current}
            gone = [
                replace(s, state="disconnected", error="it stopped streaming during the run")
                for label, s in self.seen.items()
                if label not in labels
            ]
            over = [s for s in current if s.bytes_behind is None or s.bytes_behind > self.max_lag]
            over += gone
            if not over:
                return
            now = time.monotonic()
            each = "; ".join(f"standby {s.label}: {s.why()}" for s in over)
            if now - started >= self.timeout:
                raise ReplicasBehind(
                    f"a standby stayed more than {size(self.max_lag)} behind for "
                    f"{self.timeout:g}s (--max-replica-lag, --replica-wait): {each} | the "
                    "statements done so far are committed and recorded; run apply again "
                    "once it has caught up: it resumes where it stopped",
                    [s.label for s in over],
                )
            if reported is None or now - reported >= REPORT_EVERY_S:
                reported = now
                fan_out(self.emit)(
                    Event(
                        "waiting",
                        f"waiting up to {self.timeout:g}s for the standbys to come within "
                        f"{size(self.max_lag)}: {each}",
                    )
                )
            time.sleep(min(POLL_S, max(0.0, started + self.timeout - now)))

    __call__ = pause_while_behind


def read_slots(conn: psycopg.Connection[Any]) -> list[Slot]:
    return [Slot(*row) for row in conn.execute(SLOTS_QUERY).fetchall()]


def standby_status(
    target: str | psycopg.Connection[Any], replicas: Sequence[str] = (), *, wait: float = 0
) -> ReplicaStatus:
    """Each standby against the primary's current position (bytes from LSNs; seconds from
    the last replayed commit for standbys named by DSN), and every replication slot."""
    conn = target if isinstance(target, psycopg.Connection) else connect(target, wait=wait)
    try:
        standbys = Standbys(conn, tuple(replicas))
        try:
            lsn = standbys.primary_lsn()
            current, hidden = standbys.read(lsn)
        finally:
            standbys.close()
        slots = read_slots(conn)
        notes = [_hidden_note(conn, hidden)] if hidden else []
        notes += [w for w in (s.warning for s in slots) if w]
        shown = mask_password(target if isinstance(target, str) else conn.info.dsn)
    finally:
        if conn is not target:
            conn.close()
    return ReplicaStatus(shown, lsn, tuple(current), tuple(slots), tuple(notes))
