"""``apply --dry-run --sql``: the SQL an apply would send, in order, with the locks it takes.

Every statement of the files is listed as it will be sent, and before it the
table locks PostgreSQL takes for it (locklevels.py). The runner's own SQL
(the runner lock, its ``SET LOCAL`` bounds, the session restore, the ledger
and history rows, its ``BEGIN``/``COMMIT`` around a file's body) is listed
too, each marked ``by="sqlrunner"``: as text they are ``-- sqlrunner:``
comment lines, so what is left once they are removed is exactly the files'
statements, and the script stays readable SQL. Nothing here runs anything;
the session restore is the one the run would send, read from the connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from . import ledger
from .checks import VERIFY_STATEMENT_TIMEOUT
from .ledger import LedgerTables, RunContext
from .locking import LOCK_SESSION_LIMITS, MIGRATION_LIMITS, RetryPolicy
from .locklevels import Lock, StatementLocks, statement_locks
from .runner import CLIENT_CHECK
from .session import SessionState
from .sqltext import Script, Statement, runs_alone, runs_without_lock_timeout

MARK = "-- sqlrunner: "
RUNNER, FILE = "sqlrunner", "file"


@dataclass(frozen=True, slots=True)
class PlannedStatement:
    """One statement an apply would send: the file's (with its locks) or the runner's."""

    sql: str
    by: str  # "file" or "sqlrunner"
    file: str | None = None
    line: int | None = None
    locks: tuple[Lock, ...] = ()
    lock_note: str = ""


def _ours(*queries: str, file: str | None = None) -> Iterator[PlannedStatement]:
    for query in queries:
        yield PlannedStatement(query, RUNNER, file)


def _theirs(statement: Statement, file: str) -> PlannedStatement:
    found = statement_locks(statement.kind, statement.fields)
    return PlannedStatement(statement.text, FILE, file, statement.line, found.locks, found.note)


def _literal(value: str) -> str:
    return sql.Literal(value).as_string()


@dataclass(frozen=True, slots=True)
class Preview:
    """What the run would send for each file, built from the same pieces the runner sends."""

    tables: LedgerTables
    policy: RetryPolicy
    state: SessionState
    ctx: RunContext
    server_version: int

    def held(self, file: str | None) -> PlannedStatement:
        key = self.tables.lock_key
        return PlannedStatement(
            f"DO: raise SQLSTATE SRL01 unless the lock connection still holds advisory key {key}",
            RUNNER,
            file,
        )

    def locals(self, lock_timeout: str, file: str | None) -> Iterator[PlannedStatement]:
        yield from _ours(
            f"SET LOCAL lock_timeout = {_literal(lock_timeout)}",
            "SET LOCAL synchronous_commit = off",
            f"SET LOCAL client_connection_check_interval = {_literal(CLIENT_CHECK)}",
            file=file,
        )

    def start(self) -> Iterator[PlannedStatement]:
        """The runner lock on its own connection, then sqlrunner's tables."""
        limits = LOCK_SESSION_LIMITS.split("; ")
        if self.server_version >= 170000:
            limits.append("SET LOCAL transaction_timeout = 0")
        t = self.tables
        yield from _ours(
            "(lock connection) BEGIN",
            f"(lock connection) SELECT pg_try_advisory_xact_lock({t.lock_key:d}), "
            "pg_backend_pid()  -- polled until granted, up to --runner-wait",
            *(f"(lock connection) {q}" for q in limits),
            f"create {t.ledger_name}, {t.history_name} and {t.progress_name} if missing",
            f"SELECT kind, version, name, checksum FROM {t.ledger_name}  -- re-read under the lock",
        )

    def forward(self, script: Script) -> Iterator[PlannedStatement]:
        m = script.migration

        def finish(duration_ms: str) -> list[str]:
            return [
                ledger.record_applied(
                    self.tables, "forward", m.version, m.name, m.checksum, duration_ms, self.ctx
                ),
                ledger.clear_progress(self.tables, m.version),
                self._history("apply", script, duration_ms),
            ]

        if script.batch is not None:
            return self._batched(script, finish)
        if m.no_transaction:
            return self._autocommit(script, finish)
        return self._transaction(script, finish(ledger.TRANSACTION_DURATION_MS))

    def seed(self, script: Script) -> Iterator[PlannedStatement]:
        m = script.migration
        duration = ledger.TRANSACTION_DURATION_MS
        rows = [
            ledger.record_applied(
                self.tables, "seed", m.version, m.name, m.checksum, duration, self.ctx
            ),
            self._history("seed", script, duration),
        ]
        return self._transaction(script, rows)

    def _history(self, action: str, script: Script, duration_ms: str) -> str:
        return ledger.record_file_history(
            self.tables, self.ctx, action, "ok", script.migration, duration_ms=duration_ms
        )

    def _transaction(self, script: Script, rows: Sequence[str]) -> Iterator[PlannedStatement]:
        """As Executor._transaction sends it: BEGIN, the file's SETs, our bounds, the body
        (our lock_timeout again after each statement), the restore, the rows, COMMIT."""
        path = script.migration.display_path
        timeout = self.policy.lock_timeout_setting
        yield from _ours("BEGIN", file=path)
        yield from (_theirs(s, path) for s in script.preamble)
        yield from self.locals(timeout, path)
        yield from _ours(*MIGRATION_LIMITS, file=path)
        yield self.held(path)
        for index, statement in enumerate(script.statements):
            yield _theirs(statement, path)
            if index < len(script.statements) - 1:
                yield from _ours(f"SET LOCAL lock_timeout = {_literal(timeout)}", file=path)
        yield from _ours(*self.state.restore(), file=path)
        yield from self.locals(timeout, path)
        yield self.held(path)
        yield from _ours(*rows, "COMMIT", file=path)

    def _autocommit(self, script: Script, finish: Any) -> Iterator[PlannedStatement]:
        """As Executor._autocommit sends it: each statement in its own implicit transaction
        with our bounds and its progress row, then one transaction for the ledger rows."""
        m = script.migration
        path = m.display_path
        timeout = self.policy.lock_timeout_setting
        for statement in script.statements:
            bounded = not runs_without_lock_timeout(statement)
            progress: list[str] = []
            if statement.kind != "VariableSetStmt":
                row = ledger.record_statement_done(
                    self.tables, m.version, m.checksum, statement.index
                )
                progress = [*self.state.as_runner(local=True), row]
            if runs_alone(statement):
                yield self.held(path)
                if bounded:
                    yield from _ours(f"SET lock_timeout = {_literal(timeout)}", file=path)
                yield _theirs(statement, path)
                if bounded:
                    kept = dict(self.state.settings).get("lock_timeout")
                    reset = f"SET lock_timeout = {_literal(kept)}" if kept else "RESET lock_timeout"
                    yield from _ours(reset, file=path)
                if progress:
                    yield from _ours("SET LOCAL synchronous_commit = off", *progress, file=path)
                continue
            yield from self.locals(timeout if bounded else "0", path)
            yield self.held(path)
            yield _theirs(statement, path)
            yield from _ours(*progress, file=path)
        yield from _ours(
            "BEGIN", *self.state.restore(), "SET LOCAL synchronous_commit = off", file=path
        )
        yield self.held(path)
        yield from _ours(*finish("<duration_ms>"), "COMMIT", file=path)

    def _batched(self, script: Script, finish: Any) -> Iterator[PlannedStatement]:
        """As backfill.py sends it: the key range fixed once, then each batch [lo, hi) in
        its own transaction with its progress row, then the ledger rows."""
        assert script.batch is not None
        m, spec = script.migration, script.batch.spec
        path, timeout = m.display_path, self.policy.lock_timeout_setting
        key, table = spec.key, ".".join(filter(None, (spec.schema, spec.table)))
        yield from _ours(
            f"create {self.tables.backfill_name} if missing; fix the key range once: "
            f"SELECT min({key}), max({key}) + 1 FROM {table} (a re-run resumes at next_key)",
            f"for each batch [lo, hi) of about {spec.size} keys, adapting toward "
            f"{spec.target_ms or 'a fixed size'}"
            f"{'ms' if spec.target_ms else ''}, :lo and :hi replaced by its bounds:",
            "BEGIN",
            file=path,
        )
        yield from self.locals(timeout, path)
        yield from _ours(*MIGRATION_LIMITS, file=path)
        yield self.held(path)
        yield _theirs(script.batch.statement, path)
        yield from _ours(
            f"UPDATE {self.tables.backfill_name} SET next_key = hi, batches = batches + 1 "
            f"WHERE version = {m.version:d} AND next_key = lo  -- or the batch rolls back",
            "COMMIT",
            "after the last batch:",
            "BEGIN",
            file=path,
        )
        yield self.held(path)
        yield from _ours(*finish("<duration_ms>"), "COMMIT", file=path)

    def verify(self, scripts: Sequence[Script]) -> Iterator[PlannedStatement]:
        """Each verify file in a READ ONLY transaction that is rolled back (checks.py),
        the runner's bounds sent again with each statement."""
        bounds = [
            f"SET LOCAL lock_timeout = {_literal(self.policy.lock_timeout_setting)}",
            f"SET LOCAL statement_timeout = {_literal(VERIFY_STATEMENT_TIMEOUT)}",
        ]
        for script in scripts:
            path = script.migration.display_path
            yield from _ours(
                "BEGIN READ ONLY", *bounds, "SELECT 1  -- takes the snapshot", file=path
            )
            for statement in script.statements:
                yield from _ours(*bounds, file=path)
                yield _theirs(statement, path)
            yield from _ours("ROLLBACK", *self.state.release_locks(), file=path)

    def finish(self, applied: int, seeded: int) -> Iterator[PlannedStatement]:
        detail = f"{applied} applied, {seeded} seeded"
        yield from _ours(
            ledger.record_history(
                self.tables, self.ctx, "apply", "ok", kind="run", duration_ms="<ms>", detail=detail
            )
            + "  -- committed with synchronous_commit on: the run's one WAL flush",
            "(lock connection) closed: the runner lock is released",
        )


