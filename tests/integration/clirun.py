"""The CLI run in this process through click's CliRunner, or as a real process.

In process is the default (fast, and an unexpected exception fails the test
with its traceback instead of hiding in the output); a real process is for
what needs one: exit codes as the shell sees them, stdin, signals, imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from sqlrunner.cli import cli

# The caller's environment must not choose the database or options for a test.
CLEAN_ENV = ("DATABASE_URL", "SQLRUNNER_DSN", "SQLRUNNER_SQL_DIR", "SQLRUNNER_JSON")


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("sqlrunner: error:")]


@contextmanager
def working_directory(path: Path | None) -> Iterator[None]:
    before = Path.cwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def invoke(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """``sqlrunner ARGS`` in process: no terminal on stdin, no DATABASE_URL."""
    clean: dict[str, str | None] = dict.fromkeys(CLEAN_ENV)
    with working_directory(cwd):
        result = CliRunner().invoke(
            cli,
            list(args),
            env={**clean, **(env or {})},
            catch_exceptions=False,
            prog_name="sqlrunner",
        )
    return Run(result.exit_code, result.stdout, result.stderr)


def run_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> Run:
    """``python -m sqlrunner ARGS`` as a real process, stdin not a terminal."""
    base = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "sqlrunner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**base, **(env or {})},
        cwd=cwd,
    )
    return Run(done.returncode, done.stdout, done.stderr)
