"""What the fleet shows: the per-target line, JSON lines, and the library staying silent."""

from __future__ import annotations

import io
import json

from sqlrunner import fleet
from sqlrunner.cli.output import fleet_printer as event_printer
from sqlrunner.fleet_report import FleetEvent, TargetResult

from .sets import TENANT_SET

FAILED = TargetResult(
    "acme",
    "host=db password=***",
    None,
    "failed",
    4,
    ("forward/0001_accounts.sql",),
    (),
    "forward/0002_x.sql:3:5: SQLSTATE 42P07: boom",
    "MigrationFailed",
    "forward/0002_x.sql:3:5",
    12,
)
OK = TargetResult(
    "beta", "host=db", None, "ok", 0, ("forward/0001_accounts.sql",), (), duration_ms=7
)


def test_event_lines_as_text_json_and_quiet():
    text, lines, quiet = io.StringIO(), io.StringIO(), io.StringIO()
    for stream, verbosity, fmt in ((text, 0, "text"), (lines, 0, "json"), (quiet, -1, "text")):
        show = event_printer(stream, verbosity, fmt)
        show(FleetEvent("target_finished", "[1/2] ok beta", 1, 2, OK))
        show(FleetEvent("target_finished", "[2/2] FAILED acme", 2, 2, FAILED))
    assert text.getvalue().splitlines() == ["[1/2] ok beta", "[2/2] FAILED acme"]
    assert quiet.getvalue().splitlines() == ["[2/2] FAILED acme"]
    docs = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert docs[1]["event"] == "target_finished" and docs[1]["location"] == "forward/0002_x.sql:3:5"
    assert docs[1]["exit_code"] == 4 and docs[1]["done"] == 2 and docs[1]["total"] == 2


def test_result_line_says_done_total_verdict_and_duration():
    line = fleet.result_line(FAILED, 7, 200)
    assert line.startswith("[  7/200] FAILED") and "exit 4: forward/0002_x.sql:3:5" in line
    assert line.endswith("(12 ms)")


def test_the_library_never_prints(capsys, sql_set, dsn):
    report = fleet.apply([dsn], sql_set(TENANT_SET))
    status = fleet.status([dsn], sql_set(TENANT_SET))
    assert report.exit_code == 0 and status.exit_code == 0
    assert capsys.readouterr() == ("", "")
    doc = json.loads(report.to_json())
    assert doc["report"] == "fleet-apply" and doc["results"][0]["applied"] == [
        "forward/0001_accounts.sql",
        "forward/0002_invoices.sql",
        "forward/0003_invoice_total.sql",
    ]
