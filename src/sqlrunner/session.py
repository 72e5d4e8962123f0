"""The database side of a run: its options, one ``connect()``, the password kept out of
sight, the session state a file must not leave behind, the messages the runner sends,
and the server's notices relayed as events.

Every connection sqlrunner opens (the run's, the runner lock's, the progress
watcher's, the one that reads the ledger after a lost connection) comes from
``connect()``: bounded, with TCP keepalives, and without prepared statements, so a
pooler never sees one. ``open_session`` is where each entry point gets its
connection, and where any psycopg error that reaches it becomes a SqlRunnerError.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import unquote

import psycopg
from psycopg import errors, generators, pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConnectionFailed, DatabaseError, SqlRunnerError, UsageError
from .report import Event, Listener, fan_out

Target = str | psycopg.Connection[Any]


# --- options: every default, written once -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """How a run behaves, with every default of the library and the CLI written once.

    The api functions take these as keyword arguments (``lock_timeout="1s"``) and the
    CLI reads its defaults from ``DEFAULTS``; adding an option is a field here and a
    key in ``OptionValues`` (a test keeps the two equal).
    """

    lock_timeout: str | int = "200ms"  # PostgreSQL's lock_timeout for one attempt
    lock_retries: int = 20  # attempts after a lock timeout: about a minute in all
    wait: float = 0  # seconds to keep retrying the connection (containers start first)
    runner_wait: float = 300  # seconds to wait for another sqlrunner to finish
    ledger_schema: str = "public"
    ledger_table: str = "sqlrunner_ledger"
    strict: bool = False  # refuse versions applied by a newer release
    strict_order: bool = False  # refuse a pending file older than the newest applied
    # standbys (replicas.py): seconds for every standby to replay the run's last commit
    wait_replicas: float | None = None
    replicas: Sequence[str] = ()  # DSNs of standbys pg_stat_replication does not show
    max_replica_lag: int | None = None  # bytes a standby may lag before a statement waits
    replica_wait: float = 300  # seconds one such wait may last, then ReplicasBehind
    budget: float | None = None  # seconds; batched files stop between batches after it

    def __post_init__(self) -> None:
        """A bad value is refused before anything connects."""
        object.__setattr__(self, "replicas", tuple(self.replicas))  # a list from a caller
        lock_timeout_ms(self.lock_timeout)
        if self.lock_retries < 0:
            raise UsageError(f"lock retries must be 0 or more, not {self.lock_retries}")

    @property
    def lock_timeout_ms(self) -> int:
        return lock_timeout_ms(self.lock_timeout)


class OptionValues(TypedDict, total=False):
    """``Options`` as keyword arguments of the api functions."""

    lock_timeout: str | int
    lock_retries: int
    wait: float
    runner_wait: float
    ledger_schema: str
    ledger_table: str
    strict: bool
    strict_order: bool
    wait_replicas: float | None
    replicas: Sequence[str]
    max_replica_lag: int | None
    replica_wait: float
    budget: float | None


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?\s*$")
UNITS_MS = {"ms": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}


def duration_ms(value: str | int | float, bare: str | None = "ms") -> int:
    """'200ms', '2s', '10m', '1.5h' -> milliseconds; a number means ``bare`` units
    (a lock timeout's milliseconds, a budget's seconds; None: a unit is required)."""
    if isinstance(value, (int, float)):
        return int(value)
    match = DURATION.match(value)
    if match is None or (match[2] is None and bare is None):
        raise UsageError(f"invalid duration {value!r}: use e.g. 200ms, 2s, 10m or 1h")
    return int(float(match[1]) * UNITS_MS[match[2] or bare or "ms"])


def lock_timeout_ms(value: str | int | float) -> int:
    """A per-attempt lock_timeout; 0 is refused because PostgreSQL reads it as "wait forever"."""
    milliseconds = duration_ms(value)
    if milliseconds < 1:
        raise UsageError(
            f"lock timeout {value!r} must be at least 1ms: PostgreSQL reads 0 as 'wait forever'"
        )
    return milliseconds


DEFAULTS = Options()


def literal(value: str | int | None) -> str:
    """A SQL literal for text the runner sends in one simple-query message with others
    (which cannot carry parameters): psycopg quotes it."""
    return sql.Literal(value).as_string()


def identifier(*parts: str) -> str:
    """A (qualified) name quoted by psycopg, as SQL text and as to_regclass() reads it."""
    return sql.Identifier(*parts).as_string()


# --- the target, shown without its password ------------------------------------------------

UNPARSABLE = "<unparsable DSN>"
MASK = "***"
# libpq's secret keywords: a value under any of these is never shown.
SECRET_KEYS = ("password", "sslpassword", "oauth_client_secret")


def mask_password(dsn: str) -> str:
    """The DSN as users may see it: every secret libpq reads from it replaced by ``***``.

    libpq itself parses the DSN (URL or key=value), so whatever it takes for a
    password (``?pass%77ord=``, the text up to the first ``@``) is masked. A DSN
    it cannot parse is never shown at all: its password could be anywhere in it.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return UNPARSABLE
    if not any(params.get(key) for key in SECRET_KEYS):
        return dsn
    if dsn.startswith(("postgresql://", "postgres://")):
        masked = _mask_url(dsn)
        if _only_masked_secrets(masked, params):
            return masked
    return make_conninfo(
        **{k: MASK if k in SECRET_KEYS and v else str(v) for k, v in params.items()}
    )


