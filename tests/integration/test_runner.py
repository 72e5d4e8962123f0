"""The runner on a real PostgreSQL: atomicity, error positions, seeds, verify, rollback."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlrunner
from sqlrunner.report import Event

from .conftest import SqlSet, scalar, seconds_to_give_up

BASE = """SET lock_timeout = '5s';
BEGIN;
CREATE TABLE IF NOT EXISTS items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                  name text NOT NULL UNIQUE);
-- a semicolon; inside a comment, and one in a function body
CREATE OR REPLACE FUNCTION item_label(i items) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN 'item;' || i.name;
END $$;
COMMIT;
"""


def apply_fails(dsn: str, sql_set: SqlSet, files: dict[str, str]) -> sqlrunner.MigrationFailed:
    """The MigrationFailed that applying ``files`` raises (the test fails without one)."""
    with pytest.raises(sqlrunner.MigrationFailed) as failure:
        sqlrunner.apply(dsn, sql_set(files))
    return failure.value


def test_file_and_its_ledger_row_commit_together(dsn: str, sql_set: SqlSet) -> None:
    failed = apply_fails(
        dsn,
        sql_set,
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_broken.sql": "BEGIN;\nCREATE TABLE half (id int);\nSELECT 1/0;\nCOMMIT;\n",
        },
    )
    assert failed.file.endswith("forward/0002_broken.sql")
    assert (failed.line, failed.sqlstate) == (3, "22012")
    assert scalar(dsn, "SELECT to_regclass('half')") is None
    assert scalar(dsn, "SELECT to_regclass('items')") == "items"
    assert (
        scalar(dsn, "SELECT string_agg(version::text, ',' ORDER BY version) FROM sqlrunner_ledger")
        == "1"
    )
    assert (
        scalar(
            dsn,
            "SELECT count(*) FROM sqlrunner_ledger_history "
            "WHERE version = 2 AND outcome = 'failed'",
        )
        == 1
    )


def test_error_position_points_at_line_and_column(dsn: str, sql_set: SqlSet) -> None:
    failed = apply_fails(
        dsn,
        sql_set,
        {
            "forward/0001_typo.sql": "BEGIN;\nCREATE TABLE a (id int);\nSELECT id,\n       nosuch\nFROM a;\nCOMMIT;\n"
        },
    )
    error = failed.error
    assert (error.line, error.column, error.sqlstate) == (4, 8, "42703")
    assert 'column "nosuch" does not exist' in error.message
    assert error.statement == "SELECT id,"


def test_runtime_error_without_position_reports_statement_start(dsn: str, sql_set: SqlSet) -> None:
    failed = apply_fails(
        dsn,
        sql_set,
        {
            "forward/0001_dup.sql": (
                "BEGIN;\nCREATE TABLE u (v int UNIQUE);\n\n\nINSERT INTO u\nVALUES (1), (1);\nCOMMIT;\n"
            )
        },
    )
    error = failed.error
    assert (error.line, error.column, error.sqlstate) == (5, 1, "23505")
    assert error.detail is not None and "(v)=(1)" in error.detail


def test_noop_apply_costs_one_round_trip_and_takes_no_lock(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "verify/0001_base.sql": "SELECT 'items' AS check, true AS ok, '' AS detail",
        }
    )
    sqlrunner.apply(dsn, root)
    with psycopg.connect(dsn) as conn, tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        report = sqlrunner.apply(conn, root)
        conn.pgconn.untrace()
        trace.seek(0)
        sent = [line for line in trace if "\tF\t" in line and ("Query" in line or "Sync" in line)]
    assert report.applied == () and report.verification is None
    assert len(sent) == 1, sent
    assert "SELECT kind, version" in sent[0]


def test_percent_signs_and_dollar_quotes_reach_the_server_intact(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "seed/0001_items.sql": (
                "BEGIN;\nINSERT INTO items (name) VALUES ('100%s; done'), (E'it\\'s;')\n"
                "ON CONFLICT (name) DO NOTHING;\nCOMMIT;\n"
            ),
        }
    )
    sqlrunner.apply(dsn, root)
    assert (
        scalar(dsn, "SELECT string_agg(name, '|' ORDER BY name) FROM items") == "100%s; done|it's;"
    )
    assert scalar(dsn, "SELECT item_label(i) FROM items i WHERE name LIKE 'it%'") == "item;it's;"


def test_seed_runs_again_only_when_its_checksum_changes(dsn: str, sql_set: SqlSet) -> None:
    seed = "BEGIN;\nINSERT INTO items (name) VALUES ('{}') ON CONFLICT DO NOTHING;\nCOMMIT;\n"
    root = sql_set({"forward/0001_base.sql": BASE, "seed/0001_items.sql": seed.format("a")})
    assert len(sqlrunner.apply(dsn, root).seeded) == 1
    assert sqlrunner.apply(dsn, root).seeded == ()
    (root / "seed/0001_items.sql").write_text(seed.format("b"))
    assert [s.name for s in sqlrunner.apply(dsn, root).seeded] == ["items"]
    assert scalar(dsn, "SELECT count(*) FROM items") == 2


def test_verify_files_cannot_write(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "verify/0001_sneaky.sql": "INSERT INTO items (name) VALUES ('x') RETURNING 'x', true, ''",
        }
    )
    with pytest.raises(sqlrunner.VerificationFailed) as failure:
        sqlrunner.apply(dsn, root)
    report = failure.value.report
    assert isinstance(report, sqlrunner.ApplyReport) and report.verification is not None
    assert "read-only transaction" in report.verification.checks[0].detail
    assert scalar(dsn, "SELECT count(*) FROM items") == 0


def test_verify_failure_names_the_check(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "verify/0001_checks.sql": (
                "SELECT 'items empty', count(*) = 0, count(*) || ' rows' FROM items;\n"
                "SELECT 'never true', false, 'widget missing';\n"
            ),
        }
    )
    with pytest.raises(sqlrunner.VerificationFailed, match="never true: widget missing"):
        sqlrunner.apply(dsn, root)
    # The migration itself stays applied: verify reports, it does not undo.
    assert sqlrunner.status(dsn, root).up_to_date


def test_apply_to_version_stops_there_and_defers_seeds(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_more.sql": "BEGIN;\nCREATE TABLE more (id int);\nCOMMIT;\n",
            # its table comes with 0002: a partial apply runs only seeds whose tables exist
            "seed/0001_more.sql": "BEGIN;\nINSERT INTO more (id) VALUES (1);\nCOMMIT;\n",
        }
    )
    report = sqlrunner.apply(dsn, root, to=1)
    assert [r.version for r in report.applied] == [1] and report.seeded == ()
    assert any("seeds deferred" in note for note in report.notes)
    report = sqlrunner.apply(dsn, root)
    assert [r.version for r in report.applied] == [2] and len(report.seeded) == 1


def test_rollback_undoes_newest_first_and_reseeds_on_next_apply(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_tags.sql": "BEGIN;\nCREATE TABLE IF NOT EXISTS tags (t text PRIMARY KEY);\nCOMMIT;\n",
            "rollback/0002_tags.sql": "BEGIN;\nDROP TABLE IF EXISTS tags;\nCOMMIT;\n",
            "seed/0001_tags.sql": "BEGIN;\nINSERT INTO tags VALUES ('x') ON CONFLICT DO NOTHING;\nCOMMIT;\n",
        }
    )
    sqlrunner.apply(dsn, root)
    report = sqlrunner.rollback(dsn, root)  # the only row is seed data: no confirmation needed
    assert [r.version for r in report.rolled_back] == [2]
    assert scalar(dsn, "SELECT to_regclass('tags')") is None
    again = sqlrunner.apply(dsn, root)
    assert [r.version for r in again.applied] == [2] and len(again.seeded) == 1
    assert scalar(dsn, "SELECT count(*) FROM tags") == 1
    history = sqlrunner.history(dsn)
    assert [h["action"] for h in history if h["kind"] == "run"] == ["apply", "rollback", "apply"]


def test_rollback_refuses_to_drop_real_data_unless_allowed(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_notes.sql": "BEGIN;\nCREATE TABLE notes (n text);\n"
            "ALTER TABLE items ADD COLUMN colour text;\n"
            "ALTER TABLE items ADD COLUMN size text NOT NULL DEFAULT 'M';\n"
            "ALTER TABLE items ADD COLUMN tags json DEFAULT '[]';\nCOMMIT;\n",
            "rollback/0002_notes.sql": "BEGIN;\nDROP TABLE IF EXISTS notes;\n"
            "ALTER TABLE items DROP COLUMN IF EXISTS colour, DROP COLUMN IF EXISTS size, "
            "DROP COLUMN IF EXISTS tags;\nCOMMIT;\n",
        }
    )
    sqlrunner.apply(dsn, root)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO notes VALUES ('keep me'), ('and me')")
        conn.execute("INSERT INTO items (name, colour) VALUES ('a', 'red')")
        conn.execute("INSERT INTO items (name, size) VALUES ('b', 'M'), ('c', 'M')")
        conn.execute("INSERT INTO items (name, tags) VALUES ('d', NULL), ('e', '[\"x\"]')")
    with pytest.raises(sqlrunner.DataLossRefused) as refused:
        sqlrunner.rollback(dsn, root)
    assert refused.value.losses == (
        "table notes: 2 rows",
        "column items.colour: 1 values besides NULL and its default",
        "column items.tags: 1 values besides NULL and its default",
    )
    assert scalar(dsn, "SELECT count(*) FROM notes") == 2
    asked: list[str] = []
    sqlrunner.rollback(dsn, root, confirm=lambda losses: asked.extend(losses) or True)
    assert len(asked) == 3 and scalar(dsn, "SELECT to_regclass('notes')") is None


def test_irreversible_file_stops_rollback(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    sqlrunner.apply(dsn, root)
    with pytest.raises(sqlrunner.UsageError, match="irreversible"):
        sqlrunner.rollback(dsn, root)


def test_library_reports_progress_events_and_logs(
    dsn: str, sql_set: SqlSet, caplog: pytest.LogCaptureFixture
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    events: list[Event] = []
    with caplog.at_level("INFO", logger="sqlrunner"):
        sqlrunner.apply(dsn, root, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "file_started" and kinds[-1] == "file_finished"
    assert kinds.count("statement_started") == 2
    assert any("applied forward/0001_base.sql" in r.getMessage() for r in caplog.records)


def test_custom_ledger_schema_and_table_are_quoted(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    sqlrunner.apply(dsn, root, ledger_schema="Ops Schema", ledger_table="My-Ledger")
    assert scalar(dsn, 'SELECT count(*) FROM "Ops Schema"."My-Ledger"') == 1
    assert scalar(dsn, "SELECT to_regclass('sqlrunner_ledger')") is None
    assert sqlrunner.status(
        dsn, root, ledger_schema="Ops Schema", ledger_table="My-Ledger"
    ).up_to_date


def test_given_connection_is_left_as_it_was(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    with psycopg.connect(dsn) as conn:
        sqlrunner.apply(conn, root)
        assert conn.autocommit is False and not conn.closed
        conn.execute("SELECT 1")


def test_no_transaction_file_runs_statements_in_autocommit(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_idx.sql": "-- sqlrunner: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_name_lower_idx\n"
            "    ON items (lower(name));\n",
        }
    )
    report = sqlrunner.apply(dsn, root)
    assert report.applied[1].no_transaction
    assert (
        scalar(
            dsn,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_name_lower_idx'::regclass",
        )
        is True
    )
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger_progress") == 0


def test_sql_dir_default_is_local_sql_folder(
    dsn: str, sql_set: SqlSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql_set({"forward/0001_base.sql": BASE})
    monkeypatch.chdir(tmp_path)
    assert [r.version for r in sqlrunner.apply(dsn).applied] == [1]
    assert os.path.isdir("sql")


def _forward(listener: socket.socket, target: dict[str, str]) -> None:
    """Accept one client at a time and pump bytes to the real server (unix or TCP)."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        host = target.get("host", "localhost")
        if host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(f"{host}/.s.PGSQL.{target.get('port', '5432')}")
        else:
            upstream = socket.create_connection((host, int(target.get("port", "5432"))))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_wait_retries_the_connection_until_the_database_is_up(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late = make_conninfo(**{**params, "host": "127.0.0.1", "port": str(port)})
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def come_up() -> None:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        _forward(listener, params)

    def later() -> None:
        time.sleep(1.5)
        come_up()

    threading.Thread(target=later, daemon=True).start()
    try:
        started = time.monotonic()
        report = sqlrunner.apply(late, root, wait=20)
        assert time.monotonic() - started > 1.0
        assert [r.version for r in report.applied] == [1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # close() alone does not wake accept()
        listener.close()


def test_wait_gives_up_with_connection_failed(sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(sqlrunner.ConnectionFailed, match="after waiting 1s") as failure:
        sqlrunner.apply(f"postgresql://nobody:s3cret@127.0.0.1:{port}/x", root, wait=1)
    assert time.monotonic() - started >= 1.0
    assert "s3cret" not in str(failure.value) and "nobody:***@" in str(failure.value)


def test_role_without_create_on_database_can_migrate_once_ledger_exists(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE})
    sqlrunner.apply(dsn, root)
    role = f"migrator_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    (root / "forward/0002_more.sql").write_text("BEGIN;\nCREATE TABLE more (id int);\nCOMMIT;\n")
    as_role = make_conninfo(dsn, user=role)
    try:
        report = sqlrunner.apply(as_role, root)
        assert [r.version for r in report.applied] == [2]
        assert scalar(dsn, "SELECT applied_by FROM sqlrunner_ledger WHERE version = 2") == role
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS more")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_second_rollback_of_a_no_transaction_file_runs_every_statement_again(
    dsn: str, sql_set: SqlSet
) -> None:
    no_tx = "-- sqlrunner: no-transaction\n"
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_idx.sql": no_tx
            + "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_lower_idx ON items (lower(name));\n",
            "rollback/0002_idx.sql": no_tx + "DROP INDEX CONCURRENTLY IF EXISTS items_lower_idx;\n",
        }
    )
    for _ in range(2):
        sqlrunner.apply(dsn, root)
        assert scalar(dsn, "SELECT to_regclass('items_lower_idx')") == "items_lower_idx"
        sqlrunner.rollback(dsn, root)
        assert scalar(dsn, "SELECT to_regclass('items_lower_idx')") is None
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger_progress") == 0


