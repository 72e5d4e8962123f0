"""The converters without a database: what each source notion becomes in sqlrunner's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqlrunner.api import parse_all
from sqlrunner.conversion import SourceText, convert_script, snake_name
from sqlrunner.errors import InvalidMigrationSet, UsageError
from sqlrunner.files import load_migration_set
from sqlrunner.importing import flyway_checksum, import_from
from tests.conftest import write_files

from .sets import SETS


def _convert(text: str, tmp_path: Path | None = None, **kwargs: bool) -> tuple[str, list[str]]:
    root = tmp_path or Path(".")
    out, findings = convert_script(SourceText(root / "m.sql", text, **kwargs), root, "forward")
    return out, [f"{f.severity}: {f.what}" for f in findings]


@pytest.mark.parametrize("tool", sorted(SETS))
def test_every_imported_set_is_a_valid_sqlrunner_set(tool: str, tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", SETS[tool])
    import_from(tool, src, tmp_path / "sql")
    files = load_migration_set(tmp_path / "sql")
    assert files.forward
    parse_all([*files.forward, *files.rollback, *files.seed, *files.verify])


def test_missing_last_semicolon_is_added_before_a_trailing_comment() -> None:
    out, notes = _convert("CREATE TABLE a (id int) -- the end\n")
    assert out == "BEGIN;\nCREATE TABLE a (id int); -- the end\nCOMMIT;\n"
    assert notes == ["fixed: added the last ';'"]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE INDEX CONCURRENTLY i ON t (a)",
        "DROP INDEX CONCURRENTLY i",
        "REINDEX INDEX CONCURRENTLY i",
        "VACUUM t",
        "ALTER SYSTEM SET work_mem = '64MB'",
        "ALTER TABLE t DETACH PARTITION p CONCURRENTLY",
    ],
)
def test_statements_refused_in_a_transaction_block_make_a_no_transaction_file(
    statement: str,
) -> None:
    out, notes = _convert(f"SELECT 1;\n{statement};\n")
    assert out.startswith("-- sqlrunner: no-transaction\nSELECT 1;\n")
    assert "BEGIN" not in out
    assert any("written as no-transaction" in n for n in notes)


def test_the_tools_own_no_transaction_flag_is_kept_without_wrapping() -> None:
    out, _ = _convert("UPDATE t SET a = 1;\n", no_transaction=True)
    assert out == "-- sqlrunner: no-transaction\nUPDATE t SET a = 1;\n"


def test_an_explicit_outer_transaction_is_kept_as_written() -> None:
    text = "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n"
    assert _convert(text) == (text, [])


def test_concurrently_inside_begin_commit_is_listed_not_rewritten() -> None:
    out, notes = _convert("BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;\n")
    assert out.startswith("BEGIN;")
    assert "todo: CONCURRENTLY inside BEGIN ... COMMIT fails in PostgreSQL" in notes


def test_begin_options_are_a_todo() -> None:
    _, notes = _convert("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;\n")
    assert "todo: BEGIN with options (isolation level, read only)" in notes


def test_several_transactions_in_one_file_are_a_todo() -> None:
    _, notes = _convert("BEGIN;\nSELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\nCOMMIT;\n")
    assert "todo: transaction control other than one outer BEGIN ... COMMIT" in notes


def test_empty_placeholder_becomes_an_empty_transaction(tmp_path: Path) -> None:
    out, notes = _convert("-- nothing to do\n\n")
    assert out == "-- nothing to do\nBEGIN;\nCOMMIT;\n"
    assert notes == ["fixed: empty placeholder: written as an empty BEGIN/COMMIT pair"]


def test_psql_meta_commands_are_rewritten_or_listed(tmp_path: Path) -> None:
    (tmp_path / "common.sql").write_text("CREATE SCHEMA app;\n")
    text = (
        "\\set ON_ERROR_STOP on\n"
        "\\set owner 'app''s owner'\n"
        "\\set tbl accounts\n"
        "\\echo creating\n"
        "\\ir common.sql\n"
        "CREATE TABLE app.:tbl (who text DEFAULT :'owner', note text DEFAULT ':tbl');\n"
        "COMMENT ON TABLE app.:\"tbl\" IS :'missing';\n"
        "SELECT 1::int;\n"
        "\\connect other\n"
    )
    out, notes = _convert(text, tmp_path)
    assert "CREATE SCHEMA app;" in out
    assert (
        "CREATE TABLE app.accounts (who text DEFAULT 'app''s owner', note text DEFAULT ':tbl')"
        in out
    )
    assert 'COMMENT ON TABLE app."accounts"' in out
    assert "SELECT 1::int;" in out
    assert "-- [import: psql only] \\connect other" in out
    assert "fixed: \\ir common.sql: inlined" in notes
    assert "fixed: \\echo: psql output setting, dropped" in notes
    assert "todo: psql variable :'missing' is never set" in notes
    assert "todo: psql meta-command \\connect kept as a comment" in notes


def test_references_to_the_old_ledger_and_reference_data_are_flagged() -> None:
    _, notes = _convert(
        "DELETE FROM schema_migrations WHERE version = 3;\n"
        "INSERT INTO plans (name) VALUES ('free'), ('pro');\n"
    )
    assert "todo: refers to the old tool's ledger schema_migrations" in notes
    assert "check: INSERT INTO plans looks like reference data" in notes


def test_findings_point_at_the_source_line(tmp_path: Path) -> None:
    src = write_files(
        tmp_path / "src",
        {
            "20240101000000_a.sql": "-- migrate:up\n\n\nCREATE TABLE a (id int)\n"
            "-- migrate:down\nDROP TABLE a;\n"
        },
    )
    report = import_from("dbmate", src, tmp_path / "sql")
    assert [str(f) for f in report.findings] == [
        f"{src / '20240101000000_a.sql'}:4: fixed: added the last ';'"
    ]


def test_flyway_checksum_ignores_line_endings_and_bom(tmp_path: Path) -> None:
    (tmp_path / "lf.sql").write_bytes(b"SELECT 1;\nSELECT 2;\n")
    (tmp_path / "crlf.sql").write_bytes(b"\xef\xbb\xbfSELECT 1;\r\nSELECT 2;\r\n")
    (tmp_path / "edit.sql").write_bytes(b"SELECT 1;\nSELECT 3;\n")
    same = flyway_checksum(tmp_path / "lf.sql")
    assert same == flyway_checksum(tmp_path / "crlf.sql") != flyway_checksum(tmp_path / "edit.sql")
    assert -(2**31) <= int(same) < 2**31


def test_flyway_placeholders_and_callbacks_are_todos(tmp_path: Path) -> None:
    src = write_files(
        tmp_path / "src",
        {
            "V1__init.sql": "CREATE TABLE ${prefix}_users (id int);\n",
            "beforeMigrate.sql": "SET search_path = app;\n",
        },
    )
    report = import_from("flyway", src, tmp_path / "sql")
    whats = [f.what for f in report.findings if f.severity == "todo"]
    assert "not a V/U/R migration (a callback?)" in whats
    assert "Flyway placeholder ${...}" in whats
    assert report.needs_attention


def test_goose_go_migrations_and_envsub_are_todos(tmp_path: Path) -> None:
    src = write_files(
        tmp_path / "src",
        {
            "00001_a.sql": "-- +goose Up\n-- +goose ENVSUB ON\nCREATE ROLE ${ROLE};\n",
            "00002_b.go": "package migrations\n",
        },
    )
    whats = [f.what for f in import_from("goose", src, tmp_path / "sql").findings]
    assert "goose ENVSUB: ${VAR} is not expanded" in whats
    assert "Go migration not imported" in whats


def test_mapping_records_each_tools_ledger_key(tmp_path: Path) -> None:
    keys = {}
    for tool in ("golang-migrate", "diesel", "sqitch", "flyway", "goose"):
        src = write_files(tmp_path / tool, SETS[tool])
        import_from(tool, src, tmp_path / f"{tool}-sql")
        mapping = json.loads((tmp_path / f"{tool}-sql" / "imported.json").read_text())
        keys[tool] = {k: v["version"] for k, v in mapping["forward"].items()}
    assert keys["golang-migrate"] == {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5}
    assert keys["diesel"] == {"00000000000000": 1, "20240115101500": 2, "20240116080000": 3}
    assert keys["sqitch"] == {
        "appschema": 1,
        "users": 2,
        "insert_user@v1.0": 3,
        "users_nickname_idx": 4,
        "insert_user": 5,
    }
    assert keys["flyway"] == {"1": 1, "1.1": 2, "2": 3}
    assert keys["goose"] == {"1": 1, "2": 2, "3": 3}


def test_sqitch_verify_can_be_skipped_but_never_silently(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", SETS["sqitch"])
    report = import_from("sqitch", src, tmp_path / "sql", verify="skip")
    assert not (tmp_path / "sql" / "verify").exists()
    skipped = [f for f in report.findings if "verify script not imported" in f.what]
    assert len(skipped) == 5


def test_reimport_keeps_earlier_numbers_and_adds_new_migrations(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", SETS["goose"])
    sql_dir = tmp_path / "sql"
    import_from("goose", src, sql_dir)
    write_files(src, {"00004_add_email.sql": "-- +goose Up\nALTER TABLE users ADD email text;\n"})
    report = import_from("goose", src, sql_dir)
    assert report.kept == ("1", "2", "3")
    assert [p.name for p in report.written] == ["0004_add_email.sql", "imported.json"]
    with pytest.raises(UsageError, match="imported from goose, not dbmate"):
        import_from("dbmate", write_files(tmp_path / "db", SETS["dbmate"]), sql_dir)


def test_reimport_flags_a_source_file_edited_since_the_last_import(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", SETS["flyway"])
    import_from("flyway", src, tmp_path / "sql")
    (src / "V1__create_accounts.sql").write_text("CREATE TABLE accounts (id int);\n")
    report = import_from("flyway", src, tmp_path / "sql")
    assert [f.what for f in report.findings] == [
        "changed since the last import; its sqlrunner file was left as it was"
    ]


def test_import_refuses_a_destination_with_other_files_and_writes_nothing(tmp_path: Path) -> None:
    sql_dir = write_files(tmp_path / "sql", {"forward/0001_mine.sql": "BEGIN;\nCOMMIT;\n"})
    with pytest.raises(UsageError, match="already holds files"):
        import_from("goose", write_files(tmp_path / "src", SETS["goose"]), sql_dir)
    assert sorted(p.name for p in sql_dir.rglob("*")) == ["0001_mine.sql", "forward"]


def test_bad_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown tool 'liquibase'"):
        import_from("liquibase", tmp_path)
    with pytest.raises(UsageError, match="not a directory"):
        import_from("dbmate", tmp_path / "nope")
    with pytest.raises(InvalidMigrationSet, match="no dbmate migrations found"):
        import_from("dbmate", tmp_path)


def test_snake_name() -> None:
    assert snake_name("CreateUsersTable") == "create_users_table"
    assert snake_name("add-email index") == "add_email_index"
    assert snake_name("___") == "migration"


def test_two_source_files_with_one_version_are_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    """dbmate's version is the number before ``_``: two files sharing it would collide in
    its ledger, and keeping one would drop the other's statements."""
    src = write_files(
        tmp_path / "src",
        {
            "20200227231541_posts.sql": "-- migrate:up\ncreate table posts (id int);\n",
            "20200227231541_status.sql": "-- migrate:up\ncreate table status (id int);\n",
        },
    )
    with pytest.raises(InvalidMigrationSet, match="same version 20200227231541"):
        import_from("dbmate", src, tmp_path / "sql")
    assert not (tmp_path / "sql").exists()


