"""What importing costs: ``python -X importtime -c CODE`` for psycopg and sqlrunner.

Cases: ``import psycopg``; ``import sqlrunner``; ``import sqlrunner;
sqlrunner.apply`` (the library path, the same unless names load lazily);
``import sqlrunner.cli``.  Per case, the sum of all top-level imports
(interpreter start-up included) and what the case imports beyond psycopg's
modules (self times); medians of 5 after one untimed round.  Also whether
``import sqlrunner`` imports click (it must not: only the CLI needs it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from _timing import first_line, median

CASES = {
    "psycopg": "import psycopg",
    "package": "import sqlrunner",
    "library": "import sqlrunner; sqlrunner.apply",
    "cli": "import sqlrunner.cli",
}
LINE = re.compile(r"import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)")


def imports(code: str, env: dict[str, str], cwd: Path) -> tuple[float, dict[str, int]]:
    """(total ms of the top-level imports, self µs by module) of one run of code."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    if r.returncode != 0:
        raise RuntimeError(first_line(r.stderr))
    total, selfs = 0, {}
    for m in LINE.finditer(r.stderr):
        selfs[m.group(4)] = int(m.group(1))
        if len(m.group(3)) <= 1:  # no indent: a top-level import
            total += int(m.group(2))
    return total / 1000, selfs


def measure(env: dict[str, str], cwd: Path, rounds: int = 5) -> dict[str, object]:
    """Medians per case: ``{case}`` total ms, ``{case}_added`` ms beyond psycopg, ``click``."""
    totals: dict[str, list[float]] = {k: [] for k in CASES}
    added: dict[str, list[float]] = {k: [] for k in CASES}
    click = False
    try:
        for i in range(rounds + 1):
            selfs = {}
            for key, code in CASES.items():
                total, selfs[key] = imports(code, env, cwd)
                if i == 0:
                    continue  # the first round may still be warming caches
                totals[key].append(total)
                extra = sum(t for name, t in selfs[key].items() if name not in selfs["psycopg"])
                added[key].append(extra / 1000)
            click = click or "click" in selfs["package"] or "click" in selfs["library"]
    except RuntimeError as e:
        return {"error": str(e)}
    out: dict[str, object] = {k: median(v) for k, v in totals.items()}
    out.update({f"{k}_added": median(v) for k, v in added.items()})
    out["click"] = click
    return out