def test_repair_accept_keeps_when_and_who_and_forget_seeds_reseeds(
    dsn: str, sql_set: SqlSet
) -> None:
    seed = "BEGIN;\nINSERT INTO items (name) VALUES ('a') ON CONFLICT DO NOTHING;\nCOMMIT;\n"
    root = sql_set({"forward/0001_base.sql": BASE, "seed/0001_items.sql": seed})
    sqlrunner.apply(dsn, root)
    applied_at = scalar(dsn, "SELECT applied_at FROM sqlrunner_ledger WHERE kind = 'forward'")
    (root / "forward/0001_base.sql").write_text(BASE + "-- reviewed comment\n")
    with pytest.raises(sqlrunner.ChecksumMismatch):
        sqlrunner.apply(dsn, root)
    assert "accept 0001_base" in sqlrunner.repair(dsn, root, accept=1)
    assert sqlrunner.status(dsn, root).up_to_date
    assert (
        scalar(dsn, "SELECT applied_at FROM sqlrunner_ledger WHERE kind = 'forward'") == applied_at
    )
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM items")  # a DBA undid the seed by hand
    sqlrunner.repair(dsn, root, forget_seeds=True)
    assert [s.name for s in sqlrunner.apply(dsn, root).seeded] == ["items"]
    assert scalar(dsn, "SELECT count(*) FROM items") == 1
    actions = [h["action"] for h in sqlrunner.history(dsn) if h["kind"] != "run"]
    assert actions[:3] == ["seed", "forget-seeds", "accept"]


