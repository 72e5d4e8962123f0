"""The speed targets (issue 11, "What must not change"), as data.

A target passes when its numerator series is at most ``bound`` times its
denominator series (strictly below, for "faster than"), both from the same
run: the median of the ratios pair by pair when the two series pair up (one
of each per run, or alternating), else the ratio of the medians.  Series are
named ``tool.what`` (see ``_timing.py``): ``fresh`` and ``noop`` per apply, ``paired_noop`` and
``paired_floor`` for a no-op timed alternating with its floor.
"""

# ruff: noqa: RUF001, RUF003  (multiplication signs)
from __future__ import annotations

import statistics
from dataclasses import dataclass

from _timing import Results

PYTHON_FLOOR = "`python -c \"import psycopg; psycopg.connect(DSN).execute('select 1')\"`"
PEERS = {"yoyo": "yoyo", "alembic": "Alembic", "sqitch": "Sqitch"}


@dataclass(frozen=True, slots=True)
class Target:
    workload: str
    name: str  # what is measured
    numerator: str  # series, "tool.what"
    versus: str  # what it is measured against
    denominator: str
    bound: float
    strict: bool = False  # numerator < bound × denominator ("faster than")

    def sentence(self) -> str:
        relation = "faster than" if self.strict and self.bound == 1 else f"≤ {self.bound:g}×"
        return f"{self.workload}: {self.name} {relation} {self.versus}"


TARGETS = [
    # 1. what a shell or a container start pays for "nothing to do"
    *(
        Target(
            wk,
            "CLI no-op as a process",
            "sqlrunner.paired_noop",
            f"{PYTHON_FLOOR}, alternating",
            "sqlrunner.paired_floor",
            1.2,
        )
        for wk in ("W1", "W2")
    ),
    # 2. what a service pays for "nothing to do", at start-up and later
    *(
        Target(
            wk,
            f"in-process no-op, {how}",
            f"{tool}.paired_noop",
            "a bare connect + one query",
            f"{tool}.paired_floor",
            1.5,
        )
        for wk in ("W1", "W2")
        for how, tool in (
            ("first call in a fresh process", "sqlrunner_first"),
            ("repeated call", "sqlrunner_inproc"),
            ("repeated call given the files loaded once", "sqlrunner_loaded"),
        )
    ),
    # 3. a fresh database from 200 tiny migrations
    Target(
        "W1",
        "fresh, in process",
        "sqlrunner_inproc.fresh",
        "psql in one call",
        "psql_one.fresh",
        1.3,
    ),
    Target(
        "W1",
        "fresh, in process",
        "sqlrunner_inproc.fresh",
        "dbmate",
        "dbmate.fresh",
        1.0,
        strict=True,
    ),
    # 4. a release of the shipped set, once per release: fixed costs dominate
    Target(
        "W2",
        "fresh, first call in a process that has imported sqlrunner",
        "sqlrunner_first.fresh",
        "psql per file",
        "psql_file.fresh",
        1.5,
    ),
    # 5. the other migration tools, as a process like them
    *(
        Target(
            wk, f"{phase} (process)", f"sqlrunner.{what}", label, f"{peer}.{what}", 1.0, strict=True
        )
        for wk in ("W1", "W2")
        for phase, what in (("fresh", "fresh"), ("no-op", "noop"))
        for peer, label in PEERS.items()
    ),
]


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def pair_ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Ratios pair by pair, when the two series pair up (as many of each, measured in turn:
    the same run, or alternating), else none.  A pair's ratio is immune to the machine's
    drift between pairs, which a ratio of medians taken minutes apart is not."""
    if len(numerators) != len(denominators) or len(numerators) < 2:
        return []
    return [n / d for n, d in zip(numerators, denominators, strict=True) if d > 0]


def verdict(target: Target, results: Results, workloads_run: set[str]) -> str:
    """One line: PASS, FAIL or UNKNOWN, the sentence, and the figures behind it.

    The verdict is on the median of the pair-by-pair ratios when the series pair up,
    else on the ratio of the medians; both are shown, with the pairs' spread.
    """
    if target.workload not in workloads_run:
        return f"UNKNOWN {target.sentence()}: {target.workload} not run"
    n = results.median(target.workload, target.numerator)
    d = results.median(target.workload, target.denominator)
    if n is None or d is None or d <= 0:
        return f"UNKNOWN {target.sentence()}: not measured"
    pairs = pair_ratios(
        results.get(target.workload, target.numerator),
        results.get(target.workload, target.denominator),
    )
    ratio = statistics.median(pairs) if pairs else n / d
    ok = ratio < target.bound if target.strict else ratio <= target.bound
    line = (
        f"{'PASS' if ok else 'FAIL':7} {target.sentence()}: {fmt_ms(n)} ms vs {fmt_ms(d)} ms "
        f"({n / d:.2f}×)"
    )
    if pairs:
        line += f"; {len(pairs)} pairs: {ratio:.2f}× [{min(pairs):.2f}–{max(pairs):.2f}]"
    return line


def verdicts(results: Results, workloads_run: set[str]) -> list[str]:
    return [verdict(t, results, workloads_run) for t in TARGETS]