def preview_apply(
    conn: Any,
    tables: LedgerTables,
    policy: RetryPolicy,
    forward: Sequence[Script],
    seeds: Sequence[Script],
    verify: Sequence[Script],
) -> tuple[PlannedStatement, ...]:
    """Every statement an apply of ``forward`` then ``seeds`` then ``verify`` would send.

    ``conn`` is the run's connection: one query reads the session state the run
    would restore after each file (nothing else is sent).
    """
    p = Preview(
        tables, policy, SessionState.capture(conn), RunContext.new(), conn.info.server_version
    )
    if not forward and not seeds:
        return ()
    parts: list[Iterable[PlannedStatement]] = [p.start()]
    parts += [p.forward(s) for s in forward]
    parts += [p.seed(s) for s in seeds]
    parts += [p.verify(verify), p.finish(len(forward), len(seeds))]
    return tuple(statement for part in parts for statement in part)


def as_text(statements: Sequence[PlannedStatement], target: str) -> str:
    """The script: the files' statements as SQL, everything else a ``-- sqlrunner:`` line."""
    lines = [f"{MARK}dry run: the SQL apply would send to {target}, in order"]
    if not statements:
        return lines[0] + f"\n{MARK}nothing to apply\n"
    file = None
    for s in statements:
        if s.file != file and s.file is not None:
            lines.append(f"{MARK}--- {s.file}")
        file = s.file if s.file is not None else file
        if s.by == RUNNER:
            lines.append(MARK + " ".join(s.sql.split()))
            continue
        locks = StatementLocks(s.locks, s.lock_note)
        lines.append(f"{MARK}line {s.line}: {'locks ' if s.locks else ''}{locks}")
        lines.append(s.sql + ";")
    return "\n".join(lines) + "\n"
