"""The DSN's password never shows: every command x every channel x every way to give it.

Channels: stdout, stderr, the ``--json`` document, the ``-vv`` log, and what
the run leaves in the database (the history table, application_name). DSN
forms: a URL, a key=value conninfo, a URL whose password hides behind a
percent-encoded key, PGPASSWORD, a .pgpass file, and DSNs libpq cannot parse.
Usage errors included. The test server trusts local clients, so it ignores
the password and every run really connects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from .clirun import Run, invoke, run_process
from .conftest import SqlSet

PASSWORD = "Pw-7x9Qz-secret"
FILES = {
    "forward/0001_items.sql": "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY);\nCOMMIT;\n",
    "rollback/0001_items.sql": "BEGIN;\nDROP TABLE items;\nCOMMIT;\n",
    "seed/0001_items.sql": "BEGIN;\nINSERT INTO items VALUES (1) ON CONFLICT DO NOTHING;\nCOMMIT;\n",
    "verify/0001_items.sql": "SELECT 'items', to_regclass('items') IS NOT NULL, 'items exists';\n",
}
COMMANDS: list[tuple[tuple[str, ...], int]] = [
    (("apply", "--dry-run"), 0),
    (("apply",), 0),
    (("status",), 0),
    (("verify",), 0),
    (("seed",), 0),
    (("history",), 0),
    (("rollback", "--dry-run"), 0),
    (("rollback", "--yes"), 0),
    (("repair", "--forget-seeds"), 0),
    (("status", "--exit-code"), 6),
    (("stop-embedded",), 0),
]
CHANNELS = ([], ["--json"], ["-vv"])


def url_of(dsn: str, **extra: str) -> str:
    p = conninfo_to_dict(dsn)
    query = "&".join(f"{k}={v}" for k, v in {"host": p["host"], "port": p["port"], **extra}.items())
    return f"postgresql://{p.get('user', 'postgres')}@/{p['dbname']}?{query}"


def url(dsn: str, tmp: Path) -> tuple[str, dict[str, str]]:
    return url_of(dsn).replace("@/", f":{PASSWORD}@/", 1), {}


def conninfo(dsn: str, tmp: Path) -> tuple[str, dict[str, str]]:
    return f"{dsn} password={PASSWORD}", {}


def encoded_key(dsn: str, tmp: Path) -> tuple[str, dict[str, str]]:
    return url_of(dsn, **{"pass%77ord": PASSWORD}), {}


def pgpassword(dsn: str, tmp: Path) -> tuple[str, dict[str, str]]:
    return dsn, {"PGPASSWORD": PASSWORD}


def pgpass(dsn: str, tmp: Path) -> tuple[str, dict[str, str]]:
    passfile = tmp / "pgpass"
    passfile.write_text(f"*:*:*:*:{PASSWORD}\n")
    passfile.chmod(0o600)
    return dsn, {"PGPASSFILE": str(passfile)}


FORMS: dict[str, Callable[[str, Path], tuple[str, dict[str, str]]]] = {
    "url": url,
    "conninfo": conninfo,
    "encoded_key": encoded_key,
    "pgpassword": pgpassword,
    "pgpass": pgpass,
}


def usage_errors(dsn: str) -> list[tuple[str, ...]]:
    """Misplaced or mistyped words around a DSN: click quotes what it could not use."""
    return [
        ("status", "--dsn", dsn, "--no-such-option"),
        ("--dsn", dsn, "frobnicate"),
        ("status", dsn),
        ("apply", "--lock-retries", dsn),
        ("apply", "--to", dsn),
        (f"--dsn={dsn}", "apply", "--runner-wait", "nan"),
        ("rollback", "--dsn", dsn, "--steps", "1", "--to", "1"),
        ("history", "--limit", "0", "--dsn", dsn),
    ]


def assert_hidden(runs: list[Run]) -> None:
    for run in runs:
        assert PASSWORD not in run.output, run.output
        assert "Traceback" not in run.output, run.output


def left_in_database(dsn: str) -> str:
    """Everything sqlrunner wrote to its history, and every session's application_name."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT string_agg(h::text, ' ') FROM sqlrunner_ledger_history h)"
            " || (SELECT string_agg(coalesce(application_name, ''), ' ') FROM pg_stat_activity)"
        ).fetchone()
    return str(row[0] if row else "")


