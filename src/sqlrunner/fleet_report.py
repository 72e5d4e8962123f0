"""What a fleet run returns: one result per target, the fleet's exit code, text and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .report import SCHEMA_VERSION, json_default

Outcome = Literal["ok", "pending", "failed", "not started"]
State = Literal["up to date", "pending", "drifted", "unreachable", "failed"]


@dataclass(frozen=True, slots=True)
class TargetResult:
    """One target of ``fleet apply``: what it applied, or why it failed, in its own exit code.

    ``pending`` (exit 6): a batched file stopped cleanly on its budget (BackfillPending,
    its message in ``error``); every batch done is committed and re-running continues it.
    It is not a failure: it counts toward neither max_failures nor on_error="stop".
    ``not started``: the run stopped first (a canary failed, on_error="stop",
    max_failures, an error of the whole set); re-running the command picks it up.
    """

    name: str
    target: str  # the DSN, password masked
    schema: str | None
    outcome: Outcome
    exit_code: int | None  # 0 ok, 6 pending; the code `sqlrunner apply` would exit with;
    # None: not started
    applied: tuple[str, ...] = ()  # forward/0002_x.sql ... committed on this target
    seeded: tuple[str, ...] = ()
    error: str | None = None  # the one-line message `sqlrunner apply` would print
    error_kind: str | None = None  # its class: MigrationFailed, ConnectionFailed, LockTimeout ...
    location: str | None = None  # path:line:column of a failing statement
    duration_ms: int = 0
    canary: bool = False
    warnings: tuple[str, ...] = ()  # what `sqlrunner apply` warns of on this target


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One target of ``fleet status``."""

    name: str
    target: str
    schema: str | None
    state: State
    pending: int = 0
    drifted: int = 0
    exit_code: int = 0  # as `sqlrunner status --exit-code`: 0, 6 pending, 1 drift; 3 unreachable
    error: str | None = None
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class FleetReport:
    """A fleet run: every target's result, in the order of the list."""

    action: Literal["apply", "status"]
    results: tuple[TargetResult, ...] | tuple[TargetStatus, ...]
    duration_ms: int
    shard: str | None = None  # "K/N" when only that slice ran
    stopped: str | None = None  # why targets were not started, when some were not
    set_error: str | None = None  # an error of the whole set (the same on every target)
    dry_run: bool = False  # ``applied`` lists what would run; nothing was changed

    @property
    def exit_code(self) -> int:
        """apply: 0 when every target is done; 7 when some failed or were not started; else
        6 when some are pending (a backfill stopped by its budget: re-run to continue); 2
        for an error of the whole set (the migration set itself), 3 when no target was
        reachable. status: as ``status --exit-code`` for the fleet: 1 drift, 7 some target
        could not be read, 6 pending, 0 up to date (3 when none was reachable)."""
        codes = [r.exit_code for r in self.results]
        if self.set_error is not None:
            return 2
        if codes and all(c == 3 for c in codes):
            return 3
        if self.action == "status" and 1 in codes:
            return 1
        if any(c not in (0, 6) for c in codes):
            return 7
        return 6 if 6 in codes else 0

    @property
    def ok(self) -> tuple[TargetResult | TargetStatus, ...]:
        return tuple(r for r in self.results if r.exit_code == 0)

    def count(self, outcome: str) -> int:
        """How many results have this outcome (apply) or state (status)."""
        return sum(
            1 for r in self.results if getattr(r, "outcome", getattr(r, "state", "")) == outcome
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["report"] = f"fleet-{self.action}"
        data["schema_version"] = SCHEMA_VERSION
        data["exit_code"] = self.exit_code
        data["total"] = len(self.results)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=json_default, indent=2)


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """A target finished (``done`` of ``total`` so far), or the run stopped starting targets."""

    kind: Literal["target_finished", "stopped"]
    message: str
    done: int
    total: int
    result: TargetResult | TargetStatus | None = None


FleetListener = Callable[[FleetEvent], None]


def result_line(
    result: TargetResult | TargetStatus, done: int, total: int, dry_run: bool = False
) -> str:
    """The line printed as a target finishes: ``[  3/200] ok  name  what  (41 ms)``."""
    width = len(str(total))
    verdict: str
    if isinstance(result, TargetStatus):
        verdict = result.state
        what = {
            "pending": f"{result.pending} pending",
            "drifted": f"{result.drifted} drifted",
        }.get(result.state, result.error or "")
    else:
        verdict = "FAILED" if result.outcome == "failed" else result.outcome
        counts = (
            f"{len(result.applied)} {'would apply' if dry_run else 'applied'}, "
            f"{len(result.seeded)} {'would seed' if dry_run else 'seeded'}"
        )
        what = {
            "failed": f"exit {result.exit_code}: {result.error}",
            "pending": f"{counts}; exit {result.exit_code}: {result.error}",
        }.get(result.outcome, counts)
        if result.canary:
            verdict += " (canary)"
    return (
        f"[{done:>{width}}/{total}] {verdict:<10} {result.name}  {what}  ({result.duration_ms} ms)"
    )


def summary(report: FleetReport) -> str:
    """The last line(s) of a fleet run: counts, time, and why it stopped."""
    seconds = report.duration_ms / 1000
    shard = f" (shard {report.shard})" if report.shard else ""
    total = len(report.results)
    if report.action == "status":
        parts = [
            f"{report.count(s)} {s}"
            for s in ("up to date", "pending", "drifted", "unreachable", "failed")
        ]
        shown = ", ".join(p for p in parts if not p.startswith("0 ")) or "nothing"
        return f"fleet status: {shown} of {total} target(s){shard} in {seconds:.1f} s"
    applied = sum(len(r.applied) for r in report.results if isinstance(r, TargetResult))
    pending = report.count("pending")
    lines = [
        f"fleet apply: {report.count('ok')} ok, {f'{pending} pending, ' if pending else ''}"
        f"{report.count('failed')} failed, "
        f"{report.count('not started')} not started of {total} target(s){shard}; "
        f"{applied} file(s) {'would be applied (dry run)' if report.dry_run else 'applied'} "
        f"in {seconds:.1f} s"
    ]
    if pending:
        lines.append(
            f"{pending} target(s) pending: a backfill stopped by its budget, every batch done "
            "is committed; re-run the same command to continue"
        )
    if report.count("not started"):
        lines.append(
            f"{report.count('not started')} target(s) not started; fix the failure, then "
            "re-run the same command to go on"
        )
    return "\n".join(lines)
