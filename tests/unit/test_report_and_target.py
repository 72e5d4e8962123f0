"""Reports (JSON and text), DSN masking, durations and the lock-retry policy."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from typing import Any

import pytest

from sqlrunner.errors import UsageError
from sqlrunner.locking import RetryPolicy
from sqlrunner.plan import FileState
from sqlrunner.report import (
    ApplyReport,
    CheckResult,
    FileResult,
    Report,
    RollbackReport,
    StatusReport,
    VerifyReport,
    render_text,
    to_dict,
    to_json,
)
from sqlrunner.session import duration_ms, mask_password

TARGET = "postgresql://app:***@db:5432/app"
WHEN = datetime(2024, 5, 7, 9, 30, tzinfo=timezone.utc)
OK = CheckResult("verify/0001_base.sql", "users_table_exists", True, "found")
BAD = CheckResult("verify/0002_orders.sql", "orders_have_owner", False, "3 orphans")
APPLIED = FileResult("forward", 2, "users", "applied", duration_ms=12, statements=3)
SEEDED = FileResult("seed", 1, "countries", "seeded", duration_ms=4, attempts=3)


def roundtrip(report: Report) -> dict[str, Any]:
    """The --json document, parsed back: it must be one valid JSON object."""
    document = json.loads(to_json(report))
    assert isinstance(document, dict)
    assert document.keys() == to_dict(report).keys()
    return document


# --- JSON documents ----------------------------------------------------------------------


def test_apply_report_json_has_what_ran_and_the_verdict() -> None:
    report = ApplyReport(TARGET, (APPLIED,), (SEEDED,), VerifyReport(TARGET, (OK, BAD), 7), 42)

    document = roundtrip(report)

    assert document["report"] == "apply"
    assert document["target"] == TARGET
    assert document["duration_ms"] == 42
    assert document["dry_run"] is False
    assert document["applied"] == [
        {
            "kind": "forward",
            "version": 2,
            "name": "users",
            "action": "applied",
            "duration_ms": 12,
            "attempts": 1,
            "statements": 3,
            "no_transaction": False,
        }
    ]
    assert document["seeded"][0]["attempts"] == 3
    assert document["verification"]["ok"] is False
    assert [c["check"] for c in document["verification"]["checks"]] == [
        "users_table_exists",
        "orders_have_owner",
    ]


def test_apply_report_json_without_verification_has_null() -> None:
    document = roundtrip(ApplyReport(TARGET, (), (), None, 1, notes=("seeds deferred",)))

    assert document["verification"] is None
    assert document["applied"] == [] and document["seeded"] == []
    assert document["notes"] == ["seeds deferred"]


def test_verify_report_json_has_every_check_and_ok() -> None:
    document = roundtrip(VerifyReport(TARGET, (OK, BAD), 5))

    assert document["report"] == "verify"
    assert document["ok"] is False
    assert document["checks"][1] == {
        "file": "verify/0002_orders.sql",
        "check": "orders_have_owner",
        "ok": False,
        "detail": "3 orphans",
    }
    assert roundtrip(VerifyReport(TARGET, (OK,)))["ok"] is True


def test_status_report_json_lists_states_pending_and_drift() -> None:
    files = (
        FileState("forward", 1, "base", "applied", WHEN, "deploy"),
        FileState("forward", 2, "users", "drifted", WHEN, "deploy"),
        FileState("forward", 3, "orders", "pending"),
        FileState("forward", 4, "gone", "missing", WHEN, "dba"),
        FileState("seed", 1, "countries", "changed", WHEN, "deploy"),
    )
    document = roundtrip(StatusReport(TARGET, files))

    assert document["report"] == "status"
    assert document["up_to_date"] is False
    assert document["pending"] == ["forward/0003_orders", "seed/0001_countries"]
    assert document["drifted"] == ["forward/0002_users", "forward/0004_gone"]
    assert document["files"][0]["applied_at"] == "2024-05-07T09:30:00+00:00"
    assert document["files"][0]["applied_by"] == "deploy"
    assert document["files"][2]["applied_at"] is None


def test_status_report_json_up_to_date() -> None:
    files = (FileState("forward", 1, "base", "applied", WHEN, "deploy"),)
    document = roundtrip(StatusReport(TARGET, files))

    assert document["up_to_date"] is True
    assert document["pending"] == [] and document["drifted"] == []


def test_rollback_report_json_names_what_was_undone_and_data_at_risk() -> None:
    undone = FileResult("rollback", 3, "orders", "would roll back")
    document = roundtrip(RollbackReport(TARGET, (undone,), 9, True, ("table orders: 12 rows",)))

    assert document["report"] == "rollback"
    assert document["dry_run"] is True
    assert document["rolled_back"][0]["version"] == 3
    assert document["data_at_risk"] == ["table orders: 12 rows"]


# --- text --------------------------------------------------------------------------------


def test_apply_text_lists_each_file_and_a_summary() -> None:
    text = render_text(ApplyReport(TARGET, (APPLIED,), (SEEDED,), VerifyReport(TARGET, (OK,)), 42))

    assert "applied forward/0002_users.sql (12 ms)" in text
    assert "seeded seed/0001_countries.sql (4 ms, 3 attempts)" in text
    assert "applied 1 migration(s), 1 seed(s) in 42 ms" in text
    assert "ok   users_table_exists: found" in text
    assert "verify: 1 checks, all ok" in text


def test_apply_text_when_nothing_is_pending() -> None:
    assert render_text(ApplyReport(TARGET, (), (), None, 1)) == "nothing to apply: up to date"


def test_dry_run_text_says_nothing_changed() -> None:
    would = FileResult("forward", 1, "base", "would apply")
    text = render_text(ApplyReport(TARGET, (would,), (), None, 1, dry_run=True))

    assert text.splitlines() == [
        "would apply forward/0001_base.sql (0 ms)",
        "dry run: nothing was changed",
    ]
    assert render_text(ApplyReport(TARGET, (), (), None, 1, dry_run=True)) == (
        "dry run: nothing to do"
    )


def test_verify_text_marks_failures() -> None:
    text = render_text(VerifyReport(TARGET, (OK, BAD)))

    assert "FAIL orders_have_owner: 3 orphans" in text
    assert text.endswith("verify: 2 checks, 1 failed")


def test_status_text_shows_state_label_and_who() -> None:
    files = (
        FileState("forward", 1, "base", "applied", WHEN, "deploy"),
        FileState("forward", 2, "users", "pending"),
    )
    lines = render_text(StatusReport(TARGET, files)).splitlines()

    # ISO 8601 with offset (issue 12, item 12)
    assert lines[0].startswith("applied  forward/0001_base  2024-05-07T09:30:00+00:00 by deploy")
    assert lines[1] == "pending  forward/0002_users"
    assert lines[-1] == "1 pending, 0 drifted or missing"
    assert render_text(StatusReport(TARGET, ())).splitlines() == [
        "no migration files",
        "up to date",
    ]


def test_rollback_text_lists_data_at_risk() -> None:
    undone = FileResult("rollback", 3, "orders", "rolled back", duration_ms=5)
    text = render_text(RollbackReport(TARGET, (undone,), 6, False, ("table orders: 2 rows",)))

    assert "rolled back rollback/0003_orders.sql (5 ms)" in text
    assert "data at risk: table orders: 2 rows" in text
    assert text.endswith("rolled back 1 migration(s) in 6 ms")


def test_status_shows_a_failed_file_with_when_who_and_the_error_and_counts_it_pending() -> None:
    failed = FileState(
        "forward", 2, "users", "failed", failed_at=WHEN, failed_by="ci", error="boom at 2:1"
    )
    report = StatusReport(TARGET, (FileState("forward", 1, "base", "applied", WHEN, "ci"), failed))

    lines = render_text(report).splitlines()
    assert lines[1] == "failed   forward/0002_users  2024-05-07 09:30:00+0000 by ci: boom at 2:1"
    assert lines[-1] == "1 pending (1 failed), 0 drifted or missing"
    document = roundtrip(report)
    assert document["failed"] == document["pending"] == ["forward/0002_users"]
    assert document["files"][1]["error"] == "boom at 2:1"


def test_status_with_future_versions_is_up_to_date_and_seeds_wait() -> None:
    report = StatusReport(
        TARGET,
        (
            FileState("forward", 1, "base", "applied", WHEN, "ci"),
            FileState("forward", 2, "newer", "future", WHEN, "ci"),
            FileState("seed", 1, "countries", "changed", WHEN, "ci"),
        ),
        ("future: 0002_newer applied by a newer release (not in this sql/)",),
    )

    assert report.up_to_date and report.pending == () and report.drifted == ()
    document = roundtrip(report)
    assert document["future"] == ["forward/0002_newer"] and document["up_to_date"] is True
    assert render_text(report).splitlines()[-2:] == [
        "future: 0002_newer applied by a newer release (not in this sql/)",
        "up to date",
    ]


def test_rollback_text_ends_with_where_it_stopped_before_the_summary() -> None:
    undone = FileResult("rollback", 2, "users", "rolled back", duration_ms=5)
    note = "forward/0001_base.sql is irreversible (...): it stays applied"
    report = RollbackReport(TARGET, (undone,), 6, notes=(note,))

    assert render_text(report).splitlines()[-2:] == [note, "rolled back 1 migration(s) in 6 ms"]
    assert roundtrip(report)["notes"] == [note]


# --- DSN masking -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://unicorn:s3cret@db:5432/unicorn_db",
            "postgresql://unicorn:***@db:5432/unicorn_db",
        ),
        ("postgres://unicorn:s3cret@db/unicorn_db", "postgres://unicorn:***@db/unicorn_db"),
        ("postgresql://unicorn:s%40cr%2Fet@db/x", "postgresql://unicorn:***@db/x"),
        # libpq cannot parse these two (a '/' before the '@'; an upper-case key): hidden whole
        ("postgresql://unicorn:pa?ss#wo/rd@db/x", "<unparsable DSN>"),
        ("postgresql://:s3cret@db/x", "postgresql://:***@db/x"),
        ("postgresql://u:s3cret@[::1]:5432/x", "postgresql://u:***@[::1]:5432/x"),
        (
            "postgresql://u:s3cret@h1:5432,h2:5433/x?sslmode=require",
            "postgresql://u:***@h1:5432,h2:5433/x?sslmode=require",
        ),
        (
            "postgresql://db/x?password=s3cret&sslmode=require",
            "postgresql://db/x?password=***&sslmode=require",
        ),
        ("postgresql://db/x?sslmode=require&PASSWORD=s3cret", "<unparsable DSN>"),
    ],
)
def test_url_passwords_are_masked(dsn: str, shown: str) -> None:
    assert mask_password(dsn) == shown
    assert "s3cret" not in mask_password(dsn)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://unicorn@db:5432/unicorn_db",
        "postgresql://db/unicorn_db",
        "postgresql:///unicorn_db?host=/var/run/postgresql",
        "postgresql://unicorn:@db/unicorn_db",
        "postgresql://u@db/x?application_name=me@laptop",
    ],
)
def test_urls_without_a_password_are_shown_unchanged(dsn: str) -> None:
    assert mask_password(dsn) == dsn


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db user=unicorn password=s3cret dbname=unicorn_db",
        "host=db password='s3cret with spaces' dbname=unicorn_db",
        "password=s3cret",
    ],
)
def test_conninfo_passwords_are_masked(dsn: str) -> None:
    shown = mask_password(dsn)

    assert "s3cret" not in shown
    assert "password=***" in shown


def test_conninfo_keeps_everything_but_the_password() -> None:
    shown = mask_password("host=db port=6432 user=unicorn password=s3cret dbname=unicorn_db")

    assert set(shown.split()) == {
        "host=db",
        "port=6432",
        "user=unicorn",
        "password=***",
        "dbname=unicorn_db",
    }


def test_conninfo_without_a_password_has_no_password_key() -> None:
    assert "password" not in mask_password("host=db user=unicorn dbname=x")


def test_an_unparsable_dsn_is_never_echoed() -> None:
    assert mask_password("host=db password='s3cret") == "<unparsable DSN>"


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("200ms", 200),
        ("200", 200),
        (" 250 ms ", 250),
        ("2s", 2000),
        ("1.5s", 1500),
        ("3sec", 3000),
        ("1min", 60000),
        (150, 150),
        (2.5, 2),
    ],
)
def test_duration_ms_parses_units(value: str | int | float, ms: int) -> None:
    assert duration_ms(value) == ms


@pytest.mark.parametrize("value", ["", "fast", "2d", "-5ms", "5 m s", "1e3ms", "ms"])
def test_a_bad_duration_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError) as caught:
        duration_ms(value)

    assert caught.value.exit_code == 2
    assert repr(value) in str(caught.value)
    assert "200ms" in str(caught.value)


# --- retry policy ------------------------------------------------------------------------


class Extreme(random.Random):
    """Always the top (or bottom) of the jitter range: the worst (or best) case."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def test_one_delay_per_retry() -> None:
    assert len(list(RetryPolicy().delays())) == RetryPolicy().retries
    assert len(list(RetryPolicy(retries=3).delays())) == 3
    assert list(RetryPolicy(retries=0).delays()) == []


