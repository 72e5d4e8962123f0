"""What ``python -m sqlrunner`` and ``import sqlrunner`` load and print at start-up.

A service that imports sqlrunner never loads click or the CLI; a no-op apply
(a container start, a deploy step) loads no parser and no runner. These run
in a fresh interpreter, with a real PostgreSQL behind them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sqlrunner

from .conftest import SqlSet

ITEMS = "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY);\nCOMMIT;\n"


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def modules_loaded_by_cli(*argv: str) -> tuple[int, set[str]]:
    """Run the CLI in a fresh interpreter; its exit code and every module it loaded."""
    done = python(
        """
        import json, sys
        from sqlrunner.cli import main
        try:
            main(sys.argv[1:])
        except SystemExit as exit:
            code = exit.code
        sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
        sys.exit(code)
        """,
        *argv,
    )
    marker = done.stderr.rsplit("MODULES ", 1)
    assert len(marker) == 2, done.stderr
    return done.returncode, set(json.loads(marker[1]))


def test_import_sqlrunner_loads_neither_click_nor_the_cli() -> None:
    done = python(
        """
        import sys, sqlrunner
        print(sorted(m for m in ("click", "sqlrunner.cli", "pglast") if m in sys.modules))
        print(sqlrunner.apply.__module__, sqlrunner.MigrationFailed.__module__)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "sqlrunner.api sqlrunner.errors"]


def test_the_package_is_plain_re_exports_each_named_once() -> None:
    tree = ast.parse(Path(sqlrunner.__file__).read_text())
    imported = [
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions == []  # no module __getattr__ / __dir__: nothing is loaded lazily
    assert sorted(imported) == sorted(sqlrunner.__all__)
    assert len(set(imported)) == len(imported)


def test_every_public_name_resolves() -> None:
    for name in sqlrunner.__all__:
        assert getattr(sqlrunner, name) is not None
    with pytest.raises(AttributeError):
        sqlrunner.no_such_name  # noqa: B018


def test_a_no_op_apply_loads_no_parser_and_no_runner(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})
    sqlrunner.apply(dsn, root)

    code, loaded = modules_loaded_by_cli("--dsn", dsn, "--sql-dir", str(root), "apply")

    assert code == 0
    heavy = {
        "pglast",
        "sqlrunner.sqltext",
        "sqlrunner.runner",
        "sqlrunner.checks",
        "sqlrunner.dataloss",
    }
    assert loaded & heavy == set()


def test_a_fresh_apply_imports_pglast_plainly(dsn: str, sql_set: SqlSet) -> None:
    """Issue 11.1 replaced the loader that ran pglast's C extension alone (stand-in modules,
    a sys.meta_path hook) with a plain import where parsing is needed."""
    root = sql_set({"forward/0001_items.sql": ITEMS})

    code, loaded = modules_loaded_by_cli("--dsn", dsn, "--sql-dir", str(root), "apply")

    assert code == 0
    assert {"pglast", "pglast.parser"} <= loaded
    assert {m for m in loaded if "pglast" in m and not m.startswith("pglast")} == set()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_0_and_lists_every_command(flag: str) -> None:
    done = python("from sqlrunner.cli import main; main()", flag)
    assert done.returncode == 0, done.stderr
    for command in ("apply", "rollback", "seed", "status", "verify", "new", "repair", "history"):
        assert command in done.stdout


def test_version_exits_0() -> None:
    done = python("from sqlrunner.cli import main; main()", "--version")
    assert (done.returncode, done.stdout.strip()) == (
        0,
        f"sqlrunner, version {sqlrunner.__version__}",
    )


def test_bare_sqlrunner_prints_help_and_exits_2() -> None:
    done = python("from sqlrunner.cli import main; main()")
    assert done.returncode == 2
    assert "Usage: sqlrunner" in done.stderr
    assert done.stdout == ""


def test_a_command_help_shows_its_own_options() -> None:
    done = python("from sqlrunner.cli import main; main()", "apply", "--help")
    assert done.returncode == 0, done.stderr
    assert "--dry-run" in done.stdout and "--lock-timeout" in done.stdout
