"""What each round trip of a run carries: the messages the runner sends for a file.

A message is one PostgreSQL simple-query message (``session.send``): a file's
statement together with the runner's own SQL, so a file costs one round trip
per statement. Each part is ``(sql, owner)``: the owner is the file's
``Statement``, ``"COMMIT"`` for the file's COMMIT, or None for the runner's
SQL, which is how a failure is pinned to its part. The executor
(``executor.py``) and the backfill (``backfill.py``) send these lists;
``apply --dry-run --sql`` (``dryrun.py``) prints them. Built from values only:
no connection, nothing sent.

The name is the protocol's: one message, one round trip, one list of parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import ledger
from .files import Migration
from .ledger import LedgerTables, RunContext
from .locking import MIGRATION_LIMITS
from .session import SessionState, literal
from .sqltext import Script, Statement, runs_without_lock_timeout

# A killed runner's backend notices the closed socket within this interval and
# rolls back, releasing its table locks, instead of finishing a long statement
# first (PostgreSQL 14+; the default, 0, never checks while a query runs).
CLIENT_CHECK = "1s"

# The file's statement, "COMMIT" for the file's COMMIT, or None for the runner's own SQL.
Owner = Statement | str | None
Part = tuple[str, Owner]
Message = list[Part]


def ours(*queries: str) -> Message:
    """The runner's own SQL, as parts."""
    return [(q, None) for q in queries]


@dataclass(frozen=True, slots=True)
class AloneStatement:
    """A no-transaction statement PostgreSQL refuses in any transaction block, in messages
    of its own: the lock check (``RunnerLock.ensure_held`` sends it, once, before the
    first attempt), a session ``lock_timeout`` around the statement unless it blocks no
    writer (then ``bound`` and ``reset`` are empty), then its progress row."""

    check: Message
    bound: Message
    statement: Message
    reset: Message
    progress: Message  # empty after a SET: session state, not progress

    def in_order(self) -> list[Message]:
        return [m for m in (self.check, self.bound, self.statement, self.reset, self.progress) if m]


