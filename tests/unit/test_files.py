"""Discovery of an sql/ folder: what is a migration, what is refused before anything runs."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from sqlrunner.errors import InvalidMigrationSet
from sqlrunner.files import MAX_FILE_BYTES, checksum_of, load_migration_set, read_migration_set
from tests.conftest import write_files

TX = "BEGIN;\nSELECT 1;\nCOMMIT;\n"


def write(root: Path, relative: str, content: str | bytes = TX) -> Path:
    """One file of a set (a transaction that selects 1 unless told): its path."""
    return write_files(root, {relative: content}) / relative


def refusal(root: Path) -> str:
    with pytest.raises(InvalidMigrationSet) as caught:
        load_migration_set(root)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_forward_files_are_ordered_by_numeric_version_not_by_name(tmp_path: Path) -> None:
    write(tmp_path, "forward/0010_ten.sql")
    write(tmp_path, "forward/0002_two.sql")
    write(tmp_path, "forward/9_nine.sql")
    write(tmp_path, "forward/0001_one.sql")

    files = load_migration_set(tmp_path)

    assert [(m.version, m.name) for m in files.forward] == [
        (1, "one"),
        (2, "two"),
        (9, "nine"),
        (10, "ten"),
    ]
    assert [m.label for m in files.forward] == ["0001_one", "0002_two", "9_nine", "0010_ten"]
    assert files.forward[0].display_path == "forward/0001_one.sql"


def test_every_kind_is_discovered_and_missing_folders_are_empty(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_base.sql")
    write(tmp_path, "rollback/0001_base.sql")
    write(tmp_path, "verify/0001_base.sql", "SELECT 'c', true, '';\n")

    files = load_migration_set(tmp_path)

    assert [m.kind for m in files.forward] == ["forward"]
    assert [m.kind for m in files.rollback] == ["rollback"]
    assert [m.kind for m in files.verify] == ["verify"]
    assert files.seed == ()
    assert files.rollback_for(1) is files.rollback[0]
    assert files.rollback_for(2) is None
    assert files.forward_by_version(1) is files.forward[0]


def test_an_empty_sql_dir_is_a_valid_empty_set(tmp_path: Path) -> None:
    files = load_migration_set(tmp_path)
    assert (files.forward, files.rollback, files.seed, files.verify) == ((), (), (), ())


def test_gitkeep_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "forward/.gitkeep", "")
    write(tmp_path, "seed/.keep", "")
    assert load_migration_set(tmp_path).forward == ()


def test_duplicate_version_is_refused_naming_both_files(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_create_users.sql")
    write(tmp_path, "forward/0002_add_email.sql")
    write(tmp_path, "forward/0002_add_phone.sql")

    message = refusal(tmp_path)

    assert "duplicate version 0002" in message
    assert "0002_add_email.sql" in message
    assert "0002_add_phone.sql" in message


def test_same_version_with_different_zero_padding_is_a_duplicate(tmp_path: Path) -> None:
    write(tmp_path, "forward/0003_a.sql")
    write(tmp_path, "forward/3_b.sql")

    message = refusal(tmp_path)

    assert "duplicate version 0003" in message
    assert "0003_a.sql" in message and "3_b.sql" in message


def test_duplicate_seed_versions_are_refused_too(tmp_path: Path) -> None:
    write(tmp_path, "seed/0001_countries.sql")
    write(tmp_path, "seed/0001_currencies.sql")

    message = refusal(tmp_path)

    assert message.startswith("seed/: duplicate version 0001")


def test_rollback_without_its_forward_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_base.sql")
    write(tmp_path, "rollback/0002_orphan.sql")

    message = refusal(tmp_path)

    assert "rollback/0002_orphan.sql" in message
    assert "rollback without a forward file" in message


def test_rollback_whose_name_differs_from_its_forward_is_an_orphan(tmp_path: Path) -> None:
    write(tmp_path, "forward/0002_add_email.sql")
    write(tmp_path, "rollback/0002_add_mail.sql")

    message = refusal(tmp_path)

    assert "rollback/0002_add_mail.sql" in message
    assert "forward/0002_add_mail.sql" in message


@pytest.mark.parametrize(
    "name",
    [
        "0001-create.sql",
        "0001_CreateUsers.sql",
        "create_users.sql",
        "0001_create users.sql",
        "0001_create_users.SQL",
        "0001_create_users.sql.bak",
        "README.md",
        "0001__double.sql",
        "0001_trailing_.sql",
    ],
)
def test_unknown_file_name_in_a_kind_folder_is_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path, "forward/0001_ok.sql")
    write(tmp_path, f"forward/{name}")

    message = refusal(tmp_path)

    assert f"forward/{name}: unknown file" in message
    assert "NNNN_snake_case_name.sql" in message


def test_sql_file_outside_the_kind_folders_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "0001_stray.sql")

    message = refusal(tmp_path)

    assert "0001_stray.sql" in message
    assert "outside forward/rollback/seed/verify" in message


def test_non_utf8_file_is_refused_naming_the_offending_byte(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_latin1.sql", b"BEGIN;\nSELECT 'caf\xe9';\nCOMMIT;\n")

    message = refusal(tmp_path)

    assert "forward/0001_latin1.sql" in message
    assert "not UTF-8" in message
    assert "byte 18: 0xe9" in message


def test_broken_symlink_named_like_a_migration_is_refused_as_unreadable(tmp_path: Path) -> None:
    (tmp_path / "forward").mkdir()
    (tmp_path / "forward" / "0001_gone.sql").symlink_to(tmp_path / "nowhere.sql")

    message = refusal(tmp_path)

    assert message.startswith("forward/0001_gone.sql: cannot read")
    assert "No such file" in message


def test_directory_named_like_a_migration_is_refused_as_unreadable(tmp_path: Path) -> None:
    (tmp_path / "forward" / "0001_folder.sql").mkdir(parents=True)

    message = refusal(tmp_path)

    assert message.startswith("forward/0001_folder.sql: cannot read")
    assert "directory" in message


def test_kind_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "forward", "not a folder")

    message = refusal(tmp_path)

    assert "expected a directory" in message


def test_missing_sql_dir_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "does_not_exist"

    message = refusal(missing)

    assert message == f"sql directory not found: {missing}"


def test_utf8_bom_is_stripped_from_the_text_but_counts_in_the_checksum(tmp_path: Path) -> None:
    plain = write(tmp_path, "a/forward/0001_x.sql", TX)
    bom = write(tmp_path, "b/forward/0001_x.sql", b"\xef\xbb\xbf" + TX.encode())

    with_bom = load_migration_set(bom.parents[1]).forward[0]
    without = load_migration_set(plain.parents[1]).forward[0]

    assert with_bom.text == TX
    assert not with_bom.text.startswith("\ufeff")
    assert with_bom.checksum != without.checksum


def test_no_transaction_marker_on_the_first_line_is_detected(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_tx.sql")
    write(
        tmp_path,
        "forward/0002_idx.sql",
        "-- sqlrunner: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
    )
    write(
        tmp_path,
        "forward/0003_bom.sql",
        b"\xef\xbb\xbf-- sqlrunner: no-transaction  \r\nSELECT 1;\r\n",
    )

    tx, idx, bom = load_migration_set(tmp_path).forward

    assert tx.no_transaction is False
    assert idx.no_transaction is True
    assert bom.no_transaction is True


def test_no_transaction_marker_anywhere_but_the_first_line_is_ignored(tmp_path: Path) -> None:
    write(
        tmp_path,
        "forward/0001_late.sql",
        "-- a comment first\n-- sqlrunner: no-transaction\nSELECT 1;\n",
    )
    write(tmp_path, "forward/0002_typo.sql", "-- sqlrunner: no-transactions\nSELECT 1;\n")

    late, typo = load_migration_set(tmp_path).forward

    assert late.no_transaction is False
    assert typo.no_transaction is False


def test_crlf_checkout_is_not_drift(tmp_path: Path) -> None:
    lf = "-- 0001\nBEGIN;\nCREATE TABLE t (a int);\nCOMMIT;\n"
    write(tmp_path, "lf/forward/0001_x.sql", lf)
    write(tmp_path, "crlf/forward/0001_x.sql", lf.replace("\n", "\r\n").encode())

    from_lf = load_migration_set(tmp_path / "lf").forward[0]
    from_crlf = load_migration_set(tmp_path / "crlf").forward[0]

    assert from_crlf.checksum == from_lf.checksum
    assert from_crlf.checksum == hashlib.sha256(lf.encode()).hexdigest()
    assert from_crlf.text == from_lf.text == lf


@pytest.mark.parametrize(
    "edited",
    [
        "-- 0001\nBEGIN;\nCREATE TABLE t (a int);\nCOMMIT;\n\n",  # extra blank line
        "-- 0001\nBEGIN;\nCREATE TABLE t (a int) ;\nCOMMIT;\n",  # one space
        "-- 0001\nBEGIN;\nCREATE TABLE t (a bigint);\nCOMMIT;\n",
        "-- 0001\nbegin;\nCREATE TABLE t (a int);\nCOMMIT;\n",  # case
        "-- 0001\nBEGIN;\nCREATE TABLE t (a int);\nCOMMIT;",  # no final newline
        "-- 0001\nBEGIN;\n\tCREATE TABLE t (a int);\nCOMMIT;\n",  # tab
    ],
)
def test_any_other_byte_change_changes_the_checksum(edited: str) -> None:
    original = b"-- 0001\nBEGIN;\nCREATE TABLE t (a int);\nCOMMIT;\n"
    assert checksum_of(edited.encode()) != checksum_of(original)


def test_checksum_is_sha256_hex_of_the_normalised_bytes() -> None:
    raw = "SELECT 'é';\r\n".encode()
    assert checksum_of(raw) == hashlib.sha256("SELECT 'é';\n".encode()).hexdigest()
    assert len(checksum_of(raw)) == 64


def test_text_has_lf_line_endings_whatever_the_checkout(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_x.sql", b"BEGIN;\r\nSELECT 1;\r\nCOMMIT;\r\n")
    assert load_migration_set(tmp_path).forward[0].text == "BEGIN;\nSELECT 1;\nCOMMIT;\n"


# --- values ------------------------------------------------------------------------------


def test_migrations_and_sets_are_frozen_slotted_values(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_x.sql")
    files = load_migration_set(tmp_path)
    migration = files.forward[0]

    with pytest.raises(dataclasses.FrozenInstanceError):
        migration.version = 2  # type: ignore[misc]
    assert not hasattr(migration, "__dict__") and not hasattr(files, "__dict__")
    assert list(files) == [migration]
    assert load_migration_set(tmp_path) == files


# --- refused contents --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["forward", "rollback", "seed", "verify"])
def test_a_nul_byte_anywhere_is_refused_with_its_position(tmp_path: Path, kind: str) -> None:
    write(tmp_path, "forward/0001_x.sql")
    write(tmp_path, f"{kind}/0001_x.sql", b"BEGIN;\nSELECT 'caf\xc3\xa9\x00';\nCOMMIT;\n")

    message = refusal(tmp_path)

    assert message == (
        f"{kind}/0001_x.sql:2:13: NUL byte (0x00): PostgreSQL would silently cut the file "
        "here, and nothing after it would run; remove it"
    )


def test_a_utf16_file_is_recognised_by_its_nul_bytes(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_x.sql", TX.encode("utf-16-le"))

    assert "(UTF-16? save the file as UTF-8)" in refusal(tmp_path)


def test_timestamp_versions_are_accepted_up_to_bigint(tmp_path: Path) -> None:
    write(tmp_path, "forward/20240101120000_init.sql")
    write(tmp_path, "forward/9223372036854775807_last.sql")

    assert [m.version for m in load_migration_set(tmp_path).forward] == [
        20240101120000,
        9223372036854775807,
    ]


def test_a_version_past_bigint_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "forward/9223372036854775808_x.sql")

    message = refusal(tmp_path)

    assert message.startswith("forward/9223372036854775808_x.sql: version 9223372036854775808")
    assert "bigint" in message


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, "seed/0001_big.sql", b"")
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: the limit is read from stat, not the data

    message = refusal(tmp_path)

    assert message == (
        "seed/0001_big.sql: 4,194,305 bytes is over the limit of 4,194,304 (4 MiB) for one "
        "file: split it, or load bulk data with COPY outside migrations"
    )


def test_a_verify_file_needs_a_forward_file_of_its_version_not_of_its_name(
    tmp_path: Path,
) -> None:
    write(tmp_path, "forward/0003_indexes.sql")
    write(tmp_path, "verify/0003_llm_management.sql", "SELECT 'c', true, '';\n")
    assert len(load_migration_set(tmp_path).verify) == 1

    write(tmp_path, "verify/0004_orphan.sql", "SELECT 'c', true, '';\n")

    assert refusal(tmp_path) == (
        "verify/0004_orphan.sql: verify file without a forward file of version 0004: "
        "it would never run"
    )


# --- every problem at once ---------------------------------------------------------------


def test_every_problem_of_the_set_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_a.sql")
    write(tmp_path, "forward/0001_b.sql")
    write(tmp_path, "forward/0002_Bad.sql")
    write(tmp_path, "forward/0003_nul.sql", "BEGIN;\x00\nCOMMIT;\n")
    write(tmp_path, "rollback/0009_orphan.sql")
    write(tmp_path, "stray.sql")

    with pytest.raises(InvalidMigrationSet) as caught:
        load_migration_set(tmp_path)

    assert [p.describe() for p in caught.value.problems] == [
        "forward/0002_Bad.sql: unknown file; expected NNNN_snake_case_name.sql",
        "forward/0003_nul.sql:1:7: NUL byte (0x00): PostgreSQL would silently cut the file "
        "here, and nothing after it would run; remove it",
        "forward/: duplicate version 0001: 0001_a.sql and 0001_b.sql",
        "stray.sql: SQL file outside forward/rollback/seed/verify",
        "rollback/0009_orphan.sql: rollback without a forward file forward/0009_orphan.sql",
    ]
    assert str(caught.value).startswith("5 problems: forward/0002_Bad.sql: unknown file;")


def test_read_migration_set_returns_the_readable_files_and_the_problems(tmp_path: Path) -> None:
    write(tmp_path, "forward/0001_ok.sql")
    write(tmp_path, "forward/0002_latin1.sql", b"SELECT '\xe9';\n")

    files, problems = read_migration_set(tmp_path)

    assert [m.label for m in files.forward] == ["0001_ok"]
    assert [(p.path, p.message) for p in problems] == [
        ("forward/0002_latin1.sql", "not UTF-8 (byte 8: 0xe9)")
    ]


def test_paths_are_named_from_the_working_directory_when_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "sql/forward/0001_x.sql", b"\x00")
    monkeypatch.chdir(tmp_path)

    assert refusal(Path("sql")).startswith("sql/forward/0001_x.sql:1:1: NUL byte")
