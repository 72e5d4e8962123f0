"""Each file starts from the session the run started with, as under ``psql -f`` per file,
and a caller's connection is handed back exactly as it came."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

import sqlrunner

from .conftest import SqlSet, lock_holder, query, scalar, seconds_to_give_up

SEEN = """BEGIN;
INSERT INTO seen SELECT {label!r}, current_setting('search_path'), current_setting('TimeZone'),
  current_setting('session_replication_role'), current_user, session_user,
  current_setting('statement_timeout'), coalesce(current_setting('app.flag', true), ''),
  (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory');
COMMIT;
"""
SEEN_NO_TX = "-- sqlrunner: no-transaction\n" + SEEN.removeprefix("BEGIN;\n").removesuffix(
    "COMMIT;\n"
)
TABLE = """BEGIN;
CREATE TABLE seen (label text, search_path text, timezone text, replication_role text,
                   current_role_ text, session_role text, statement_timeout text, flag text,
                   advisory_locks bigint);
CREATE SCHEMA app;
COMMIT;
"""
# Everything a file can leave in a session, transactional or not.
MESSY = """SET search_path TO app, public;
SET timezone = 'Asia/Kathmandu';
SET session_replication_role = replica;
SET statement_timeout = '17s';
SELECT set_config('app.flag', 'on', false);
SELECT pg_advisory_lock(4242);
SET ROLE {role};
"""


@pytest.fixture
def role(dsn: str) -> Iterator[str]:
    """A role without any privilege on sqlrunner's tables."""
    name = f"reader_{os.getpid()}_{time.monotonic_ns() % 100000}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name}")
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