def test_a_migration_without_a_down_script_is_irreversible_and_said_so(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", {"000001_a.up.sql": "CREATE TABLE a (id int);\n"})
    report = import_from("golang-migrate", src, tmp_path / "sql")
    assert [f"{f.severity}: {f.what}" for f in report.findings] == [
        "check: no down script: irreversible in sqlrunner (rollback stops in front of it)"
    ]
    assert not (tmp_path / "sql" / "rollback").exists()


def test_goose_lower_case_annotations_and_an_up_only_placeholder(tmp_path: Path) -> None:
    """goose's own PostgreSQL test set writes ``-- +goose up`` / ``statementbegin`` in lower
    case and has a file holding nothing but ``-- +goose Up``."""
    src = write_files(
        tmp_path / "src",
        {
            "00001_fn.sql": "-- +goose up\n-- +goose statementbegin\n"
            "CREATE FUNCTION one() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 1;\n"
            "END;\n$$;\n-- +goose statementend\n\n-- +goose down\nDROP FUNCTION one();\n",
            "00002_empty.sql": "-- +goose Up\n",
        },
    )
    import_from("goose", src, tmp_path / "sql")
    forward = (tmp_path / "sql" / "forward" / "0001_fn.sql").read_text()
    assert "goose" not in forward and "RETURN 1;" in forward
    assert (tmp_path / "sql" / "rollback" / "0001_fn.sql").read_text() == (
        "BEGIN;\nDROP FUNCTION one();\nCOMMIT;\n"
    )
    assert (tmp_path / "sql" / "rollback" / "0002_empty.sql").read_text() == "BEGIN;\nCOMMIT;\n"
