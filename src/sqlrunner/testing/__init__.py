"""sqlrunner.testing: a pytest plugin that gives an application's tests a migrated database.

Installed with ``pip install 'sqlrunner[testing]'`` and registered through the
``pytest11`` entry point, so an application needs no conftest code:

    def test_tiers_are_seeded(sqlrunner_conn):
        assert sqlrunner_conn.execute("SELECT count(*) FROM tier_model_rules").fetchone()[0]

Fixtures: ``sqlrunner_dsn`` / ``sqlrunner_conn`` (a fresh clone of a template migrated
once per session), ``sqlrunner_empty_dsn``, ``sqlrunner_server``. Helpers for testing
the migrations themselves: ``assert_round_trip`` and ``assert_rerun_safe``; and
``loader(sql_dir)`` for pytest-postgresql's ``load=[...]``.
"""

from __future__ import annotations

from .plugin import (
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_report_header,
    pytest_unconfigure,
    sqlrunner_conn,
    sqlrunner_dsn,
    sqlrunner_empty_dsn,
    sqlrunner_server,
)
from .schema import Loader, assert_rerun_safe, assert_round_trip, loader, snapshot
from .server import PostgresServer

__all__ = [
    "Loader",
    "PostgresServer",
    "assert_rerun_safe",
    "assert_round_trip",
    "loader",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_report_header",
    "pytest_unconfigure",
    "snapshot",
    "sqlrunner_conn",
    "sqlrunner_dsn",
    "sqlrunner_empty_dsn",
    "sqlrunner_server",
]