def unparsable_dsn(dsn: str) -> str:
    """Why a DSN libpq rejects cannot be used, without libpq's words: they quote the DSN."""
    return (
        f"invalid DSN {mask_password(dsn)}: libpq cannot parse it (not shown, it may hold a "
        "password); check its quoting and percent-encoding (%XX, no %00)"
    )


def _mask_url(url: str) -> str:
    """The URL in its own spelling, with the user-info password and secret query values masked.

    libpq takes user info up to the first ``@`` before any ``/``, and the password
    after the first ``:`` in it; query keys are percent-decoded.
    """
    scheme, rest = url.split("://", 1)
    slash = rest.find("/")
    at = rest.find("@", 0, slash if slash >= 0 else len(rest))
    if at >= 0 and ":" in rest[:at]:
        rest = f"{rest[: rest.index(':')]}:{MASK}{rest[at:]}"
    head, query_mark, query = rest.partition("?")
    if query_mark:
        pairs = [
            f"{key}={MASK}" if unquote(key) in SECRET_KEYS else f"{key}{eq}{value}"
            for key, eq, value in (pair.partition("=") for pair in query.split("&"))
        ]
        rest = f"{head}?{'&'.join(pairs)}"
    return f"{scheme}://{rest}"


def _only_masked_secrets(masked: str, original: dict[str, Any]) -> bool:
    """True when libpq reads ``***`` for every secret the original DSN held."""
    try:
        params = conninfo_to_dict(masked)
    except psycopg.ProgrammingError:
        return False
    return all(params.get(k) == MASK for k in SECRET_KEYS if original.get(k))


# Every connection sqlrunner opens notices a dead peer within seconds instead of the
# kernel's two hours: TCP keepalives probe an idle flow (and keep NAT/firewall state for it
# alive), tcp_user_timeout aborts when sent data stays unacknowledged. libpq ignores
# them on Unix-domain sockets, where the kernel reports a dead peer at once.
TCP_LIMITS = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",  # milliseconds
}
# Seconds for one connection attempt (a server that accepts TCP and never answers):
# libpq counts it per host, and its minimum is 2.
CONNECT_TIMEOUT = 10


def connection_options(dsn: str, timeout: float = CONNECT_TIMEOUT) -> dict[str, str]:
    """TCP_LIMITS and a connect timeout, for the keys the DSN does not set itself."""
    given = conninfo_to_dict(dsn)
    wanted = {**TCP_LIMITS, "connect_timeout": str(max(2, math.ceil(timeout)))}
    return {key: value for key, value in wanted.items() if key not in given}