def fresh_session(dsn: str) -> tuple[object, ...]:
    """What a file sees in a fresh psql session."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('search_path'), current_setting('TimeZone'), "
            "current_setting('session_replication_role'), current_user, session_user, "
            "current_setting('statement_timeout'), coalesce(current_setting('app.flag', true), ''),"
            " 0::bigint"
        ).fetchone()
    assert row is not None
    return row


def test_search_path_set_by_one_file_does_not_reach_the_next(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_app.sql": "BEGIN;\nCREATE SCHEMA app;\n"
            "SET search_path TO app, public;\nCOMMIT;\n",
            "forward/0002_b.sql": "BEGIN;\nCREATE TABLE b (id int);\nCOMMIT;\n",
        }
    )
    sqlrunner.apply(dsn, root)
    assert scalar(dsn, "SELECT to_regclass('public.b')::text") == "b"
    assert scalar(dsn, "SELECT to_regclass('app.b')") is None


@pytest.mark.parametrize("messy_kind", ["transactional", "no-transaction"])
def test_no_session_state_leaks_from_one_file_into_the_next(
    dsn: str, sql_set: SqlSet, role: str, messy_kind: str
) -> None:
    messy = MESSY.format(role=role)
    if messy_kind == "transactional":
        messy = f"BEGIN;\n{messy}COMMIT;\n"
    else:
        messy = f"-- sqlrunner: no-transaction\n{messy}"
    root = sql_set(
        {
            "forward/0001_table.sql": TABLE,
            "forward/0002_messy.sql": messy,
            "forward/0003_seen.sql": SEEN.format(label="transactional"),
            "forward/0004_again.sql": messy.replace("4242", "4243"),
            "forward/0005_seen.sql": SEEN_NO_TX.format(label="no-transaction"),
        }
    )
    report = sqlrunner.apply(dsn, root)
    assert [r.version for r in report.applied] == [1, 2, 3, 4, 5]
    expected = fresh_session(dsn)
    assert query(dsn, "SELECT * FROM seen ORDER BY label DESC") == [
        ("transactional", *expected),
        ("no-transaction", *expected),
    ]
    # ... and the ledger rows were written as the role the runner connected as
    assert query(dsn, "SELECT DISTINCT applied_by FROM sqlrunner_ledger") == [(expected[3],)]


def test_a_file_that_sets_role_is_recorded_as_the_runner_role(
    dsn: str, sql_set: SqlSet, role: str
) -> None:
    root = sql_set(
        {
            "forward/0001_table.sql": TABLE,
            "forward/0002_as_reader.sql": f"BEGIN;\nSET ROLE {role};\n"
            "SELECT count(*) FROM pg_class;\nCOMMIT;\n",
            "forward/0003_authorization.sql": f"BEGIN;\nSET SESSION AUTHORIZATION {role};\n"
            "SELECT 1;\nCOMMIT;\n",
            "forward/0004_no_tx.sql": f"-- sqlrunner: no-transaction\nSET ROLE {role};\n"
            "SELECT 1;\nSELECT 2;\n",
        }
    )
    sqlrunner.apply(dsn, root)
    runner = fresh_session(dsn)[3]
    assert query(dsn, "SELECT version, applied_by FROM sqlrunner_ledger ORDER BY 1") == [
        (1, runner),
        (2, runner),
        (3, runner),
        (4, runner),
    ]
    assert query(dsn, "SELECT DISTINCT by FROM sqlrunner_ledger_history") == [(runner,)]


def test_trailing_comment_after_the_last_token_is_not_a_problem(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": "BEGIN;\nCREATE TABLE t (id int) -- the t table\n;\nCOMMIT;\n",
            "rollback/0001_t.sql": "BEGIN;\nDROP TABLE t -- gone\n;\nCOMMIT;\n",
            "forward/0002_u.sql": "BEGIN;\nCREATE TABLE u (id int); -- the u table\nCOMMIT;\n",
            "forward/0003_idx.sql": "-- sqlrunner: no-transaction\n"
            "CREATE INDEX CONCURRENTLY t_id_idx ON t (id) -- concurrently\n;\n"
            "ALTER TABLE t ADD COLUMN note text -- a note\n;\n",
            "forward/0004_empty_body.sql": "BEGIN; -- nothing yet\nCOMMIT; -- really\n",
            "rollback/0004_empty_body.sql": "BEGIN;\nCOMMIT; -- nothing\n",
            "rollback/0003_idx.sql": "-- sqlrunner: no-transaction\n"
            "DROP INDEX CONCURRENTLY IF EXISTS t_id_idx -- gone\n;\n"
            "ALTER TABLE t DROP COLUMN IF EXISTS note -- gone\n;\n",
            "rollback/0002_u.sql": "BEGIN;\nDROP TABLE u; -- the u table\nCOMMIT;\n",
        }
    )
    assert len(sqlrunner.apply(dsn, root).applied) == 4
    assert scalar(dsn, "SELECT to_regclass('t_id_idx')::text") == "t_id_idx"
    assert len(sqlrunner.rollback(dsn, root, steps=4).rolled_back) == 4
    assert scalar(dsn, "SELECT to_regclass('t')") is None
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger") == 0


def test_statement_timeout_before_begin_is_in_force(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_slow.sql": "SET statement_timeout = '100ms';\nBEGIN;\n"
            "CREATE TABLE a (id int);\nSELECT pg_sleep(2);\nCOMMIT;\n"
        }
    )
    started = time.monotonic()
    with pytest.raises(sqlrunner.MigrationFailed) as failure:
        sqlrunner.apply(dsn, root)
    assert time.monotonic() - started < 1.5
    error = failure.value.error
    assert (error.line, error.column, error.sqlstate) == (4, 1, "57014")
    assert str(failure.value).endswith("the file was rolled back; fix it and run apply again")
    assert scalar(dsn, "SELECT to_regclass('a')") is None
    assert scalar(dsn, "SELECT current_setting('statement_timeout')") == "0"


@pytest.mark.parametrize(
    "undo",
    [
        "DISCARD ALL;\n",
        "RESET ALL;\n",
        "SELECT set_config('lock_timeout', '0', false);\n",
        "SET lock_timeout = 0;\n",
    ],
)
def test_no_transaction_file_cannot_lift_the_runners_lock_timeout(
    dsn: str, sql_set: SqlSet, undo: str
) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            "forward/0002_alter.sql": "-- sqlrunner: no-transaction\n"
            + undo
            + "ALTER TABLE t ADD COLUMN note text;\n",
        }
    )
    assert seconds_to_give_up(dsn, root, "t") < 5
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE version = 2") == 0


def test_transactional_file_cannot_lift_the_runners_lock_timeout(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            "forward/0002_alter.sql": "BEGIN;\nSET lock_timeout = 0;\n"
            "SELECT set_config('lock_timeout', '0', true);\n"
            "ALTER TABLE t ADD COLUMN note text;\nCOMMIT;\n",
        }
    )
    assert seconds_to_give_up(dsn, root, "t") < 5


CALLER_SETTINGS = {
    "TimeZone": "America/Havana",
    "search_path": "app, public",
    "statement_timeout": "42s",
    "synchronous_commit": "local",
    "lock_timeout": "3s",
}


def caller_state(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, object]:
    with conn.cursor() as cur:
        values = {
            name: cur.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]  # type: ignore[index]
            for name in CALLER_SETTINGS
        }
        for name in ("client_connection_check_interval", "session_replication_role"):
            values[name] = cur.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]  # type: ignore[index]
        values["who"] = cur.execute("SELECT current_user, session_user").fetchone()
        values["locks"] = cur.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
        ).fetchone()
    conn.commit()
    values["autocommit"] = conn.autocommit
    values["prepare_threshold"] = conn.prepare_threshold
    values["status"] = conn.info.transaction_status
    return values


@pytest.fixture
def callers_conn(dsn: str, role: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A service's connection with its own settings and role, outside a transaction."""
    with psycopg.connect(dsn, autocommit=False, prepare_threshold=2) as conn:
        for name, value in CALLER_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.commit()
        yield conn


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"forward/0002_ok.sql": "BEGIN;\n" + MESSY + "COMMIT;\n"}, id="ok"),
        pytest.param(
            {"forward/0002_fails.sql": "BEGIN;\n" + MESSY + "SELECT 1/0;\nCOMMIT;\n"},
            id="failed-transactional",
        ),
        pytest.param(
            {"forward/0002_fails.sql": "-- sqlrunner: no-transaction\n" + MESSY + "SELECT 1/0;\n"},
            id="failed-no-transaction",
        ),
        pytest.param(
            {
                "forward/0002_ok.sql": "-- sqlrunner: no-transaction\n" + MESSY,
                "verify/0002_ok.sql": "SELECT 'locked', true, '' FROM (SELECT pg_advisory_lock(99)) l;\n",
            },
            id="ok-no-transaction-and-verify",
        ),
    ],
)
def test_callers_connection_is_handed_back_as_it_came(
    dsn: str,
    sql_set: SqlSet,
    role: str,
    callers_conn: psycopg.Connection[tuple[object, ...]],
    files: dict[str, str],
) -> None:
    root = sql_set({"forward/0001_table.sql": TABLE})
    sqlrunner.apply(dsn, root)
    for path, text in files.items():
        (root / path).parent.mkdir(exist_ok=True)
        (root / path).write_text(text.format(role=role))
    before = caller_state(callers_conn)
    with contextlib.suppress(sqlrunner.MigrationFailed):
        sqlrunner.apply(callers_conn, root)
    after = caller_state(callers_conn)
    assert after == before
    assert before["synchronous_commit"] == "local" and before["locks"] == (0,)


