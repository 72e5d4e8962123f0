"""The report: the table, the lines under it, the targets, and the 'Peers' section of RESULTS.md."""

# ruff: noqa: RUF001  (the report uses multiplication signs and en dashes)
from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
from pathlib import Path

from _adapters import Tool
from _targets import fmt_ms, verdicts
from _timing import Results, median
from _workloads import Workload

HEADER = (
    "| tool | workload | fresh ms, median [min–max] | no-op ms, median [min–max] "
    "| connections fresh / no-op | commits fresh / no-op | fresh ÷ psql one call |\n"
    "|---|---|---|---|---|---|---|"
)
PLACEHOLDER = (
    "_To be written by the lead: what these numbers say about sqlrunner's design "
    "(where the time goes, which target is met and why)._"
)


def fmt_range(xs: list[float]) -> str:
    if len(xs) <= 1:
        return fmt_ms(xs[0] if xs else None)
    return f"{fmt_ms(median(xs))} [{fmt_ms(min(xs))}–{fmt_ms(max(xs))}]"


def fmt_count(xs: list[float]) -> str:
    if not xs:
        return "—"
    lo, hi = (f"{v:g}" if v == int(v) else f"{v:.1f}" for v in (min(xs), max(xs)))
    return lo if lo == hi else f"{lo}–{hi}"


def row(tool: Tool, wl: Workload, results: Results) -> str:
    """One tool's row on one workload: its figures, or why it has none."""
    why = tool.reason or tool.failed.get(wl.key, "")
    if why:
        why = why if len(why) <= 90 else why[:87].rstrip() + "… (see below)"
        return f"| {tool.label} | {wl.key} | {why.replace('|', '/')} | | | | |"

    def series(what: str) -> list[float]:
        return results.get(wl.key, f"{tool.key}.{what}")

    fresh, base = median(series("fresh")), results.median(wl.key, "psql_one.fresh")
    ratio = f"{fresh / base:.2f}×" if (fresh and base) else "—"
    noop = fmt_range(series("noop")) if tool.has_noop else "n/a"
    conns = f"{fmt_count(series('connections_fresh'))} / {fmt_count(series('connections_noop'))}"
    commits = f"{fmt_count(series('commits_fresh'))} / {fmt_count(series('commits_noop'))}"
    return (
        f"| {tool.label} | {wl.key} | {fmt_range(series('fresh'))} | {noop} "
        f"| {conns} | {commits} | {ratio} |"
    )


def table(tools: dict[str, Tool], workloads: list[Workload], results: Results) -> str:
    out = [HEADER]
    for wl in workloads:
        if wl.skip:
            out.append(f"| (all) | {wl.key} | {wl.skip} | | | | |")
            continue
        out += [row(tool, wl, results) for tool in tools.values()]
    return "\n".join(out)


def paired_lines(tools: dict[str, Tool], workloads: list[Workload], results: Results) -> list[str]:
    """Each no-op that was timed alternating with its floor, and that floor."""
    lines = []
    for wl in workloads:
        for tool in tools.values():
            noop = results.get(wl.key, f"{tool.key}.paired_noop")
            floor = results.get(wl.key, f"{tool.key}.paired_floor")
            if noop and floor:
                ratio = statistics.median(noop) / statistics.median(floor)
                lines.append(
                    f"- {wl.key} {tool.label}, no-op alternating with {tool.floor} right after "
                    f"the fresh apply ({len(noop)} each): {fmt_range(noop)} ms vs "
                    f"{fmt_range(floor)} ms ({ratio:.2f}×)"
                )
    return lines


def importtime_line(it: dict[str, object]) -> str:
    if not it:
        return "- `python -X importtime`: not available (sqlrunner did not import)"
    if "error" in it:
        return f"- `python -X importtime`: failed: {it['error']}"
    ms = {k: fmt_ms(v) if isinstance(v, float) else "—" for k, v in it.items()}
    return (
        "- `python -X importtime -c CODE`, all top-level imports summed (interpreter start-up "
        f"included), median of 5: `import psycopg` {ms['psycopg']} ms; `import sqlrunner` "
        f"{ms['package']} ms, {ms['package_added']} ms beyond psycopg's modules; "
        f"`import sqlrunner; sqlrunner.apply` {ms['library']} ms, {ms['library_added']} ms beyond "
        f"psycopg's modules; `import sqlrunner.cli` "
        f"{ms['cli']} ms, {ms['cli_added']} ms beyond psycopg's modules; click imported by "
        f"`import sqlrunner`: {'yes' if it['click'] else 'no'}"
    )