@dataclass(frozen=True, slots=True)
class Messages:
    """The runner's messages for the files of one run.

    ``lock_timeout`` is the policy's per-attempt setting, ``held_check`` the SQL that
    fails unless the runner lock is still ours (``RunnerLock.held_check``; the preview
    describes it), ``state`` the session each file starts from and is put back to.
    """

    lock_timeout: str
    held_check: str
    state: SessionState
    tables: LedgerTables
    ctx: RunContext

    # --- pieces ---------------------------------------------------------------------------

    def bounds(self, lock_timeout: str | None = None) -> Message:
        """The runner's settings for one transaction (implicit or not): SET LOCAL only."""
        timeout = self.lock_timeout if lock_timeout is None else lock_timeout
        return ours(
            f"SET LOCAL lock_timeout = {literal(timeout)}",
            "SET LOCAL synchronous_commit = off",
            f"SET LOCAL client_connection_check_interval = {literal(CLIENT_CHECK)}",
        )

    def held(self) -> Part:
        return (self.held_check, None)

    def opening(self, preamble: Sequence[Statement] = ()) -> Message:
        """BEGIN, the SETs a file wrote before its BEGIN, our bounds and limits, the lock check."""
        return [
            ("BEGIN", None),
            *[(s.text, s) for s in preamble],
            *self.bounds(),
            *ours(*MIGRATION_LIMITS),
            self.held(),
        ]

    # --- a transactional file -------------------------------------------------------------

    def transaction(self, script: Script, rows: Sequence[str]) -> list[Message]:
        """One message per statement (one for an empty body), in one transaction.

        BEGIN, the preamble and the runner's bounds travel with the first statement;
        the runner's lock_timeout is set again after each statement (the file may have
        changed it); the session restore, the lock check, ``rows`` and COMMIT travel
        with the last.
        """
        tail: Message = [
            *ours(*self.state.restore()),
            *self.bounds(),
            self.held(),
            *ours(*rows),
            ("COMMIT", "COMMIT"),
        ]
        statements = script.statements or (None,)
        messages: list[Message] = []
        for index, statement in enumerate(statements):
            head = self.opening(script.preamble) if index == 0 else []
            body: Message = [(statement.text, statement)] if statement is not None else []
            last = index == len(statements) - 1
            messages.append([*head, *body, *(tail if last else self.bounds()[:1])])
        return messages

    # --- a no-transaction file ------------------------------------------------------------

    def progress(self, m: Migration, statement: Statement) -> Message:
        """The statement's progress row, written as the role the runner connected as."""
        if statement.kind == "VariableSetStmt":  # session state, not progress
            return []
        row = ledger.record_statement_done(self.tables, m.version, m.checksum, statement.index)
        return [*ours(*self.state.as_runner(local=True)), (row, None)]

    def autocommit(self, m: Migration, statement: Statement) -> Message:
        """The statement in the implicit transaction of one message, with our bounds
        (no lock_timeout when it blocks no writer), the lock check and its progress row."""
        timeout = "0" if runs_without_lock_timeout(statement) else self.lock_timeout
        return [
            *self.bounds(timeout),
            self.held(),
            (statement.text, statement),
            *self.progress(m, statement),
        ]

    def alone(self, m: Migration, statement: Statement) -> AloneStatement:
        """The statement sent alone (``AloneStatement``), its progress row after it."""
        bound: Message = []
        reset: Message = []
        if not runs_without_lock_timeout(statement):
            kept = dict(self.state.settings).get("lock_timeout")
            bound = ours(f"SET lock_timeout = {literal(self.lock_timeout)}")
            reset = ours(f"SET lock_timeout = {literal(kept)}" if kept else "RESET lock_timeout")
        progress = self.progress(m, statement)
        return AloneStatement(
            check=[self.held()],
            bound=bound,
            statement=[(statement.text, statement)],
            reset=reset,
            progress=[*ours("SET LOCAL synchronous_commit = off"), *progress] if progress else [],
        )

    def ledger_transaction(self, rows: Sequence[str]) -> Message:
        """A finished no-transaction file's ledger rows, in one transaction that first puts
        the session back: the file's own SETs (and role) must not reach the ledger write."""
        return [
            ("BEGIN", None),
            *ours(*self.state.restore()),
            ("SET LOCAL synchronous_commit = off", None),
            self.held(),
            *ours(*rows),
            ("COMMIT", None),
        ]

    # --- a batched file -------------------------------------------------------------------

    def batch(self, text: str, statement: Statement) -> Message:
        """One batch: the statement with its bounds (``text``) after our bounds and limits."""
        return [*self.opening(), (text, statement)]

    def batch_commit(self, advance: str) -> Message:
        """The batch's progress row moved (``advance``) and its COMMIT, in the batch's
        transaction: it commits exactly once or not at all."""
        return [self.held(), (advance, None), ("COMMIT", "COMMIT")]

    def backfill_transaction(self, body: Sequence[str]) -> Message:
        """The runner's own SQL about a backfill (its key range, its ledger rows) in one
        locked, bounded transaction."""
        return [*self.opening(), *ours(*body), self.held(), ("COMMIT", None)]

    # --- ledger rows ----------------------------------------------------------------------

    def applied(self, m: Migration, action: str, duration_ms: str) -> list[str]:
        """The ledger rows of an applied forward or seed file (a forward file's progress
        rows go: they served a crashed no-transaction run of it). ``duration_ms`` is SQL."""
        rows = [
            ledger.record_applied(
                self.tables, m.kind, m.version, m.name, m.checksum, duration_ms, self.ctx
            )
        ]
        if m.kind == "forward":
            rows.append(ledger.clear_progress(self.tables, m.version))
        return [*rows, self.file_history(action, m, duration_ms)]

    def rolled_back(self, m: Migration, duration_ms: str, forget_seeds: bool) -> list[str]:
        """The ledger rows of a rolled-back file; ``forget_seeds`` makes the next apply
        re-run every seed (a rollback may have dropped their tables)."""
        rows = [
            ledger.record_removed(self.tables, "forward", m.version),
            ledger.clear_progress(self.tables, m.version),
            self.file_history("rollback", m, duration_ms),
        ]
        return [*rows, ledger.forget_seeds(self.tables)] if forget_seeds else rows

    def file_history(
        self,
        action: str,
        m: Migration,
        duration_ms: str,
        outcome: str = "ok",
        detail: str | None = None,
    ) -> str:
        return ledger.record_file_history(
            self.tables, self.ctx, action, outcome, m, duration_ms=duration_ms, detail=detail
        )