def test_broken_set_is_reported_before_an_unreachable_database(sql_set: SqlSet) -> None:
    root = sql_set(
        {"forward/0001_a.sql": "BEGIN;\nCOMMIT;\n", "forward/01_a.sql": "BEGIN;\nCOMMIT;\n"}
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(sqlrunner.InvalidMigrationSet, match="duplicate version 0001"):
        sqlrunner.apply(f"postgresql://u@127.0.0.1:{port}/x", root)


def test_a_no_transaction_files_own_set_lock_timeout_does_not_replace_the_runners(
    dsn: str, sql_set: SqlSet
) -> None:
    # The file waits up to 30 s when run by hand; under the runner each attempt waits
    # 200 ms, also for the statement right after the file's own SET.
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_alter.sql": "-- sqlrunner: no-transaction\n"
            "SET lock_timeout = '30s';\n"
            "ALTER TABLE items ADD COLUMN IF NOT EXISTS note text;\n",
        }
    )
    waited = seconds_to_give_up(dsn, root, "items")
    assert waited < 10, f"waited {waited:.1f} s: the file's 30 s lock_timeout was used"
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE version = 2") == 0


def test_a_no_transaction_file_records_progress_for_statements_not_for_its_sets(
    dsn: str, sql_set: SqlSet
) -> None:
    failed = apply_fails(
        dsn,
        sql_set,
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_idx.sql": "-- sqlrunner: no-transaction\n"
            "SET statement_timeout = 0;\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_name_lower_idx ON items (lower(name));\n"
            "SELECT 1/0;\n",
        },
    )
    assert (failed.line, failed.sqlstate) == (4, "22012")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version, statement_index FROM sqlrunner_ledger_progress"
        ).fetchall()
    assert rows == [(2, 1)]  # the index; the SET (0) always runs again, so it has no row