def test_default_retries_give_up_after_about_a_minute_at_worst() -> None:
    policy = RetryPolicy()
    worst = sum(policy.delays(Extreme(top=True)))
    best = sum(policy.delays(Extreme(top=False)))
    attempts = (policy.retries + 1) * policy.lock_timeout_ms / 1000

    assert 30 <= worst <= 90
    assert worst + attempts <= 90  # plus one lock_timeout per attempt
    assert best > 10  # long enough to outlast a typical lock holder


def test_jitter_stays_within_half_to_one_and_a_half_of_the_backoff() -> None:
    policy = RetryPolicy()
    base = [min(policy.max_delay, policy.base_delay * 2**i) for i in range(policy.retries)]
    for seed in range(20):
        delays = list(policy.delays(random.Random(seed)))
        for delay, nominal in zip(delays, base, strict=True):
            assert 0.5 * nominal <= delay <= 1.5 * nominal
    assert max(policy.delays(Extreme(top=True))) == pytest.approx(1.5 * policy.max_delay)


def test_jitter_differs_between_runners() -> None:
    policy = RetryPolicy()
    assert list(policy.delays(random.Random(1))) != list(policy.delays(random.Random(2)))


def test_backoff_grows_then_is_capped() -> None:
    nominal = list(RetryPolicy(retries=8).delays(Extreme(top=False)))

    assert nominal[:3] == pytest.approx([0.05, 0.1, 0.2])
    assert nominal[-1] == pytest.approx(1.5)  # half of the 3 s cap


def test_lock_timeout_setting_is_in_milliseconds() -> None:
    assert RetryPolicy(lock_timeout_ms=200).lock_timeout_setting == "200ms"
    assert RetryPolicy(duration_ms("2s")).lock_timeout_setting == "2000ms"
