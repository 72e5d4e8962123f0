"""The session's databases: one migrated template per migration set, one clone per test.

A template is built by ``sqlrunner.apply`` (forward files, seeds, verify) once per
session and rebuilt when any file of the set changes; every test then gets
``CREATE DATABASE … TEMPLATE``, a file copy inside the server that costs tens of
milliseconds whatever the migrations do.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from pytest_postgresql.janitor import DatabaseJanitor

import sqlrunner

from ..errors import ConnectionFailed, SqlRunnerError
from .server import PostgresServer, embedded, existing, masked

FOLDERS = ("forward", "rollback", "seed", "verify")


def fingerprint(sql_dir: Path) -> str:
    """SHA-256 over every file of the set (names and bytes): any change gives a new template."""
    digest = hashlib.sha256()
    for folder in FOLDERS:
        for path in sorted((sql_dir / folder).glob("*")):
            digest.update(f"{folder}/{path.name}\0".encode())
            digest.update(path.read_bytes() if path.is_file() else b"<dir>")
            digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Settings:
    """What the plugin was asked for: ini options, flags and the environment, resolved."""

    sql_dir: Path
    ledger_schema: str
    dsn: str | None  # an existing server; None starts the embedded one


class _HeldJanitor(DatabaseJanitor):
    """pytest-postgresql's janitor on the session's open connection: a new connection per
    create and per drop would cost about as much again as the clone itself."""

    def __init__(self, conn: psycopg.Connection[Any], file_copy: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._conn = conn
        self._file_copy = file_copy

    def _build_create_database_sql(self) -> sql.Composed:
        # FILE_COPY copies the template's files where the default (WAL_LOG, PostgreSQL 15+)
        # writes every page to WAL; it pays with two checkpoints, which cost next to nothing
        # on our own fsync-off embedded server (and would disturb a shared one).
        query = super()._build_create_database_sql()
        return query + sql.SQL(" STRATEGY FILE_COPY") if self._file_copy else query

    def drop(self) -> None:
        """One statement for a test's database: FORCE (PostgreSQL 13+) ends its sessions, in
        a third of the time of the janitor's check, lock-out, terminate and drop."""
        if self.is_template():
            super().drop()
            return
        with self.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.dbname)
                )
            )

    @contextmanager
    def cursor(self, dbname: str | None = None) -> Iterator[psycopg.Cursor[Any]]:
        with self._conn.cursor() as cur:
            yield cur


class TestDatabases:
    """The session's server, templates and per-test clones (kept in ``config.stash``)."""

    __test__ = False  # not a test class, whatever pytest's python_classes says

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = ExitStack()
        self._server: PostgresServer | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._token = secrets.token_hex(4)  # sessions sharing a server never collide
        self._numbers = itertools.count(1)
        self._template: tuple[str, str] | None = None  # (fingerprint, database name)
        self._failed: tuple[str, str] | None = None  # (fingerprint, message)
        self._unreachable: str | None = None

    def server(self) -> PostgresServer:
        """The server, connected or started on first use."""
        if self._server is None:
            if self._unreachable is not None:
                raise ConnectionFailed(self._unreachable)  # once per session, not once per test
            try:
                if self.settings.dsn:
                    self._server = existing(self.settings.dsn)
                else:
                    self._server = self._stack.enter_context(embedded())
            except ConnectionFailed as exc:
                self._unreachable = str(exc)
                raise
        return self._server

    def template(self) -> str:
        """The migrated template of the current files, built or rebuilt as needed.

        Raises SqlRunnerError (the same one again, without re-running) when the set is broken.
        """
        sql_dir = self.settings.sql_dir
        if not sql_dir.is_dir():
            raise sqlrunner.UsageError(
                f"no migration set at {sql_dir}: set sqlrunner_sql_dir in the pytest ini "
                "options or pass --sqlrunner-sql-dir"
            )
        current = fingerprint(sql_dir)
        if self._template is not None and self._template[0] == current:
            return self._template[1]
        if self._failed is not None and self._failed[0] == current:
            raise sqlrunner.UsageError(self._failed[1])
        if self._template is not None:
            self._janitor(self._template[1], as_template=True).drop()
            self._template = None
        name = f"sqlrunner_tpl_{self._token}_{current[:8]}"
        janitor = self._janitor(name, as_template=True)
        try:
            janitor.drop()
            janitor.init()
        except psycopg.Error as exc:  # e.g. a role without CREATEDB: one line, not a traceback
            shown = masked(self.server().dsn(self.server().maintenance_dbname))
            message = f"cannot create the template database on {shown}: {exc}"
            self._failed = (current, message)
            raise sqlrunner.UsageError(message) from None
        try:
            sqlrunner.apply(
                self.server().dsn(name), sql_dir, ledger_schema=self.settings.ledger_schema
            )
        except SqlRunnerError as exc:
            janitor.drop()
            self._failed = (current, str(exc))
            raise
        self._template = (current, name)
        return name

    @contextmanager
    def database(self, template: str | None) -> Iterator[str]:
        """A fresh database cloned from ``template`` (None: an empty one), dropped afterwards."""
        name = f"sqlrunner_{self._token}_{next(self._numbers)}"
        janitor = self._janitor(name, template_dbname=template)
        try:
            janitor.init()
        except psycopg.OperationalError:  # our held connection died (a test killed backends)
            self._reconnect()
            janitor = self._janitor(name, template_dbname=template)
            janitor.init()
        try:
            yield self.server().dsn(name)
        finally:
            try:
                janitor.drop()
            except psycopg.OperationalError:
                self._reconnect()
                self._janitor(name).drop()

    def close(self) -> None:
        """Drop the template, close the connection, stop the embedded server."""
        try:
            if self._template is not None and self._server is not None:
                self._janitor(self._template[1], as_template=True).drop()
        finally:
            if self._conn is not None:
                self._conn.close()
            self._stack.close()

    def _janitor(self, dbname: str, **kwargs: Any) -> DatabaseJanitor:
        server = self.server()
        if self._conn is None or self._conn.closed:
            self._reconnect()
        assert self._conn is not None
        return _HeldJanitor(
            self._conn,
            server.embedded and self._conn.info.server_version >= 150000,
            **server.janitor_args(dbname),
            **kwargs,
        )

    def _reconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
        server = self.server()
        self._conn = psycopg.connect(server.dsn(server.maintenance_dbname), autocommit=True)