def test_error_inside_a_do_block_points_at_its_line_with_context(dsn: str, sql_set: SqlSet) -> None:
    failed = apply_fails(
        dsn,
        sql_set,
        {
            "forward/0001_do.sql": "BEGIN;\nCREATE TABLE t (id int);\n"
            "DO $body$\nDECLARE n int;\nBEGIN\n  SELECT count(*) INTO n FROM t;\n"
            "  RAISE EXCEPTION 'café % rows', n;\nEND\n$body$;\nCOMMIT;\n"
        },
    )
    error = failed.error
    assert (error.line, error.column, error.sqlstate) == (7, 3, "P0001")
    assert error.message == "café 0 rows"
    assert error.context == "PL/pgSQL function inline_code_block line 5 at RAISE"
    assert error.statement == "DO $body$"
    assert "| CONTEXT: PL/pgSQL function inline_code_block line 5 at RAISE |" in str(failed)


def test_error_inside_a_function_of_the_same_file_points_into_its_body(
    dsn: str, sql_set: SqlSet
) -> None:
    failed = apply_fails(
        dsn,
        sql_set,
        {
            "forward/0001_fn.sql": "BEGIN;\n"
            "CREATE FUNCTION public.half(i int) RETURNS int LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "  RETURN 1 / (i - i);\n"
            "END $$;\n"
            "SELECT half(2);\n"
            "COMMIT;\n"
        },
    )
    error = failed.error
    assert (error.line, error.column, error.sqlstate) == (4, 3, "22012")
    assert error.context is not None and "PL/pgSQL function half(integer) line 3" in error.context
    assert error.statement == "SELECT half(2)"


