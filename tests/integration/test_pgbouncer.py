"""Behind a real PgBouncer in transaction-pooling mode.

The runner lock is a transaction-level advisory lock held by an open
transaction, which pins one server connection for the run; everything else
works statement by statement or transaction by transaction, which is what a
transaction pooler supports. PgBouncer comes from Debian (``apt-get install
pgbouncer``; .ci/run installs it). Without it this module is skipped locally
and fails in CI.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .conftest import SqlSet, cli, spawn
from .test_concurrency import (
    BASE,
    SLOW,
    advisory_locks,
    kill_runner_in_slow_statement,
    query,
    wait_until,
)

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as(host: str) -> str | None:
    """PgBouncer refuses to run as root: run it as the user who can reach the server."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        return pwd.getpwuid(Path(host).stat().st_uid).pw_name
    return "postgres" if _user_exists("postgres") else "nobody"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def bouncer_dsn(dsn: str) -> Iterator[str]:
    """A DSN for ``dsn``'s database through a fresh PgBouncer in transaction mode."""
    if not os.path.exists(PGBOUNCER):
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    params = conninfo_to_dict(dsn)
    host, port = str(params.get("host", "localhost")), str(params.get("port", 5432))
    user = str(params.get("user", "postgres"))
    work = Path(tempfile.mkdtemp(prefix="sqlrunner-pgbouncer-"))
    listen = _free_port()
    (work / "users.txt").write_text(f'"{user}" ""\n')
    (work / "pgbouncer.ini").write_text(f"""[databases]
* = host={host} port={port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {work}/users.txt
pool_mode = transaction
default_pool_size = 6
max_client_conn = 100
ignore_startup_parameters = extra_float_digits
logfile = {work}/pgbouncer.log
""")
    owner = _run_as(host)
    if owner:
        shutil.chown(work, owner)
        for path in work.iterdir():
            shutil.chown(path, owner)
    argv = [PGBOUNCER, str(work / "pgbouncer.ini")]
    if owner:
        argv = ["runuser", "-u", owner, "--", *argv]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    through = make_conninfo(host="127.0.0.1", port=listen, user=user, dbname=params["dbname"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(through, prepare_threshold=None).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = (
                        (work / "pgbouncer.log").read_text()
                        if (work / "pgbouncer.log").exists()
                        else ""
                    )
                    pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
                time.sleep(0.1)
        yield through
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def test_concurrent_runners_behind_transaction_pooler_apply_once(
    dsn: str, bouncer_dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_slow.sql": SLOW.format(seconds=0.5),
            "forward/0003_idx.sql": "-- sqlrunner: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_v_idx ON orders (v);\n",
        }
    )
    runners = [spawn("--sql-dir", str(root), "apply", dsn=bouncer_dsn) for _ in range(4)]
    codes = [(p.wait(timeout=90), p.stderr.read() if p.stderr else "") for p in runners]
    assert [c for c, _ in codes] == [0] * 4, codes
    assert query(dsn, "SELECT migration, count(*) FROM runs GROUP BY 1 ORDER BY 1") == [
        (1, 1),
        (2, 1),
    ]
    assert query(dsn, "SELECT count(*) FROM sqlrunner_ledger") == [(3,)]
    assert advisory_locks(dsn) == 0, "a lock was stranded on a pooled server connection"


def test_killed_runner_behind_pooler_leaves_no_lock(
    dsn: str, bouncer_dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {"forward/0001_base.sql": BASE, "forward/0002_slow.sql": SLOW.format(seconds=30)}
    )
    kill_runner_in_slow_statement(root, runner_dsn=bouncer_dsn, observer_dsn=dsn)
    wait_until(lambda: advisory_locks(dsn) == 0, timeout=15, message="the runner lock to go")
    (root / "forward/0002_slow.sql").write_text(SLOW.format(seconds=0))
    result = cli("--sql-dir", str(root), "apply", "--lock-timeout", "2s", dsn=bouncer_dsn)
    assert result.returncode == 0, result.stderr
    assert query(dsn, "SELECT migration, count(*) FROM runs GROUP BY 1 ORDER BY 1") == [
        (1, 1),
        (2, 1),
    ]
