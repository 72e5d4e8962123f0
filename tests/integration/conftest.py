"""Helpers for integration tests: small migration sets written into tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
import pytest

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
