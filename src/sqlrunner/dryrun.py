"""``apply --dry-run --sql``: the SQL an apply would send, in order, with the locks it takes.

Every statement of the files is listed as it will be sent, and before it the
table locks PostgreSQL takes for it (locklevels.py). The runner's own SQL
(the runner lock, its ``SET LOCAL`` bounds, the session restore, the ledger
and history rows, its ``BEGIN``/``COMMIT`` around a file's body) is listed
too, each marked ``by="sqlrunner"``: as text they are ``-- sqlrunner:``
comment lines, so what is left once they are removed is exactly the files'
statements, and the script stays readable SQL.

A file's part is printed from the very messages the runner sends
(``messages.py``), not a copy of them: only what exists once the run has
started is a placeholder (the lock backend's pid in the lock check, a
duration, a batch's bounds and row count). Nothing here runs anything; the
session restore is the one the run would send, read from the connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import ledger
from .checks import VERIFY_STATEMENT_TIMEOUT, check_bounds, file_opening
from .ledger import LedgerTables, RunContext
from .locking import LOCK_SESSION_LIMITS, RetryPolicy
from .locklevels import Lock, StatementLocks, statement_locks
from .messages import Message, Messages
from .position import advance, fix_range, record_done
from .session import SessionState
from .sqltext import Script, Statement, runs_alone

MARK = "-- sqlrunner: "
RUNNER, FILE = "sqlrunner", "file"
# What the preview shows for values that exist only while the file runs.
DURATION = "<duration_ms>"
LAST_BATCH_ROW = "<the progress row as the last batch left it>"


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


def _theirs(statement: Statement, file: str, text: str | None = None) -> PlannedStatement:
    """A file's statement (``text`` as sent, when that is not its own) and its locks."""
    found = statement_locks(statement.kind, statement.fields)
    sent = statement.text if text is None else text
    return PlannedStatement(sent, FILE, file, statement.line, found.locks, found.note)


def _sent(messages: Iterable[Message], file: str) -> Iterator[PlannedStatement]:
    """The parts of ``messages`` in order: the file's statements with the locks they take,
    everything else the runner's."""
    for message in messages:
        for text, owner in message:
            if isinstance(owner, Statement):
                yield _theirs(owner, file, text)
            else:
                yield PlannedStatement(text, RUNNER, file)


def held_check(tables: LedgerTables) -> str:
    """What the preview shows for ``RunnerLock.held_check`` (the lock backend's pid
    exists only once the lock is taken)."""
    return (
        "DO: raise SQLSTATE SRL01 unless the lock connection still holds advisory key "
        f"{tables.lock_key}"
    )


@dataclass(frozen=True, slots=True)
class Preview:
    """What the run would send for each file: the very messages the runner sends
    (messages.py), with placeholders for what exists only at run time."""

    messages: Messages
    server_version: int

    @property
    def tables(self) -> LedgerTables:
        return self.messages.tables

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
        m, said = script.migration, self.messages
        if script.batch is not None:
            return self._batched(script)
        if m.no_transaction:
            return self._autocommit(script)
        rows = said.applied(m, "apply", ledger.TRANSACTION_DURATION_MS)
        return _sent(said.transaction(script, rows), m.display_path)

    def seed(self, script: Script) -> Iterator[PlannedStatement]:
        m, said = script.migration, self.messages
        rows = said.applied(m, "seed", ledger.TRANSACTION_DURATION_MS)
        return _sent(said.transaction(script, rows), m.display_path)

    def _autocommit(self, script: Script) -> Iterator[PlannedStatement]:
        """Each statement in the implicit transaction of its message, or alone, then one
        transaction for the ledger rows."""
        m, said = script.migration, self.messages
        messages: list[Message] = []
        for statement in script.statements:
            if runs_alone(statement):
                messages += said.alone(m, statement).in_order()
            else:
                messages.append(said.autocommit(m, statement))
        messages.append(said.ledger_transaction(said.applied(m, "apply", DURATION)))
        return _sent(messages, m.display_path)

    def _batched(self, script: Script) -> Iterator[PlannedStatement]:
        """The key range fixed once, then each batch [lo, hi) in its own transaction with
        its progress row, then the ledger rows."""
        assert script.batch is not None
        m, said, batch = script.migration, self.messages, script.batch
        path, spec, tables = m.display_path, batch.spec, self.tables
        start = fix_range(tables, m.version, m.checksum, spec.size, spec.key, spec.table_sql)
        moved = advance(tables, m.version, "<lo>", "<hi>", "<batch_size>", "<rows>")
        rows = [*said.applied(m, "apply", DURATION), record_done(tables, LAST_BATCH_ROW)]
        target = f"{spec.target_ms}ms" if spec.target_ms else "a fixed size"
        yield from _ours(
            f"create {tables.backfill_name} if missing; unless an earlier run left this "
            "file's progress row (then it resumes at next_key), fix the key range once:",
            file=path,
        )
        yield from _sent([said.backfill_transaction([start])], path)
        yield from _ours(
            f"for each batch [<lo>, <hi>) of about {spec.size} keys, adapting toward {target}, "
            "the statement's :lo and :hi replaced by its bounds:",
            file=path,
        )
        yield from _sent([said.batch(batch.statement.text, batch.statement)], path)
        yield from _sent([said.batch_commit(moved)], path)
        yield from _ours("after the last batch:", file=path)
        yield from _sent([said.backfill_transaction(rows)], path)

    def verify(self, scripts: Sequence[Script]) -> Iterator[PlannedStatement]:
        """Each verify file in a READ ONLY transaction that is rolled back, as checks.py
        sends it: the runner's bounds in front of each statement."""
        bounds = check_bounds(self.messages.lock_timeout, VERIFY_STATEMENT_TIMEOUT)
        release = self.messages.state.release_locks()
        for script in scripts:
            path = script.migration.display_path
            yield from _ours("BEGIN", *file_opening(bounds), file=path)
            for statement in script.statements:
                yield from _ours(*bounds, file=path)
                yield _theirs(statement, path)
            yield from _ours("ROLLBACK", *release, file=path)

    def finish(self, applied: int, seeded: int) -> Iterator[PlannedStatement]:
        detail = f"{applied} applied, {seeded} seeded"
        yield from _ours(
            ledger.record_history(
                self.tables,
                self.messages.ctx,
                "apply",
                "ok",
                kind="run",
                duration_ms="<ms>",
                detail=detail,
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
    state = SessionState.capture(conn)
    said = Messages(
        policy.lock_timeout_setting, held_check(tables), state, tables, RunContext.new()
    )
    p = Preview(said, conn.info.server_version)
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