def connect(
    dsn: str,
    *,
    wait: float = 0,
    autocommit: bool = True,
    application_name: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> psycopg.Connection[tuple[Any, ...]]:
    """Open a connection, retrying for up to ``wait`` seconds (containers start first).

    Each attempt is bounded (``timeout`` seconds, or what is left of ``wait``).
    ``prepare_threshold=None``: never prepare statements, so PgBouncer in
    transaction-pooling mode cannot hand us a server connection that lacks them.
    """
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.25
    names: dict[str, str] = (
        {"application_name": application_name}
        if application_name is not None
        else {"fallback_application_name": "sqlrunner"}  # the DSN's own name wins
    )
    while True:
        try:
            remaining = deadline - time.monotonic()
            limits = connection_options(dsn, min(timeout, remaining) if remaining > 0 else timeout)
            conninfo = make_conninfo(dsn, **names, **limits)
            return psycopg.connect(conninfo, autocommit=autocommit, prepare_threshold=None)
        except psycopg.OperationalError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or _is_final(exc):
                reason = _one_line(str(exc)) or type(exc).__name__
                waited = f" after waiting {wait:g}s" if wait > 0 else ""
                raise ConnectionFailed(
                    f"cannot connect to {mask_password(dsn)}{waited}: {reason}"
                ) from exc
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)
        except psycopg.ProgrammingError:
            # no cause: libpq's message quotes the DSN, password and all
            raise ConnectionFailed(unparsable_dsn(dsn)) from None


def _is_final(exc: psycopg.OperationalError) -> bool:
    """Wrong password or unknown database will not fix themselves by waiting."""
    text = str(exc)
    return "password authentication failed" in text or (
        "database" in text and "does not exist" in text
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines)[:400]


# --- one session per run: the connection, handed back as it came --------------------------


@contextmanager
def open_session(target: Target, wait: float) -> Iterator[tuple[psycopg.Connection[Any], str, str]]:
    """(connection, conninfo for the lock connection, masked target) for one run.

    A connection given by the caller is used as it is and handed back as it came
    (see ``hand_back``); a DSN gets its own connection, closed at the end. A psycopg
    error that reaches this point (the connection died, the server refused the
    runner's own SQL) becomes a SqlRunnerError with the psycopg error as its cause.
    """
    with database_errors():
        if isinstance(target, psycopg.Connection):
            if target.info.transaction_status != pq.TransactionStatus.IDLE:
                raise UsageError(
                    "the connection given to sqlrunner must not be inside a transaction"
                )
            autocommit, threshold = target.autocommit, target.prepare_threshold
            target.autocommit, target.prepare_threshold = True, None
            params = {o.keyword.decode(): o.val.decode() for o in target.pgconn.info if o.val}
            try:
                yield target, make_conninfo(**params), mask_password(target.info.dsn)
            finally:
                hand_back(target, autocommit, threshold)
            return
        conn = connect(target, wait=wait)
        try:
            yield conn, target, mask_password(target)
        finally:
            conn.close()