@pytest.mark.parametrize("form", FORMS)
def test_no_command_on_any_channel_shows_the_password(
    dsn: str, sql_set: SqlSet, tmp_path: Path, form: str
) -> None:
    root = sql_set(FILES)
    given, env = FORMS[form](dsn, tmp_path)
    runs: list[Run] = []
    for channel in CHANNELS:
        for args, code in COMMANDS:
            run = invoke(*channel, "--dsn", given, "--sql-dir", str(root), *args, env=env)
            assert run.code == code, (args, run.output)
            runs.append(run)
        json_runs = runs[-len(COMMANDS) :] if channel == ["--json"] else []
        for run in json_runs:
            if run.stdout:
                json.loads(run.stdout)  # one document, password-free like the rest
    new = invoke("--dsn", given, "--sql-dir", str(root), "new", "add_tags", env=env)
    (root / "forward" / "0003_bad.sql").write_text("BEGIN;\nSELECT 1/0;\nCOMMIT;\n")
    failed = [
        invoke(*c, "--dsn", given, "--sql-dir", str(root), "apply", env=env) for c in CHANNELS
    ]
    usage = [invoke(*argv, env=env) for argv in usage_errors(given)]

    assert new.code == 0
    assert [r.code for r in failed] == [4, 4, 4]
    assert [r.code for r in usage] == [2] * len(usage)
    assert all(len(r.errors) == 1 for r in usage)
    assert_hidden([*runs, new, *failed, *usage])
    assert PASSWORD not in left_in_database(dsn)
    assert "sqlrunner: " in runs[2 * len(COMMANDS) + 1].stderr  # -vv really logged


def test_the_target_line_masks_a_password_behind_a_percent_encoded_key(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(FILES)

    run = invoke("--dsn", url_of(dsn, **{"pass%77ord": PASSWORD}), "--sql-dir", str(root), "status")

    assert run.code == 0, run.output
    assert "pass%77ord=***" in run.stderr.splitlines()[0]


@pytest.mark.parametrize(
    "unparsable",
    [
        f"postgresql://app:{PASSWORD}%zz@localhost/app",  # bad percent-encoding
        f"postgresql://app:{PASSWORD}%00@localhost/app",  # %00
        f"postgresql://app:{PASSWORD}@[::1/app",  # an unclosed [
        f"host=localhost password='{PASSWORD}",  # an unclosed quote
        f"postgresql://app:{PASSWORD}@localhost/app?nosuch=1",  # a key libpq does not know
        f"host=localhost password='{PASSWORD}\\'\"",  # quotes Python's repr() escapes
    ],
)
def test_a_dsn_libpq_cannot_parse_is_never_echoed(sql_set: SqlSet, unparsable: str) -> None:
    root = sql_set(FILES)

    runs = [
        invoke("--dsn", unparsable, "--sql-dir", str(root), *channel, "status")
        for channel in CHANNELS
    ]
    usage = [invoke(*argv) for argv in usage_errors(unparsable)]

    assert_hidden([*runs, *usage])
    for run in runs:
        assert run.code == 3, run.output
        assert "target: <unparsable DSN>" in run.stderr
        assert "invalid DSN <unparsable DSN>: libpq cannot parse it" in run.errors[0]
    assert "<unparsable DSN>" in json.loads(runs[1].stdout)["message"]
    assert [r.code for r in usage] == [2] * len(usage)


def test_a_real_process_hides_it_too(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(FILES)
    given = url_of(dsn).replace("@/", f":{PASSWORD}@/", 1)

    runs = [
        run_process("-vv", "--json", "apply", "--dsn", given, "--sql-dir", str(root)),
        run_process("status", given),  # the DSN where the command expects nothing
        run_process("--dsn", given, "frobnicate"),
    ]

    assert [r.code for r in runs] == [0, 2, 2]
    assert_hidden(runs)
    assert ":***@" in runs[0].stderr
