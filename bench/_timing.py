"""Timing: processes timed by wall clock, paired runs, medians, and the store of results.

Everything a measurement produces is a *series*: a list of numbers under
(workload, ``"tool.what"``), e.g. ``("W1", "psql_one.fresh")`` or
``("W2", "sqlrunner.paired_floor")``.  The report and the targets read series
by those names; a tool that failed on a workload has none.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CMD_TIMEOUT = 600


class ToolFailed(Exception):
    """A tool exited non-zero, timed out or left work undone: its row says why."""


def median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def first_line(text: str) -> str:
    """The line of a tool's output worth showing: an error line if there is one."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"error|fatal|failed", ln, re.I):
            return ln[:200]
    return (lines[-1] if lines else "no output")[:200]


def run_process(
    cmd: list[str], env: dict[str, str], cwd: Path | None = None, stdout: bool = False
) -> tuple[float, str]:
    """Run one command; (wall time in ms, its stdout if asked for).  Raises ToolFailed."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=CMD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"timed out after {CMD_TIMEOUT}s: {shlex.join(cmd[:3])} …") from None
    ms = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise ToolFailed(f"exit {p.returncode}: {first_line(p.stderr.decode(errors='replace'))}")
    return ms, p.stdout.decode(errors="replace") if stdout else ""


def run_cmds(cmds: list[list[str]], env: dict[str, str], cwd: Path | None = None) -> float:
    """Run the commands one after the other (one tool's apply); wall time in ms."""
    return sum(run_process(cmd, env, cwd)[0] for cmd in cmds)


def alternate(
    a: Callable[[], float], b: Callable[[], float], reps: int
) -> tuple[list[float], list[float]]:
    """reps timings of each, a and b taking turns to go first (ab, ba, ab, ...).

    The machine's speed drifts by minutes (2x on these VMs); alternating puts
    both under the same load, which a ratio of the two needs.
    """
    ta: list[float] = []
    tb: list[float] = []
    for i in range(reps):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in order:
            out.append(fn())
    return ta, tb


def rotated(keys: list[str], run: int) -> list[str]:
    """keys in round-robin order for run number run, so no tool always goes first."""
    if not keys:
        return []
    k = run % len(keys)
    return keys[k:] + keys[:k]


@dataclass(frozen=True, slots=True)
class Counters:
    """pg_stat_database counters of one database at one moment."""

    commits: int
    sessions: int | None  # None before PostgreSQL 14


@dataclass
class Results:
    """Every series measured, by (workload, "tool.what")."""

    series: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, workload: str, name: str, *values: float) -> None:
        self.series.setdefault((workload, name), []).extend(values)

    def get(self, workload: str, name: str) -> list[float]:
        return self.series.get((workload, name), [])

    def median(self, workload: str, name: str) -> float | None:
        return median(self.get(workload, name))

    def add_counts(
        self, workload: str, tool: str, phase: str, before: Counters, after: Counters, n: int
    ) -> None:
        """Commits and new sessions per apply between two counter readings."""
        self.add(workload, f"{tool}.commits_{phase}", (after.commits - before.commits) / n)
        if before.sessions is not None and after.sessions is not None:
            self.add(
                workload, f"{tool}.connections_{phase}", (after.sessions - before.sessions) / n
            )

    def save(self, path: Path) -> None:
        """Every series as JSON, ``{"W1 psql_one.fresh": [...], ...}``, in measured order."""
        data = {f"{wk} {name}": xs for (wk, name), xs in self.series.items()}
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    def forget(self, workload: str, tool: str) -> None:
        """Drop a tool's series on a workload (it failed: no figure is better than a wrong one)."""
        for key in [k for k in self.series if k[0] == workload and k[1].startswith(tool + ".")]:
            del self.series[key]