@contextmanager
def database_errors() -> Iterator[None]:
    """psycopg errors become the matching SqlRunnerError, with the psycopg error as
    ``__cause__``: a lost connection is ConnectionFailed (exit 3), anything else the
    server refused is DatabaseError (exit 4)."""
    try:
        yield
    except SqlRunnerError:
        raise
    except psycopg.OperationalError as exc:
        if not connection_gone(None, exc):
            raise DatabaseError(f"database error: {_one_line(str(exc))}", exc.sqlstate) from exc
        raise ConnectionFailed(f"lost the database connection: {_one_line(str(exc))}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"database error: {_one_line(str(exc))}", exc.sqlstate) from exc


# Errors that mean the server ended the session, or the connection to it broke.
GONE = (
    errors.ConnectionException,
    errors.ConnectionDoesNotExist,
    errors.ConnectionFailure,
    errors.SqlclientUnableToEstablishSqlconnection,
    errors.SqlserverRejectedEstablishmentOfSqlconnection,
    errors.ProtocolViolation,
    errors.AdminShutdown,
    errors.CrashShutdown,
    errors.CannotConnectNow,
    errors.DatabaseDropped,
    errors.IdleSessionTimeout,
)


def connection_gone(conn: psycopg.Connection[Any] | None, exc: psycopg.Error) -> bool:
    """The connection is gone (not a SQL error): closed, broken, or ended by the server.

    libpq reports a broken socket without a SQLSTATE, as a bare OperationalError.
    """
    if conn is not None and conn.closed:
        return True
    if isinstance(exc, GONE):
        return True
    return type(exc) is psycopg.OperationalError and exc.sqlstate is None


def hand_back(conn: psycopg.Connection[Any], autocommit: bool, threshold: int | None) -> None:
    """The caller's connection as it came: no open transaction, its own autocommit and
    prepare_threshold (the runner restores session settings after each file itself).

    Never raises: on an interrupted or failed run the original error is what matters,
    and a connection that died stays closed for the caller to see.
    """
    if conn.closed:
        return
    with suppress(psycopg.Error):
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.rollback()
    with suppress(psycopg.Error):
        conn.autocommit = autocommit
    conn.prepare_threshold = threshold


def require_supported_server(conn: psycopg.Connection[Any]) -> None:
    """PostgreSQL 14.4+: 14.0-14.3 could corrupt indexes built concurrently (no round trip)."""
    version = conn.info.server_version
    if version < 140004:
        raise UsageError(f"PostgreSQL 14.4 or newer is required; this server is {version}")


# --- the session state a file must not leave behind ----------------------------------------
# psql runs each file in a fresh session; the runner runs a whole set on one
# connection. So whatever a file leaves in the session (``SET search_path``,
# ``SET ROLE``, ``SET SESSION AUTHORIZATION``, ``set_config(..., false)``,
# ``DISCARD ALL``, a session advisory lock) is undone before the next file,
# before the ledger write, and before a caller's connection is handed back.
#
# ``RESET ALL`` returns every setting to its value at connection time (the
# startup packet, ``ALTER ROLE/DATABASE ... SET``, postgresql.conf); what the
# session itself had ``SET`` before the run (``source = 'session'`` in
# pg_settings) is captured once and re-applied. Role and session authorization
# are not touched by ``RESET ALL`` and are restored explicitly.

CAPTURE_QUERY = """
SELECT current_user::text, session_user::text,
       ARRAY(SELECT name FROM pg_catalog.pg_settings
             WHERE source = 'session' AND name NOT LIKE 'transaction\\_%' ORDER BY name),
       ARRAY(SELECT setting FROM pg_catalog.pg_settings
             WHERE source = 'session' AND name NOT LIKE 'transaction\\_%' ORDER BY name),
       (SELECT count(*) FROM pg_catalog.pg_locks
        WHERE pid = pg_backend_pid() AND locktype = 'advisory')
"""


@dataclass(frozen=True, slots=True)
class SessionState:
    """Who the session was and what it had SET when the run started."""

    current_user: str
    session_user: str
    settings: tuple[tuple[str, str], ...] = ()
    advisory_locks: int = 0

    @classmethod
    def capture(cls, conn: psycopg.Connection[Any]) -> SessionState:
        """One query, only when something will run (a no-op apply never pays for it)."""
        row = conn.execute(CAPTURE_QUERY).fetchone()
        assert row is not None
        current, session, names, values, locks = row
        return cls(str(current), str(session), tuple(zip(names, values, strict=True)), int(locks))

    def as_runner(self, local: bool) -> list[str]:
        """Become the role the runner connected as (``local``: for this transaction only)."""
        scope = "LOCAL " if local else ""
        role = (
            "NONE"
            if self.current_user == self.session_user
            else sql.Identifier(self.current_user).as_string()
        )
        return [
            f"SET {scope}SESSION AUTHORIZATION {sql.Identifier(self.session_user).as_string()}",
            f"SET {scope}ROLE {role}",
        ]

    def restore(self) -> list[str]:
        """Statements (one each) that return the session to this state.

        Inside a transaction they take effect for what follows in it (the
        ledger write) and persist when it commits; a rollback undoes them
        along with whatever the file did.
        """
        statements = ["RESET ALL", *self.as_runner(local=False)[:1]]
        if self.settings:
            calls = ", ".join(
                f"pg_catalog.set_config({literal(name)}, {literal(value)}, false)"
                for name, value in self.settings
            )
            statements.append(f"SELECT {calls}")
        statements.append(self.as_runner(local=False)[1])
        statements.extend(self.release_locks())
        return statements

    def release_locks(self) -> list[str]:
        """A file's (or verify check's) session advisory locks die with psql's session; here
        they are released, unless the caller held some of its own (then they are left)."""
        return [] if self.advisory_locks else ["SELECT pg_catalog.pg_advisory_unlock_all()"]


# --- several statements in one message ------------------------------------------------------
# The runner sends a file's statement together with its own SQL (BEGIN and SET LOCALs
# before the first statement; the session restore, ledger rows and COMMIT after the
# last) so a file costs one round trip per statement. libpq returns one result per
# statement and stops at the first error, so counting the results tells exactly which
# part failed: the file's statement, its COMMIT (a deferred constraint), or the
# runner's own SQL.

# Each part is one statement. A newline before each separator: a statement may end
# in a "-- comment" that would otherwise swallow the ";" and the next part.
SEPARATOR = "\n;\n"


class PartFailed(Exception):
    """Part ``index`` of a message failed with ``error``; ``offset`` is where that part
    starts in the message (PostgreSQL's error positions count from the message's start)."""

    def __init__(self, error: psycopg.Error, index: int, offset: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.index = index
        self.offset = offset

    @property
    def position(self) -> int | None:
        """The error's 1-based position within the failed part, when PostgreSQL gave one."""
        position = self.error.diag.statement_position
        return int(position) - self.offset if position else None


def send(conn: psycopg.Connection[Any], parts: Sequence[str]) -> list[pq.abc.PGresult]:
    """Run ``parts`` as one message; raise PartFailed for the part that failed. Returns
    each part's result (a batch reads its statement's row count there).

    A connection that breaks (terminated backend, network gone) raises
    psycopg.OperationalError, as psycopg does.
    """
    query = SEPARATOR.join(parts)
    encoding = conn.info.encoding
    with conn.lock:
        conn.pgconn.send_query(query.encode(encoding))
        results: list[pq.abc.PGresult] = conn.wait(generators.execute(conn.pgconn))
    offset = 0
    for index, result in enumerate(results):
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise PartFailed(errors.error_from_result(result, encoding=encoding), index, offset)
        if index < len(parts):
            offset += len(parts[index]) + len(SEPARATOR)
    if conn.pgconn.status == pq.ConnStatus.BAD:
        raise psycopg.OperationalError("the connection was lost")
    return results


# --- the server's NOTICEs and WARNINGs, shown as psql shows them -----------------------------
# psycopg drops them unless a handler is added to the connection; this one turns each
# into a ``server_message`` event located at the file and line of the statement that
# was running, so the CLI prints ``path:line: WARNING: ...`` and the library logs it.


@contextmanager
def relay_server_messages(
    conn: psycopg.Connection[Any], listener: Listener | None
) -> Iterator[Listener]:
    """A listener to give the runner in place of ``listener``: it passes every event on,
    and, while it is in use, every message the server sends during a file's statement
    becomes an event too (the runner's own statements stay quiet)."""
    emit = fan_out(listener)
    running: list[Event] = []  # the statement running now, if one of a file's is

    def follow(event: Event) -> None:
        if event.kind == "statement_started":
            running[:] = [event]
        elif event.kind in ("file_started", "file_finished"):
            running.clear()
        if listener is not None:
            listener(event)

    def relay(diag: psycopg.errors.Diagnostic) -> None:
        if not running or running[0].migration is None or running[0].statement is None:
            return
        statement, migration = running[0].statement, running[0].migration
        where = f"{migration.display_path}:{statement.line}"
        parts = [f"{where}: {diag.severity}: {diag.message_primary or ''}"]
        extra = (("DETAIL", diag.message_detail), ("HINT", diag.message_hint))
        parts += [f"{key}: {value}" for key, value in extra if value]
        emit(Event("server_message", " | ".join(parts), migration=migration, statement=statement))

    conn.add_notice_handler(relay)
    try:
        yield follow
    finally:
        conn.remove_notice_handler(relay)
