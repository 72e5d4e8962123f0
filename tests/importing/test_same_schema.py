"""The import guarantee, per tool: sqlrunner applying the imported set leaves exactly the
schema the source files leave under psql, and its rollbacks what the down files leave."""

from __future__ import annotations

from pathlib import Path

import pytest

import sqlrunner
from sqlrunner.importing import import_from
from tests.conftest import write_files

from .conftest import RunPsql, SchemaOf
from .oldtools import steps
from .sets import SETS

EXPECTED_TODOS = {"pop": 1}  # the .fizz file: pop's own DSL, not SQL


@pytest.mark.parametrize("tool", sorted(SETS))
def test_imported_set_leaves_the_schema_the_source_leaves_under_psql(
    tool: str, dsn: str, other_dsn: str, tmp_path: Path, schema_of: SchemaOf, run_psql: RunPsql
) -> None:
    src = write_files(tmp_path / "src", SETS[tool])
    report = import_from(tool, src, tmp_path / "sql")
    todos = [f for f in report.findings if f.severity == "todo"]
    assert len(todos) == EXPECTED_TODOS.get(tool, 0), todos
    order = steps(tool, src, tmp_path)
    for up, _down in order:
        run_psql(other_dsn, up, src)
    sqlrunner.apply(dsn, tmp_path / "sql")
    assert schema_of(dsn) == schema_of(other_dsn)
    assert "CREATE TABLE" in schema_of(dsn)

    downs = [down for _up, down in order if down is not None]
    undo = len(downs) - 1  # all but the first migration
    for down in reversed(downs[1:]):
        run_psql(other_dsn, down, src)
    sqlrunner.rollback(dsn, tmp_path / "sql", steps=undo, allow_data_loss=True)
    assert schema_of(dsn) == schema_of(other_dsn)


def _placeholders_set() -> dict[str, str]:
    """A golang-migrate set like the one the issue converted: 132 empty placeholders (the
    numbers of reverted releases) around real migrations, some lacking their last ';'."""
    files = {
        "000001_create_accounts.up.sql": "CREATE TABLE accounts (id bigint PRIMARY KEY)",
        "000001_create_accounts.down.sql": "DROP TABLE accounts",
    }
    for version in range(2, 134):
        up = "" if version % 3 else f"-- {version}: reverted before release\n"
        files[f"{version:06d}_placeholder_{version}.up.sql"] = up
        if version % 2:  # the others have no down file, as golang-migrate allows
            files[f"{version:06d}_placeholder_{version}.down.sql"] = "\n"
    files["000134_add_email.up.sql"] = "ALTER TABLE accounts ADD COLUMN email text\n-- done\n"
    files["000134_add_email.down.sql"] = "ALTER TABLE accounts DROP COLUMN email"
    return files


def test_132_empty_placeholders_keep_their_versions_and_apply_and_roll_back(
    dsn: str, other_dsn: str, tmp_path: Path, schema_of: SchemaOf, run_psql: RunPsql
) -> None:
    src = write_files(tmp_path / "src", _placeholders_set())
    report = import_from("golang-migrate", src, tmp_path / "sql")
    notes = [f.what for f in report.findings]
    assert notes.count("empty placeholder: written as an empty BEGIN/COMMIT pair") == 132 + 66
    # golang-migrate rolls back past a missing down file: so must the imported set
    assert notes.count("no down script for an empty placeholder: written an empty rollback") == 66
    assert notes.count("added the last ';'") == 4  # 0001 and 0134, up and down
    assert not report.needs_attention
    applied = sqlrunner.apply(dsn, tmp_path / "sql")
    assert [r.version for r in applied.applied] == list(range(1, 135))
    for up in sorted(src.glob("*.up.sql")):
        run_psql(other_dsn, up, src)
    assert schema_of(dsn) == schema_of(other_dsn)
    assert "email" in schema_of(dsn)

    rolled = sqlrunner.rollback(dsn, tmp_path / "sql", to=1)  # back through every placeholder
    assert len(rolled.rolled_back) == 133
    for down in sorted(src.glob("*.down.sql"), reverse=True)[:-1]:
        run_psql(other_dsn, down, src)
    assert schema_of(dsn) == schema_of(other_dsn)
    assert "email" not in schema_of(dsn)
