"""Helpers for integration tests: the CLI as a process, reading the database from a
session of its own, and the sessions and runs the tests set against the runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

import sqlrunner
from tests.conftest import SqlSet  # the sql_set fixture lives in tests/conftest.py

__all__ = ["SqlSet"]


def cli(
    *args: str, dsn: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sqlrunner`` as a user would, without a terminal on stdin."""
    argv = [sys.executable, "-m", "sqlrunner", *(("--dsn", dsn) if dsn else ()), *args]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def spawn(*args: str, dsn: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "sqlrunner", "--dsn", dsn, *args]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )


def query(dsn: str, text: str) -> list[tuple[object, ...]]:
    """Every row of ``text``, read on a connection of its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(text).fetchall()


def scalar(dsn: str, text: str) -> object:
    """The first column of the first row of ``text`` (None without a row)."""
    rows = query(dsn, text)
    return rows[0][0] if rows else None


def execute(dsn: str, *statements: str) -> None:
    """Run statements in autocommit, as a separate session would."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def advisory_locks(dsn: str) -> int:
    return int(query(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0])


def wait_until(predicate: Callable[[], object], message: str = "", timeout: float = 20.0) -> None:
    """Poll ``predicate`` every 50 ms until it is true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {message}")


@contextmanager
def lock_holder(
    dsn: str, statement: str, application_name: str | None = None
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A session that ran ``statement`` and sits idle in its transaction, holding the
    locks it took until the block ends (or the test commits or closes it sooner): the
    application a migration has to wait for, or give up on naming it."""
    holder = psycopg.connect(dsn, application_name=application_name)
    try:
        holder.execute(statement)
        yield holder
    finally:
        holder.close()


def seconds_to_give_up(dsn: str, root: Path, table: str) -> float:
    """Apply ``root``'s 0001, then the rest with no lock retry while another session holds
    ACCESS SHARE on ``table``: how long the attempt took to end in LockTimeout."""
    sqlrunner.apply(dsn, root, to=1)
    with lock_holder(dsn, f"LOCK TABLE {table} IN ACCESS SHARE MODE"):
        started = time.monotonic()
        with pytest.raises(sqlrunner.LockTimeout):
            sqlrunner.apply(dsn, root, lock_retries=0)
        return time.monotonic() - started


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for a spawned run: its exit code and stderr."""
    code = process.wait(timeout=timeout)
    return code, process.stderr.read() if process.stderr else ""


def apply_at_once(n: int, root: Path, dsn: str, timeout: float = 90) -> list[tuple[int, str, str]]:
    """``n`` ``sqlrunner apply`` processes started together: each one's exit code, stdout
    and stderr, in the order they were started."""
    runners = [spawn("--sql-dir", str(root), "apply", dsn=dsn) for _ in range(n)]
    outputs = [p.communicate(timeout=timeout) for p in runners]
    return [(p.returncode, out, err) for p, (out, err) in zip(runners, outputs, strict=True)]


# a backend other than ours inside a pg_sleep: the run sits where the test wants it
IN_PG_SLEEP = (
    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
    " AND query LIKE '%SELECT pg_sleep(%' AND pid <> pg_backend_pid()"
)


def sleeping_runner(root: Path, dsn: str, observer_dsn: str | None = None) -> subprocess.Popen[str]:
    """``sqlrunner apply`` of ``root`` on ``dsn``, returned once its file sits in a pg_sleep
    (watched from ``observer_dsn``, the server itself when ``dsn`` goes through a pooler)."""
    runner = spawn("--sql-dir", str(root), "apply", dsn=dsn)
    try:
        wait_until(lambda: scalar(observer_dsn or dsn, IN_PG_SLEEP) == 1, "the run's pg_sleep")
    except BaseException:
        runner.kill()  # a test that fails here leaves no run behind
        runner.wait()
        raise
    return runner


def kill_runner_in_slow_statement(root: Path, *, runner_dsn: str, observer_dsn: str) -> None:
    """Start `apply`, wait until it sits in its pg_sleep, then kill -9 it."""
    runner = sleeping_runner(root, runner_dsn, observer_dsn)
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=10)