def details(
    tools: dict[str, Tool], workloads: list[Workload], results: Results, it: dict[str, object]
) -> list[str]:
    """The lines under the table: what each row runs, and the paired measurements."""
    lines = [f"- {wl.title}" + (f" ({wl.skip})" if wl.skip else "") for wl in workloads]
    lines += [f"- {t.label}: {t.how}" for t in tools.values() if t.how]
    lines.append(
        "- connections = new sessions on the target database; commits = committed "
        "transactions there, counting each connection's start-up transaction and "
        "every autocommit statement; no-op figures are per no-op apply"
    )
    return [*lines, *paired_lines(tools, workloads, results), importtime_line(it)]


def problems(tools: dict[str, Tool], notes: list[str]) -> list[str]:
    skipped = [f"- {t.label}: {t.reason}" for t in tools.values() if t.reason]
    failed = [f"- {t.label} on {wk}: {why}" for t in tools.values() for wk, why in t.failed.items()]
    out = ["", "Skipped or failed:", "", *skipped, *failed] if skipped or failed else []
    return out + (["", *[f"Note: {n}" for n in notes]] if notes else [])


def render(
    head: str,
    tools: dict[str, Tool],
    workloads: list[Workload],
    results: Results,
    importtime: dict[str, object],
    notes: list[str],
) -> str:
    """The whole report after the versions: table, details, targets, problems."""
    run = {wl.key for wl in workloads if not wl.skip}
    return "\n".join(
        [
            head,
            "",
            table(tools, workloads, results),
            "",
            *details(tools, workloads, results, importtime),
            "",
            "Targets (this run):",
            "",
            "```",
            *verdicts(results, run),
            "```",
            *problems(tools, notes),
        ]
    )


def versions(tools: dict[str, Tool], pg: str, kind: str) -> list[str]:
    out = [
        f"- PostgreSQL {pg} (`--pg {kind}`), unix socket, stock settings but autovacuum off",
        f"- Python {platform.python_version()}",
    ]
    seen: dict[str, str] = {}
    for t in tools.values():
        seen.setdefault(t.product, t.version if t.available else t.reason)
    return out + [f"- {name}: {v}" for name, v in seen.items()]


def machine() -> str:
    cpu = ""
    try:
        models = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
        cpu = models[0].split(":", 1)[1].strip() if models else ""
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores{', ' + cpu if cpu else ''}, {platform.system()} "
        f"{platform.machine()}"
    )


def write_results(path: Path, command: str, version_lines: list[str], body: str) -> None:
    """Replace the 'Peers' section of RESULTS.md, keeping its 'What we learned'."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    section = re.search(r"^## Peers\n(.*?)(?=^## |\Z)", old, re.S | re.M)
    learned = PLACEHOLDER
    if section:
        found = re.search(r"^### What we learned\n(.*?)(?=^##|\Z)", section.group(1), re.S | re.M)
        learned = found.group(1).strip() if found and found.group(1).strip() else PLACEHOLDER
    new_section = "\n".join(
        [
            "## Peers",
            "",
            "<!-- written by `python bench/peers.py --write-results`; everything but "
            "'What we learned' is replaced on the next write -->",
            "",
            f"Command: `{command}`, on {dt.date.today().isoformat()}; machine: {machine()}.",
            "",
            "Versions:",
            "",
            *version_lines,
            "",
            body,
            "",
            "Method: see the docstring of bench/peers.py and 'How the bench is organised' above.",
            "",
            "### What we learned",
            "",
            learned,
            "",
        ]
    )
    if section:
        new = old[: section.start()] + new_section + "\n" + old[section.end() :].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + new_section
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")
