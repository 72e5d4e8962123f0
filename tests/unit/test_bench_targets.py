"""The benchmark's targets are data: each names series that an adapter records."""

# ruff: noqa: RUF001  (the verdicts use multiplication signs)

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    monkeypatch.syspath_prepend(str(BENCH))
    import _targets
    import _timing
    import peers

    yield {"peers": peers, "targets": _targets, "timing": _timing}
    for name in [
        n for n, m in sys.modules.items() if str(BENCH) in str(getattr(m, "__file__", ""))
    ]:
        del sys.modules[name]


def test_every_target_reads_series_its_adapters_record(bench: dict[str, ModuleType]) -> None:
    tools = {cls.key: cls for cls in bench["peers"].TOOLS}
    for target in bench["targets"].TARGETS:
        for series in (target.numerator, target.denominator):
            key, what = series.split(".")
            assert key in tools, series
            tool = tools[key]
            assert what in {"fresh", "noop", "paired_noop", "paired_floor"}, series
            assert what != "noop" or tool.has_noop, series
            assert not what.startswith("paired") or tool.floor, series


def test_the_issue_targets_are_all_there(bench: dict[str, ModuleType]) -> None:
    bounds = {(t.workload, t.numerator, t.denominator): t.bound for t in bench["targets"].TARGETS}
    for wk in ("W1", "W2"):
        assert bounds[(wk, "sqlrunner.paired_noop", "sqlrunner.paired_floor")] == 1.2
        for tool in ("sqlrunner_first", "sqlrunner_inproc"):
            assert bounds[(wk, f"{tool}.paired_noop", f"{tool}.paired_floor")] == 1.5
    assert bounds[("W1", "sqlrunner_inproc.fresh", "psql_one.fresh")] == 1.3
    assert bounds[("W1", "sqlrunner_inproc.fresh", "dbmate.fresh")] == 1.0
    assert bounds[("W2", "sqlrunner_first.fresh", "psql_file.fresh")] == 1.5


def test_verdicts_pass_fail_and_unknown(bench: dict[str, ModuleType]) -> None:
    targets, timing = bench["targets"], bench["timing"]
    results = timing.Results()
    results.add("W1", "sqlrunner_inproc.fresh", 130.0, 140.0, 120.0)
    results.add("W1", "psql_one.fresh", 100.0)
    results.add("W1", "dbmate.fresh", 130.0)
    at_most = targets.Target("W1", "fresh", "sqlrunner_inproc.fresh", "psql", "psql_one.fresh", 1.3)
    faster = targets.Target(
        "W1", "fresh", "sqlrunner_inproc.fresh", "dbmate", "dbmate.fresh", 1.0, strict=True
    )
    assert targets.verdict(at_most, results, {"W1"}).startswith(
        "PASS    W1: fresh ≤ 1.3× psql: 130 ms vs 100 ms (1.30×)"
    )
    assert targets.verdict(faster, results, {"W1"}).startswith(
        "FAIL    W1: fresh faster than dbmate"
    )
    results.forget("W1", "dbmate")
    assert targets.verdict(faster, results, {"W1"}).endswith(": not measured")
    assert targets.verdict(at_most, results, set()).endswith(": W1 not run")


def test_alternate_takes_turns_going_first(bench: dict[str, ModuleType]) -> None:
    calls: list[str] = []

    def a() -> float:
        calls.append("a")
        return 1.0

    def b() -> float:
        calls.append("b")
        return 2.0

    assert bench["timing"].alternate(a, b, 3) == ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert calls == ["a", "b", "b", "a", "a", "b"]


def test_a_verdict_on_series_that_pair_up_is_the_median_of_their_ratios(
    bench: dict[str, ModuleType],
) -> None:
    targets, timing = bench["targets"], bench["timing"]
    results = timing.Results()
    # the machine slowed down 3x between the first and the other runs: pair by pair the
    # ratio is 1.25 each time, while the ratio of the medians says 0.42
    results.add("W1", "sqlrunner_inproc.fresh", 125.0, 375.0, 375.0)
    results.add("W1", "psql_one.fresh", 100.0, 300.0, 300.0)
    results.add("W1", "dbmate.fresh", 900.0, 900.0, 900.0)
    at_most = targets.Target("W1", "fresh", "sqlrunner_inproc.fresh", "psql", "psql_one.fresh", 1.3)
    faster = targets.Target(
        "W1", "fresh", "sqlrunner_inproc.fresh", "dbmate", "dbmate.fresh", 1.0, strict=True
    )
    assert targets.verdict(at_most, results, {"W1"}) == (
        "PASS    W1: fresh ≤ 1.3× psql: 375 ms vs 300 ms (1.25×); 3 pairs: 1.25× [1.25–1.25]"
    )
    assert targets.verdict(faster, results, {"W1"}).startswith("PASS    W1: fresh faster than")
    results.add("W1", "psql_one.fresh", 50.0)  # no longer pairs up: ratio of the medians
    assert "pairs" not in targets.verdict(at_most, results, {"W1"})
    assert targets.verdict(at_most, results, {"W1"}).startswith("FAIL")
