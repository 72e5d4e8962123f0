"""The closed error contract: no psycopg exception escapes the library.

Whatever the server or the network does to the runner's own SQL becomes the
matching SqlRunnerError with the psycopg error as ``__cause__``: a connection
that died is ConnectionFailed (exit 3), anything the server refused is
DatabaseError (exit 4). Each fault here is real: a backend ended with
pg_terminate_backend, a role without the privilege, a read-only database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlrunner
from sqlrunner.errors import DatabaseError

from .conftest import SqlSet, cli

ITEMS = "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY);\nCOMMIT;\n"
SEED = "BEGIN;\nINSERT INTO items VALUES (1) ON CONFLICT DO NOTHING;\nCOMMIT;\n"
CHECK = "SELECT 'items exist', to_regclass('items') IS NOT NULL, '';\n"

# Every entry point that talks to a database, called the way a service calls it.
ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "apply": lambda target, root, **o: sqlrunner.apply(target, root, **o),
    "rollback": lambda target, root, **o: sqlrunner.rollback(
        target, root, allow_data_loss=True, **o
    ),
    "seed": lambda target, root, **o: sqlrunner.seed(target, root, **o),
    "status": lambda target, root, **o: sqlrunner.status(target, root, **o),
    "verify": lambda target, root, **o: sqlrunner.verify(target, root, **o),
    "history": lambda target, root, **o: sqlrunner.history(target, **o),
    "repair": lambda target, root, **o: sqlrunner.repair(target, root, forget_seeds=True, **o),
}


@pytest.fixture
def applied(dsn: str, sql_set: SqlSet) -> Any:
    """A set with one applied, reversible forward file, a seed and a verify check."""
    root = sql_set(
        {
            "forward/0001_items.sql": ITEMS,
            "rollback/0001_items.sql": "BEGIN;\nDROP TABLE items;\nCOMMIT;\n",
            "seed/0001_items.sql": SEED,
            "verify/0001_items.sql": CHECK,
        }
    )
    sqlrunner.apply(dsn, root)
    return root


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_connection_whose_backend_was_terminated_is_connection_failed(
    dsn: str, applied: Any, entry: str
) -> None:
    conn = psycopg.connect(dsn, autocommit=True)
    with psycopg.connect(dsn, autocommit=True) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))

    with pytest.raises(sqlrunner.ConnectionFailed) as raised:
        ENTRY_POINTS[entry](conn, applied)

    assert isinstance(raised.value.__cause__, psycopg.OperationalError)
    assert str(raised.value).startswith("lost the database connection: ")
    conn.close()


@pytest.fixture
def outsider(dsn: str) -> Iterator[str]:
    """A DSN for a fresh login role that may use the database but create nothing in it."""
    name = "sqlr_out_" + conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute("CREATE SCHEMA private")  # its ledger: the role has no USAGE on it
        conn.execute("CREATE TABLE private.sqlrunner_ledger (kind text)")
    try:
        yield make_conninfo(dsn, user=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_no_privilege_to_create_the_ledger_schema_is_a_database_error(
    outsider: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    with pytest.raises(DatabaseError) as raised:
        sqlrunner.apply(outsider, root, ledger_schema="sqlrunner_meta")

    assert isinstance(raised.value.__cause__, psycopg.errors.InsufficientPrivilege)
    assert (raised.value.sqlstate, raised.value.exit_code) == ("42501", 4)
    assert "permission denied" in str(raised.value)


@pytest.mark.parametrize("entry", ["status", "verify", "history", "apply"])
def test_a_ledger_in_a_schema_the_role_cannot_use_is_a_database_error(
    outsider: str, sql_set: SqlSet, entry: str
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    with pytest.raises(DatabaseError) as raised:
        ENTRY_POINTS[entry](outsider, root, ledger_schema="private")

    assert isinstance(raised.value.__cause__, psycopg.errors.InsufficientPrivilege)


@pytest.fixture
def read_only(dsn: str) -> str:
    """``dsn``, whose database now starts every session read-only (a standby-like target)."""
    dbname = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                sql.Identifier(dbname)
            )
        )
    return dsn


def test_apply_to_a_read_only_database_is_a_database_error(read_only: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    with pytest.raises(DatabaseError) as raised:
        sqlrunner.apply(read_only, root)

    assert isinstance(raised.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)
    assert raised.value.sqlstate == "25006"


def test_repair_on_a_read_only_database_is_a_database_error(
    read_only: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    with pytest.raises(DatabaseError) as raised:
        sqlrunner.repair(read_only, root, mark_applied=1)

    assert isinstance(raised.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)


def test_the_cli_reports_a_database_error_in_one_line_with_exit_4(
    read_only: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    result = cli("--sql-dir", str(root), "apply", dsn=read_only)

    assert result.returncode == 4, result.stderr
    assert "sqlrunner: error: database error: " in result.stderr
    assert "read-only transaction" in result.stderr
    assert "Traceback" not in result.stderr
