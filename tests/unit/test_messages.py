"""What each round trip carries (messages.py), pinned without a database: the parts of
each message, in order, and who owns each (a failure is located by its owner)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqlrunner.files import NO_TRANSACTION_MARK, Migration, checksum_of
from sqlrunner.ledger import LedgerTables, RunContext
from sqlrunner.locking import MIGRATION_LIMITS
from sqlrunner.messages import Messages
from sqlrunner.session import SessionState
from sqlrunner.sqltext import Script, Statement, script_for

HELD = "SELECT 'the lock is ours'"


def migration(text: str, name: str = "0001_x") -> Migration:
    return Migration(
        kind="forward",
        version=int(name.split("_", 1)[0]),
        name=name.split("_", 1)[1],
        path=Path(f"/sql/forward/{name}.sql"),
        checksum=checksum_of(text.encode()),
        text=text,
        no_transaction=text.split("\n", 1)[0].strip() == NO_TRANSACTION_MARK,
    )


def messages(settings: tuple[tuple[str, str], ...] = ()) -> Messages:
    state = SessionState("app", "app", settings)
    return Messages("200ms", HELD, state, LedgerTables(), RunContext("run", "host pid 1", "0"))


def script(text: str) -> Script:
    return script_for(migration(text))


def test_a_transactional_file_is_one_message_per_statement_begin_first_commit_last() -> None:
    s = script(
        "SET lock_timeout = '1s';\nBEGIN;\nCREATE TABLE t (a int);\nALTER TABLE t ADD b int;\nCOMMIT;\n"
    )
    first, last = messages().transaction(s, ["INSERT ledger row"])
    create, alter = s.statements
    assert [q for q, _ in first[:2]] == ["BEGIN", "SET lock_timeout = '1s'"]
    assert first[1][1] is s.preamble[0]  # the file's own SET is the file's, for its errors
    assert first[-3:] == [
        (HELD, None),
        (create.text, create),
        ("SET LOCAL lock_timeout = '200ms'", None),
    ]
    assert [q for q, _ in first].count(MIGRATION_LIMITS[0]) == 1
    assert last[0] == (alter.text, alter)
    assert last[1] == ("RESET ALL", None)  # the session restore comes before the ledger rows
    assert last[-3:] == [(HELD, None), ("INSERT ledger row", None), ("COMMIT", "COMMIT")]


def test_an_empty_transactional_file_is_still_one_message_that_records_it() -> None:
    (only,) = messages().transaction(script("BEGIN;\nCOMMIT;\n"), ["INSERT ledger row"])
    assert only[0] == ("BEGIN", None) and only[-1] == ("COMMIT", "COMMIT")
    assert not any(isinstance(owner, Statement) for _, owner in only)


def test_a_no_transaction_statement_shares_its_message_with_its_progress_row() -> None:
    s = script(
        f"{NO_TRANSACTION_MARK}\nSET statement_timeout = 0;\nALTER TABLE t VALIDATE CONSTRAINT c;\n"
    )
    set_, validate = s.statements
    said = messages()
    setting = said.autocommit(s.migration, set_)
    assert setting[0] == ("SET LOCAL lock_timeout = '200ms'", None)
    assert setting[-1] == (set_.text, set_)  # a SET is session state: no progress row
    validating = said.autocommit(s.migration, validate)
    assert validating[0] == ("SET LOCAL lock_timeout = '0'", None)  # it blocks no writer
    assert validating[4] == (validate.text, validate)
    assert "sqlrunner_ledger_progress" in validating[-1][0] and validating[-1][1] is None


def test_a_statement_that_runs_alone_gets_a_session_lock_timeout_reset_to_the_sessions() -> None:
    s = script(f"{NO_TRANSACTION_MARK}\nVACUUM t;\nCREATE INDEX CONCURRENTLY i ON t (a);\n")
    vacuum, build = s.statements
    said = messages(settings=(("lock_timeout", "5s"),))
    alone = said.alone(s.migration, vacuum)
    assert [[q for q, _ in m] for m in alone.in_order()[:4]] == [
        [HELD],
        ["SET lock_timeout = '200ms'"],
        [vacuum.text],
        ["SET lock_timeout = '5s'"],
    ]
    assert alone.progress[0] == ("SET LOCAL synchronous_commit = off", None)
    concurrent = said.alone(s.migration, build)
    assert concurrent.bound == [] and concurrent.reset == []  # SHARE UPDATE EXCLUSIVE
    assert len(concurrent.in_order()) == 3


def test_a_batch_commits_with_its_progress_row_and_the_ledger_rows_with_the_lock_check() -> None:
    said = messages()
    batch_statement = script("BEGIN;\nUPDATE t SET a = 1;\nCOMMIT;\n").statements[0]
    batch = said.batch("UPDATE t SET a = 1 WHERE id >= 1 AND id < 11", batch_statement)
    assert batch[0] == ("BEGIN", None) and batch[-2] == (HELD, None)
    assert batch[-1][1] is batch_statement
    assert said.batch_commit("UPDATE progress") == [
        (HELD, None),
        ("UPDATE progress", None),
        ("COMMIT", "COMMIT"),
    ]
    final = said.backfill_transaction(["INSERT ledger row"])
    assert final[-3:] == [("INSERT ledger row", None), (HELD, None), ("COMMIT", None)]


def test_a_forward_file_forgets_its_progress_and_a_seed_has_none() -> None:
    said = messages()
    forward = migration("BEGIN;\nSELECT 1;\nCOMMIT;\n")
    rows = said.applied(forward, "apply", "1")
    assert len(rows) == 3 and "sqlrunner_ledger_progress" in rows[1]
    seeded = said.applied(replace(forward, kind="seed"), "seed", "1")
    assert len(seeded) == 2
    assert not any("sqlrunner_ledger_progress" in row for row in seeded)