def test_ctrl_c_leaves_the_callers_connection_usable(
    dsn: str, sql_set: SqlSet, callers_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    root = sql_set(
        {
            "forward/0001_table.sql": TABLE,
            "forward/0002_slow.sql": "-- sqlrunner: no-transaction\n"
            "SET search_path TO app;\nSELECT pg_sleep(20);\n",
        }
    )
    before = caller_state(callers_conn)
    main = threading.get_ident()
    timer = threading.Timer(1.5, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sqlrunner.apply(callers_conn, root)
    timer.join()
    assert time.monotonic() - started < 10
    assert caller_state(callers_conn) == before
    assert callers_conn.execute("SELECT 1").fetchone() == (1,)


def test_verify_cannot_be_made_writable_or_lock(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_table.sql": TABLE + "",
            "verify/0001_table.sql": "SET TRANSACTION READ WRITE;\n"
            "SELECT 'x', nextval('s') > 0, '';\n",
        }
    )
    with pytest.raises(sqlrunner.InvalidMigrationSet, match=r"verify/0001_table.sql:1:1: SET"):
        sqlrunner.apply(dsn, root)
    assert scalar(dsn, "SELECT to_regclass('seen')") is None, "refused before anything ran"
    (root / "verify/0001_table.sql").write_text("LOCK TABLE seen;\nSELECT 'x', true, '';\n")
    with pytest.raises(sqlrunner.InvalidMigrationSet, match=r"0001_table.sql:1:1: LOCK"):
        sqlrunner.apply(dsn, root)


def test_verify_cannot_turn_read_write_at_run_time(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_seq.sql": "BEGIN;\nCREATE SEQUENCE s;\nCOMMIT;\n",
            "verify/0001_seq.sql": "SELECT set_config('transaction_read_only', 'off', true);\n"
            "SELECT 'bumped', nextval('s') > 0, '';\n",
        }
    )
    with pytest.raises(sqlrunner.VerificationFailed) as failure:
        sqlrunner.apply(dsn, root)
    assert "read-write mode must be set before any query" in str(failure.value)
    assert scalar(dsn, "SELECT last_value FROM s") == 1
    assert scalar(dsn, "SELECT is_called FROM s") is False


def test_verify_is_bounded_by_the_lock_timeout_and_releases_its_locks(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            "verify/0001_t.sql": "SELECT 'locked', true, '' FROM (SELECT pg_advisory_lock(7)) l;\n"
            "SELECT 'rows', count(*) >= 0, '' FROM t;\n",
        }
    )
    sqlrunner.apply(dsn, root)
    with lock_holder(dsn, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"):
        started = time.monotonic()
        with pytest.raises(sqlrunner.VerificationFailed, match="55P03"):
            sqlrunner.verify(dsn, root)
        assert time.monotonic() - started < 5
    with psycopg.connect(dsn, autocommit=True) as conn:
        sqlrunner.verify(conn, root)
        assert conn.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
        ).fetchone() == (0,)


def test_role_change_in_no_transaction_file_keeps_progress_rows_writable(
    dsn: str, sql_set: SqlSet, role: str
) -> None:
    root = sql_set(
        {
            "forward/0001_table.sql": TABLE,
            "forward/0002_as_reader.sql": f"-- sqlrunner: no-transaction\nSET ROLE {role};\n"
            "SELECT 1;\nSELECT 1/0;\n",
        }
    )
    with pytest.raises(sqlrunner.MigrationFailed) as failure:
        sqlrunner.apply(dsn, root)
    assert (failure.value.line, failure.value.sqlstate) == (4, "22012")
    assert query(dsn, "SELECT version, statement_index FROM sqlrunner_ledger_progress") == [(2, 1)]