def test_error_at_commit_points_at_the_commit_line(dsn: str, sql_set: SqlSet) -> None:
    failed = apply_fails(
        dsn,
        sql_set,
        {
            "forward/0001_fk.sql": "BEGIN;\n"
            "CREATE TABLE parent (id int PRIMARY KEY);\n"
            "CREATE TABLE child (parent_id int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);\n"
            "INSERT INTO child VALUES (1);\n"
            "\n"
            "COMMIT;\n"
        },
    )
    error = failed.error
    assert (error.path, error.line, error.column, error.sqlstate) == (
        "forward/0001_fk.sql",
        6,
        1,
        "23503",
    )
    assert error.statement == "COMMIT"
    assert str(failed).endswith(
        "| at COMMIT (deferred constraints and constraint triggers are checked there): "
        "the file was rolled back; fix it and run apply again"
    )
    assert scalar(dsn, "SELECT to_regclass('child')") is None
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger") == 0


def test_failed_rollback_file_advises_running_rollback_again(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_t.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            "rollback/0002_t.sql": "BEGIN;\nDROP TABLE t;\nDROP TABLE nosuch;\nCOMMIT;\n",
            "forward/0003_u.sql": "-- sqlrunner: no-transaction\nCREATE TABLE u (id int);\n",
            "rollback/0003_u.sql": "-- sqlrunner: no-transaction\nDROP TABLE u;\nDROP TABLE nosuch;\n",
        }
    )
    sqlrunner.apply(dsn, root)
    with pytest.raises(sqlrunner.MigrationFailed) as failure:
        sqlrunner.rollback(dsn, root)
    assert (failure.value.file, failure.value.line, failure.value.sqlstate) == (
        "rollback/0003_u.sql",
        3,
        "42P01",
    )
    assert str(failure.value).endswith(
        "statements before line 3 are done and recorded; fix the file if needed and run "
        "rollback again: it resumes safely"
    )
    (root / "rollback/0003_u.sql").write_text(
        "-- sqlrunner: no-transaction\nDROP TABLE IF EXISTS u;\n"
    )
    sqlrunner.rollback(dsn, root)
    with pytest.raises(sqlrunner.MigrationFailed) as failure:
        sqlrunner.rollback(dsn, root)
    assert (failure.value.file, failure.value.line, failure.value.column) == (
        "rollback/0002_t.sql",
        3,
        1,
    )
    assert str(failure.value).endswith(
        "the rollback file was rolled back, so the migration is still applied; "
        "fix the rollback file and run rollback again"
    )
    assert scalar(dsn, "SELECT to_regclass('t')") == "t"
