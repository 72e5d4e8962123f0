"""SQL text through PostgreSQL's own parser: splitting, the outer BEGIN/COMMIT, classification."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sqlrunner import sqltext
from sqlrunner.errors import InvalidMigrationSet, MigrationFailed
from sqlrunner.files import NO_TRANSACTION_MARK, Migration, checksum_of, line_and_column
from sqlrunner.sqltext import (
    Statement,
    concurrent_index,
    parse_scripts,
    problems_of,
    runs_without_lock_timeout,
    script_for,
    split_statements,
)


def migration(text: str, kind: str = "forward", name: str = "0001_x") -> Migration:
    return Migration(
        kind=kind,
        version=int(name.split("_", 1)[0]),
        name=name.split("_", 1)[1],
        path=Path(f"/sql/{kind}/{name}.sql"),
        checksum=checksum_of(text.encode()),
        text=text,
        no_transaction=text.split("\n", 1)[0].strip() == NO_TRANSACTION_MARK,
    )


def body(text: str, kind: str = "forward") -> list[str]:
    return [s.text for s in script_for(migration(text, kind)).statements]


def refused(text: str, kind: str = "forward") -> str:
    with pytest.raises(InvalidMigrationSet) as caught:
        script_for(migration(text, kind))
    assert caught.value.exit_code == 2
    return str(caught.value)


def one(sql: str) -> Statement:
    (statement,) = split_statements(migration(sql))
    return statement


# --- splitting ---------------------------------------------------------------------------


def test_semicolons_inside_dollar_quotes_do_not_split() -> None:
    text = (
        "SELECT $$a; b; c$$;\n"
        "SELECT $tag$ $$ ; nested $$ ; $tag$;\n"
        "DO $do$ BEGIN PERFORM 1; PERFORM 2; END $do$;\n"
    )
    statements = split_statements(migration(text))

    assert [s.text for s in statements] == [
        "SELECT $$a; b; c$$",
        "SELECT $tag$ $$ ; nested $$ ; $tag$",
        "DO $do$ BEGIN PERFORM 1; PERFORM 2; END $do$",
    ]
    assert [s.line for s in statements] == [1, 2, 3]


def test_semicolons_inside_comments_do_not_split_and_comments_are_not_statements() -> None:
    text = (
        "-- header; with; semicolons\n"
        "/* block ; comment\n   over ; lines */\n"
        "SELECT 1; -- trailing ; comment\n"
        "/* nested /* inner ; */ still comment ; */ SELECT 2;\n"
    )
    statements = split_statements(migration(text))

    assert [s.text for s in statements] == ["SELECT 1", "SELECT 2"]
    assert [(s.line, s.column) for s in statements] == [(4, 1), (5, 44)]


def test_escaped_quotes_in_strings_do_not_split() -> None:
    text = "SELECT E'it\\'s; fine';\nSELECT 'it''s; fine';\nSELECT \"semi;colon\" FROM t;\n"
    statements = split_statements(migration(text))

    assert [s.text for s in statements] == [
        "SELECT E'it\\'s; fine'",
        "SELECT 'it''s; fine'",
        'SELECT "semi;colon" FROM t',
    ]


def test_function_bodies_stay_one_statement() -> None:
    text = (
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
        "BEGIN\n"
        "  NEW.updated_at := now();\n"
        "  RETURN NEW;\n"
        "END;\n"
        "$fn$;\n"
        "CREATE FUNCTION g(int) RETURNS int LANGUAGE sql AS 'SELECT $1; ';\n"
    )
    statements = split_statements(migration(text))

    assert len(statements) == 2
    assert statements[0].text.endswith("END;\n$fn$")
    assert statements[1].line == 7
    assert statements[0].first_line == (
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $fn$"
    )


def test_offsets_and_columns_count_characters_not_bytes() -> None:
    text = "SELECT 'héllo €'; SELECT 'ü';\nSELECT '日本'; SELECT 2;\n"
    statements = split_statements(migration(text))

    assert [s.text for s in statements] == [
        "SELECT 'héllo €'",
        "SELECT 'ü'",
        "SELECT '日本'",
        "SELECT 2",
    ]
    for s in statements:
        assert text[s.offset : s.offset + len(s.text)] == s.text
    assert [(s.line, s.column) for s in statements] == [(1, 1), (1, 19), (2, 1), (2, 14)]
    assert [s.index for s in statements] == [0, 1, 2, 3]


def syntax_error(text: str) -> MigrationFailed:
    with pytest.raises(MigrationFailed) as caught:
        split_statements(migration(text))
    assert caught.value.exit_code == 4
    assert caught.value.sqlstate == "42601"
    return caught.value


def test_a_syntax_error_is_a_sql_error_in_the_file_with_line_and_column() -> None:
    error = syntax_error("BEGIN;\nCREATE TABLE t (a int);\n  SELEC 1;\nCOMMIT;\n")

    assert (error.file, error.line, error.column) == ("forward/0001_x.sql", 3, 3)
    assert str(error) == (
        'forward/0001_x.sql:3:3: SQLSTATE 42601: syntax error at or near "SELEC" | '
        "statement: SELEC 1; | nothing was run; fix the file and run the command again"
    )


def test_a_syntax_error_after_multibyte_text_has_a_character_column() -> None:
    error = syntax_error("SELECT 'é€';\nSELECT 'ü' FROM;\n")

    assert (error.line, error.column) == (2, 16)


def test_a_syntax_error_at_the_end_of_the_file_points_after_the_last_token() -> None:
    error = syntax_error("BEGIN;\nSELECT (1\n\n")

    assert (error.line, error.column) == (2, 10)
    assert error.error.message == "syntax error at end of input"


def test_line_and_column_maps_character_offsets() -> None:
    text = "ab\ncd\n\nef"
    assert line_and_column(text, 0) == (1, 1)
    assert line_and_column(text, 1) == (1, 2)
    assert line_and_column(text, 2) == (1, 3)  # the newline itself
    assert line_and_column(text, 3) == (2, 1)
    assert line_and_column(text, 6) == (3, 1)
    assert line_and_column(text, 8) == (4, 2)


def test_line_and_column_clamps_out_of_range_offsets() -> None:
    text = "ab\ncd"
    assert line_and_column(text, -5) == (1, 1)
    assert line_and_column(text, 99) == (2, 3)


# --- the outer BEGIN / COMMIT ------------------------------------------------------------


def test_outer_begin_commit_is_removed_and_the_body_kept() -> None:
    text = "-- 0001: base\nBEGIN;\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\nCOMMIT;\n"
    script = script_for(migration(text))

    assert [s.text for s in script.statements] == [
        "CREATE TABLE t (a int)",
        "INSERT INTO t VALUES (1)",
    ]
    assert [s.line for s in script.statements] == [3, 4]


@pytest.mark.parametrize(
    ("begin", "commit"),
    [
        ("BEGIN", "COMMIT"),
        ("begin", "commit"),
        ("BEGIN TRANSACTION", "COMMIT TRANSACTION"),
        ("BEGIN WORK", "COMMIT WORK"),
        ("START TRANSACTION", "COMMIT"),
        ("BEGIN", "END"),
    ],
)
def test_every_spelling_of_the_outer_pair_is_recognised(begin: str, commit: str) -> None:
    assert body(f"{begin};\nSELECT 1;\n{commit};\n") == ["SELECT 1"]


def test_begin_and_commit_inside_a_function_body_are_not_the_outer_pair() -> None:
    text = "BEGIN;\nDO $$ BEGIN PERFORM 1; END $$;\nSELECT 'COMMIT;';\n-- COMMIT;\nCOMMIT;\n"
    assert body(text) == ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 'COMMIT;'"]


def test_set_lock_timeout_and_statement_timeout_may_precede_begin() -> None:
    text = (
        "SET lock_timeout = '5s';\nSET statement_timeout TO '10min';\nBEGIN;\nSELECT 1;\nCOMMIT;\n"
    )
    assert body(text) == ["SELECT 1"]


@pytest.mark.parametrize(
    "before",
    [
        "SET search_path = app",
        "SET LOCAL lock_timeout = '5s'",
        "CREATE TABLE t (a int)",
        "SELECT 1",
        "SET ROLE admin",
    ],
)
def test_anything_else_before_begin_is_refused_with_its_position(before: str) -> None:
    message = refused(f"-- header\n{before};\nBEGIN;\nSELECT 1;\nCOMMIT;\n")

    assert message.startswith("forward/0001_x.sql:2:1: ")
    assert "only SET lock_timeout / statement_timeout may precede BEGIN" in message
    assert before in message


@pytest.mark.parametrize(
    ("statement", "line"),
    [
        ("COMMIT;\nBEGIN", 4),  # a second BEGIN/COMMIT pair
        ("ROLLBACK", 4),
        ("ABORT", 4),
        ("END", 4),
        ("SAVEPOINT s1", 4),
        ("RELEASE SAVEPOINT s1", 4),
        ("ROLLBACK TO SAVEPOINT s1", 4),
        ("COMMIT AND CHAIN", 4),
        ("BEGIN", 4),
        ("PREPARE TRANSACTION 'x'", 4),
    ],
)
def test_transaction_control_inside_the_pair_is_refused_with_its_position(
    statement: str, line: int
) -> None:
    text = f"BEGIN;\nCREATE TABLE a (x int);\n\n  {statement};\nCREATE TABLE b (x int);\nCOMMIT;\n"
    message = refused(text)

    assert message.startswith(f"forward/0001_x.sql:{line}:3: ")
    assert "transaction control inside BEGIN ... COMMIT" in message


def test_commit_and_chain_as_the_last_statement_is_refused() -> None:
    message = refused("BEGIN;\nSELECT 1;\nCOMMIT AND CHAIN;\n")

    assert re.match(r"forward/0001_x\.sql:3:1: ", message), message
    assert "COMMIT AND CHAIN" in message


def test_missing_commit_is_refused_with_a_position() -> None:
    message = refused("BEGIN;\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n")

    assert message.startswith("forward/0001_x.sql:3:1: ")
    assert "COMMIT" in message


def test_statements_after_the_commit_are_refused_with_a_position() -> None:
    message = refused("BEGIN;\nSELECT 1;\nCOMMIT;\nCREATE TABLE late (a int);\n")

    assert message.startswith("forward/0001_x.sql:4:1: ")
    assert "CREATE TABLE late" in message


def test_missing_begin_is_refused_with_a_position() -> None:
    message = refused("-- no transaction here\nCREATE TABLE t (a int);\nSELECT 1;\n")

    assert message.startswith("forward/0001_x.sql:2:1: ")
    assert "BEGIN" in message and "no-transaction" in message


def test_commit_without_begin_is_refused_with_a_position() -> None:
    message = refused("CREATE TABLE t (a int);\nCOMMIT;\n")

    assert message.startswith("forward/0001_x.sql:1:1: ")
    assert "BEGIN" in message


@pytest.mark.parametrize("kind", ["forward", "rollback", "seed", "verify"])
@pytest.mark.parametrize(
    "text", ["", "\n\n", "-- a placeholder\n", "/* nothing\n here */\n;\n", ";"]
)
def test_an_empty_or_comment_only_file_is_a_file_with_nothing_in_it(text: str, kind: str) -> None:
    assert body(text, kind) == []
    assert body(f"{NO_TRANSACTION_MARK}\n{text}", kind) == []


def test_begin_with_options_is_refused() -> None:
    message = refused("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;\n")

    assert message.startswith("forward/0001_x.sql:1:1: ")
    assert "BEGIN options are not supported" in message


def test_an_empty_pair_is_a_valid_file_with_no_statements() -> None:
    assert body("SET lock_timeout = '5s';\n\nBEGIN;\n\nCOMMIT;\n") == []


@pytest.mark.parametrize("kind", ["rollback", "seed"])
def test_rollback_and_seed_files_follow_the_same_rules(kind: str) -> None:
    assert body("BEGIN;\nSELECT 1;\nCOMMIT;\n", kind) == ["SELECT 1"]
    assert "transaction control inside" in refused("BEGIN;\nROLLBACK;\nCOMMIT;\n", kind)


# --- no-transaction and verify files -----------------------------------------------------


def test_no_transaction_file_keeps_every_statement() -> None:
    text = (
        f"{NO_TRANSACTION_MARK}\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\n"
        "ALTER TABLE t VALIDATE CONSTRAINT c;\n"
    )
    script = script_for(migration(text))

    assert [s.line for s in script.statements] == [2, 3]
    assert script.statements[0].text.startswith("CREATE INDEX CONCURRENTLY")


@pytest.mark.parametrize("control", ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT a", "END"])
def test_no_transaction_file_refuses_transaction_control(control: str) -> None:
    message = refused(f"{NO_TRANSACTION_MARK}\nSELECT 1;\n{control};\n")

    assert message.startswith("forward/0001_x.sql:3:1: ")
    assert "transaction control is not allowed in this file" in message


def test_verify_file_runs_as_is_and_refuses_transaction_control() -> None:
    assert body("SELECT 'c', true, 'd';\nSELECT 'e', false, 'f';\n", "verify") == [
        "SELECT 'c', true, 'd'",
        "SELECT 'e', false, 'f'",
    ]
    message = refused("SELECT 'c', true, '';\nCOMMIT;\n", "verify")
    assert message.startswith("verify/0001_x.sql:2:1: ")


# --- classification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "unbounded"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", True),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON s.t (a)", True),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", True),
        ("ALTER TABLE t VALIDATE CONSTRAINT c", True),
        ("CREATE INDEX i ON t (a)", False),
        ("DROP INDEX i", False),
        ("ALTER TABLE t ADD COLUMN b int", False),
        ("ALTER TABLE t VALIDATE CONSTRAINT c, ADD COLUMN b int", False),
        ("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID", False),
        ("DROP TABLE t", False),
        ("SELECT 1", False),
    ],
)
def test_only_statements_that_never_block_writers_run_without_lock_timeout(
    sql: str, unbounded: bool
) -> None:
    assert runs_without_lock_timeout(one(sql)) is unbounded


def test_concurrent_index_names_table_and_index() -> None:
    assert concurrent_index(one("CREATE INDEX CONCURRENTLY i_a ON t (a)")) == (None, "t", "i_a")
    assert concurrent_index(
        one("CREATE INDEX CONCURRENTLY IF NOT EXISTS i_b ON app.orders (b)")
    ) == ("app", "orders", "i_b")


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX i ON t (a)",
        "CREATE INDEX CONCURRENTLY ON t (a)",  # no name: nothing to look for afterwards
        "DROP INDEX CONCURRENTLY i",
        "SELECT 1",
    ],
)
def test_concurrent_index_is_none_for_everything_else(sql: str) -> None:
    assert concurrent_index(one(sql)) is None


# --- psql meta-commands ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "command", "advice"),
    [
        ("\\set ON_ERROR_STOP on\nBEGIN;\nCOMMIT;\n", "1:1", "\\set: ", "always stops at the"),
        ("BEGIN;\n\\set owner app\nCOMMIT;\n", "2:1", "\\set: ", "write the value itself"),
        ("BEGIN;\n  \\i common.sql\nCOMMIT;\n", "2:3", "\\i: ", "included file's SQL here"),
        ("BEGIN;\n\\echo creating t\nCOMMIT;\n", "2:1", "\\echo: ", "RAISE NOTICE"),
        ("BEGIN;\nSELECT format('GRANT ...') \\gexec\nCOMMIT;\n", "2:28", "\\gexec: ", "DO block"),
        ("BEGIN;\nSELECT 'é' \\if :x\nCOMMIT;\n", "2:12", "\\if: ", "IF ... END IF"),
        ("BEGIN;\n\\timing on\nCOMMIT;\n", "2:1", "\\timing: ", "delete it"),
    ],
)
def test_a_psql_meta_command_is_named_with_its_position_and_what_to_write_instead(
    text: str, where: str, command: str, advice: str
) -> None:
    message = refused(text)

    assert message.startswith(f"forward/0001_x.sql:{where}: psql meta-command {command}")
    assert "sqlrunner does not run psql meta-commands; " in message
    assert advice in message


@pytest.mark.parametrize(
    ("statement", "variable", "column"),
    [("GRANT SELECT ON t TO :role", ":role", 22), ('CREATE SCHEMA :"app"', ':"app"', 15)],
)
def test_a_psql_variable_is_named_as_such(statement: str, variable: str, column: int) -> None:
    assert refused(f"BEGIN;\n{statement};\nCOMMIT;\n") == (
        f"forward/0001_x.sql:2:{column}: psql variable {variable}: sqlrunner substitutes no "
        "psql variables; write the value itself instead"
    )
    assert body("BEGIN;\nSELECT (ARRAY[1, 2])[1:2], ':role';\nCOMMIT;\n") != []


def test_backslashes_inside_strings_dollar_quotes_and_comments_are_sql() -> None:
    text = (
        "BEGIN;\n"
        "SELECT E'\\\\set x', '\\i y';\n"
        "-- \\echo in a comment\n"
        "DO $$ BEGIN RAISE NOTICE '\\gexec'; END $$;\n"
        "COMMIT;\n"
    )
    assert len(body(text)) == 2


# --- the whole set at once ---------------------------------------------------------------


def test_parse_scripts_reports_every_broken_file_at_once() -> None:
    good = migration("BEGIN;\nSELECT 1;\nCOMMIT;\n", name="0001_good")
    unwrapped = migration("SELECT 1;\n", name="0002_unwrapped")
    meta = migration("BEGIN;\n\\echo hi\nCOMMIT;\n", "rollback", name="0003_meta")

    with pytest.raises(InvalidMigrationSet) as caught:
        parse_scripts([good, unwrapped], also_valid=[meta])

    assert [(p.path, p.line, p.column) for p in caught.value.problems] == [
        ("forward/0002_unwrapped.sql", 1, 1),
        ("rollback/0003_meta.sql", 2, 1),
    ]
    assert str(caught.value).startswith("2 problems: forward/0002_unwrapped.sql:1:1: must be")


def test_a_syntax_error_anywhere_makes_it_a_sql_error_naming_the_other_problems() -> None:
    unwrapped = migration("SELECT 1;\n", name="0001_unwrapped")
    typo = migration("BEGIN;\nCREATE TABEL t (a int);\nCOMMIT;\n", "rollback", name="0002_typo")

    with pytest.raises(MigrationFailed) as caught:
        parse_scripts([unwrapped], also_valid=[typo])

    assert (caught.value.file, caught.value.line, caught.value.column) == (
        "rollback/0002_typo.sql",
        2,
        8,
    )
    assert "nothing was run" in str(caught.value)
    assert "other problems: forward/0001_unwrapped.sql:1:1: must be wrapped" in str(caught.value)


def test_parse_scripts_returns_only_the_files_that_run() -> None:
    run = migration("BEGIN;\nSELECT 1;\nCOMMIT;\n", name="0001_run")
    checked = migration("BEGIN;\nSELECT 2;\nCOMMIT;\n", "rollback", name="0001_run")

    assert [s.migration for s in parse_scripts([run], also_valid=[checked])] == [run]


def test_problems_of_lists_without_raising() -> None:
    assert problems_of(migration("BEGIN;\nSELECT 1;\nCOMMIT;\n")) == ()
    (problem,) = problems_of(migration("BEGIN;\nSELEC 1;\nCOMMIT;\n"))
    assert (problem.line, problem.column, problem.sqlstate) == (2, 1, "42601")


# --- bounded and linear ------------------------------------------------------------------


def test_a_file_over_the_statement_limit_is_refused_before_its_tree_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqltext, "MAX_STATEMENTS", 3)
    decoded: list[str] = []
    monkeypatch.setattr(sqltext.json, "loads", lambda s: decoded.append(s))  # type: ignore[func-returns-value]

    message = refused("BEGIN;\n" + "SELECT 1;\n" * 3 + "COMMIT;\n")

    assert message == (
        "forward/0001_x.sql: 5 statements is over the limit of 3 for one file: split it, "
        "or load bulk data with COPY outside migrations"
    )
    assert decoded == []
    monkeypatch.undo()
    monkeypatch.setattr(sqltext, "MAX_STATEMENTS", 3)
    assert "over the limit" in refused("SELECT 1; SELECT 2; SELECT 3; SELECT 4")  # no final ;


def test_a_file_is_parsed_by_one_call_to_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = sqltext.parse_sql_json

    def counting(text: str) -> str:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(sqltext, "parse_sql_json", counting)
    text = "BEGIN;\n" + "SELECT 'é';\n" * 500 + "COMMIT;\n"

    assert len(body(text)) == 500
    assert len(calls) == 1


@pytest.mark.timeout(20, func_only=True)  # not the session teardown that may follow
def test_splitting_is_linear_in_the_number_of_statements() -> None:
    """40,000 multi-line non-ASCII statements: about a second when linear; the quadratic
    position lookups this replaces took over a minute (200,000 took six)."""
    count = 40_000
    text = "BEGIN;\n" + "".join(f"INSERT INTO t\nVALUES ({i}, 'é€');\n" for i in range(count))
    statements = script_for(migration(text + "COMMIT;\n")).statements

    assert len(statements) == count
    last = statements[-1]
    assert (last.line, last.column, last.offset) == (2 * count, 1, text.rindex("INSERT"))
    assert last.text == f"INSERT INTO t\nVALUES ({count - 1}, 'é€')"
