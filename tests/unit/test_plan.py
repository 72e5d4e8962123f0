"""Planning is pure: files + ledger rows in, what would happen out."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from sqlrunner.errors import ChecksumMismatch, FutureVersions, UsageError
from sqlrunner.files import Migration, MigrationSet, checksum_of
from sqlrunner.plan import (
    Failure,
    LedgerRow,
    drift,
    file_states,
    future,
    plan_apply,
    plan_rollback,
    refuse_drift,
    stopped_in_front_of,
)

WHEN = datetime(2024, 5, 7, 9, 30, tzinfo=timezone.utc)


def m(kind: str, version: int, name: str, text: str = "BEGIN;\nSELECT 1;\nCOMMIT;\n") -> Migration:
    return Migration(
        kind=kind,
        version=version,
        name=name,
        path=Path(f"/sql/{kind}/{version:04d}_{name}.sql"),
        checksum=checksum_of(text.encode()),
        text=text,
        no_transaction=False,
    )


def fileset(*migrations: Migration) -> MigrationSet:
    def of(kind: str) -> tuple[Migration, ...]:
        return tuple(sorted((x for x in migrations if x.kind == kind), key=lambda x: x.version))

    return MigrationSet(Path("/sql"), of("forward"), of("rollback"), of("seed"), of("verify"))


def row(migration: Migration, checksum: str | None = None) -> LedgerRow:
    return LedgerRow(
        migration.kind,
        migration.version,
        migration.name,
        checksum or migration.checksum,
        WHEN,
        "deploy",
    )


F1, F2, F3 = m("forward", 1, "base"), m("forward", 2, "users"), m("forward", 3, "orders")
R2, R3 = m("rollback", 2, "users"), m("rollback", 3, "orders")
S1, S2 = m("seed", 1, "countries"), m("seed", 2, "currencies")
V1, V2, V3 = m("verify", 1, "base"), m("verify", 2, "users"), m("verify", 3, "orders")
ALL = fileset(F1, F2, F3, R2, R3, S1, S2, V1, V2, V3)


# --- file states -------------------------------------------------------------------------


def test_states_of_a_fresh_database_are_all_pending() -> None:
    states = file_states(ALL, [])

    assert [(s.label, s.state) for s in states] == [
        ("forward/0001_base", "pending"),
        ("forward/0002_users", "pending"),
        ("forward/0003_orders", "pending"),
        ("seed/0001_countries", "pending"),
        ("seed/0002_currencies", "pending"),
    ]
    assert drift(states) == ()


def test_applied_files_carry_when_and_by_whom() -> None:
    states = file_states(ALL, [row(F1), row(F2)])

    assert [s.state for s in states if s.kind == "forward"] == ["applied", "applied", "pending"]
    assert states[0].applied_at == WHEN
    assert states[0].applied_by == "deploy"
    assert states[2].applied_at is None


def test_an_edited_applied_forward_file_is_drifted() -> None:
    states = file_states(ALL, [row(F1), row(F2, checksum="0" * 64)])

    assert [(s.label, s.state) for s in drift(states)] == [("forward/0002_users", "drifted")]


def test_a_renamed_applied_forward_file_is_drifted() -> None:
    renamed = LedgerRow("forward", 2, "people", F2.checksum, WHEN, "deploy")
    states = file_states(ALL, [row(F1), renamed])

    assert [(s.label, s.state) for s in drift(states)] == [("forward/0002_users", "drifted")]


def test_an_applied_forward_file_that_vanished_is_missing() -> None:
    # Issue 9.4 changed this test: a gap inside the local range is missing; a version
    # newer than every local file (7 here before) is now "future", pinned below.
    gone = LedgerRow("forward", 2, "removed", "a" * 64, WHEN, "dba")
    states = file_states(fileset(F1, F3), [row(F1), gone])

    missing = [s for s in states if s.state == "missing"]
    assert [(s.label, s.applied_by) for s in missing] == [("forward/0002_removed", "dba")]
    assert drift(states) == tuple(missing)


def test_missing_entries_sort_in_version_order_among_the_files() -> None:
    gone = LedgerRow("forward", 2, "removed", "a" * 64)
    states = file_states(fileset(F1, F3), [row(F1), gone])

    assert [(s.version, s.state) for s in states] == [
        (1, "applied"),
        (2, "missing"),
        (3, "pending"),
    ]


def test_a_changed_seed_is_changed_not_drift() -> None:
    states = file_states(ALL, [row(F1), row(S1, checksum="0" * 64), row(S2)])

    seeds = {s.label: s.state for s in states if s.kind == "seed"}
    assert seeds == {"seed/0001_countries": "changed", "seed/0002_currencies": "applied"}
    assert drift(states) == ()


def test_a_vanished_seed_is_missing_but_not_drift() -> None:
    gone = LedgerRow("seed", 9, "old_seed", "a" * 64)
    states = file_states(ALL, [gone])

    assert ("seed/0009_old_seed", "missing") in [(s.label, s.state) for s in states]
    assert drift(states) == ()


# --- apply -------------------------------------------------------------------------------


def test_apply_plans_pending_forward_files_in_order_then_seeds_then_verify() -> None:
    plan = plan_apply(ALL, [row(F1)])

    assert plan.forward == (F2, F3)
    assert plan.seeds == (S1, S2)
    assert plan.verify == (V1, V2, V3)
    assert plan.seeds_deferred is False
    assert not plan.empty


def test_nothing_to_apply_when_everything_is_applied() -> None:
    plan = plan_apply(ALL, [row(F1), row(F2), row(F3), row(S1), row(S2)])

    assert plan.empty
    assert plan.forward == plan.seeds == ()


def test_only_new_or_changed_seeds_are_planned() -> None:
    plan = plan_apply(ALL, [row(F1), row(F2), row(F3), row(S1, checksum="0" * 64), row(S2)])

    assert plan.forward == ()
    assert plan.seeds == (S1,)
    assert not plan.empty


def test_apply_to_stops_at_that_version_inclusive() -> None:
    plan = plan_apply(ALL, [], to_version=2)

    assert plan.forward == (F1, F2)


def test_seeds_are_deferred_while_forward_files_remain_pending() -> None:
    plan = plan_apply(ALL, [], to_version=2)

    assert plan.seeds == ()
    assert plan.seeds_deferred is True


def test_seeds_are_not_deferred_when_to_reaches_the_newest_version() -> None:
    plan = plan_apply(ALL, [], to_version=3)

    assert plan.seeds == (S1, S2)
    assert plan.seeds_deferred is False


def test_no_seed_plans_no_seeds_and_does_not_call_them_deferred() -> None:
    plan = plan_apply(ALL, [], to_version=2, seed=False)

    assert plan.seeds == ()
    assert plan.seeds_deferred is False


def test_verify_files_are_chosen_by_applied_or_about_to_apply_version() -> None:
    assert plan_apply(ALL, [], to_version=2).verify == (V1, V2)
    assert plan_apply(ALL, [row(F1)], to_version=1).verify == (V1,)
    assert plan_apply(ALL, [], verify=False).verify == ()


def test_verify_file_without_a_forward_version_never_runs() -> None:
    stray = m("verify", 8, "future")
    plan = plan_apply(fileset(F1, stray), [])

    assert plan.verify == ()


def test_apply_to_an_unknown_version_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        plan_apply(ALL, [], to_version=9999)

    assert caught.value.exit_code == 2
    assert "--to 9999" in str(caught.value)
    assert "no forward file with version 9999" in str(caught.value)


def test_apply_to_an_already_applied_version_plans_nothing() -> None:
    plan = plan_apply(ALL, [row(F1), row(F2)], to_version=1)

    assert plan.forward == ()
    assert plan.seeds_deferred is True


def test_a_gap_filled_later_is_planned() -> None:
    # 0002 arrived from another branch after 0003 was applied: it is still pending.
    plan = plan_apply(ALL, [row(F1), row(F3)])

    assert plan.forward == (F2,)


# --- rollback ----------------------------------------------------------------------------


def test_rollback_defaults_to_the_newest_applied_version() -> None:
    steps = plan_rollback(ALL, [row(F1), row(F2), row(F3)])

    assert [(s.forward.version, s.rollback) for s in steps] == [(3, R3)]


def test_rollback_steps_go_newest_first() -> None:
    steps = plan_rollback(ALL, [row(F1), row(F2), row(F3)], steps=2)

    assert [s.rollback for s in steps] == [R3, R2]


def test_rollback_ignores_seed_rows() -> None:
    steps = plan_rollback(ALL, [row(F2), row(S1), row(S2)], steps=1)

    assert [s.rollback for s in steps] == [R2]


def test_rollback_to_leaves_that_version_applied() -> None:
    steps = plan_rollback(ALL, [row(F1), row(F2), row(F3)], steps=None, to_version=1)

    assert [s.forward.version for s in steps] == [3, 2]


def test_rollback_to_the_newest_version_is_nothing_to_do() -> None:
    assert plan_rollback(ALL, [row(F1), row(F2), row(F3)], steps=None, to_version=3) == ()


def test_rollback_stops_in_front_of_an_irreversible_file() -> None:
    with pytest.raises(UsageError) as caught:
        plan_rollback(ALL, [row(F1), row(F2), row(F3)], steps=3)

    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert "forward/0001_base.sql is irreversible" in message
    assert "rollback/0001_base.sql" in message
    assert "after 2 step(s): use --steps 2" in message


def test_rollback_of_only_an_irreversible_file_names_it() -> None:
    with pytest.raises(UsageError) as caught:
        plan_rollback(ALL, [row(F1)])

    assert "forward/0001_base.sql is irreversible" in str(caught.value)
    assert "--steps" not in str(caught.value)


def test_rollback_to_a_version_that_is_not_applied_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        plan_rollback(ALL, [row(F1), row(F2)], steps=None, to_version=3)

    assert "--to 3" in str(caught.value)
    assert "0003 is not applied" in str(caught.value)


def test_rollback_to_an_unknown_version_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="9999 is not applied"):
        plan_rollback(ALL, [row(F1)], steps=None, to_version=9999)


@pytest.mark.parametrize("steps", [0, -1, None])
def test_rollback_needs_at_least_one_step(steps: int | None) -> None:
    with pytest.raises(UsageError, match="--steps must be at least 1"):
        plan_rollback(ALL, [row(F1), row(F2)], steps=steps)


def test_rollback_with_nothing_applied_is_nothing_to_do() -> None:
    assert plan_rollback(ALL, [], steps=1) == ()


def test_more_steps_than_applied_versions_undoes_what_is_reversible() -> None:
    steps = plan_rollback(fileset(F2, F3, R2, R3), [row(F2), row(F3)], steps=10)

    assert [s.forward.version for s in steps] == [3, 2]


# --- future versions (issue 9.4) ------------------------------------------------------------

F4 = m("forward", 4, "newer")


def test_an_applied_version_newer_than_every_local_file_is_future_not_drift() -> None:
    states = file_states(ALL, [row(F1), row(F2), row(F3), row(F4)])

    assert ("forward/0004_newer", "future") in [(s.label, s.state) for s in states]
    assert drift(states) == ()
    assert future(ALL, [row(F1), row(F4)]) == (row(F4),)


def test_a_gap_inside_the_local_range_stays_missing_and_is_refused() -> None:
    older = fileset(F1, F3)

    assert future(older, [row(F1), row(F2), row(F3)]) == ()
    with pytest.raises(ChecksumMismatch, match=r"forward/0002_users \(missing\)"):
        refuse_drift(older, [row(F1), row(F2), row(F3)])


def test_future_versions_are_tolerated_unless_strict() -> None:
    rows = [row(F1), row(F2), row(F3), row(F4)]
    refuse_drift(ALL, rows)  # no error: a newer release applied 0004

    with pytest.raises(FutureVersions) as caught:
        refuse_drift(ALL, rows, strict=True)
    assert caught.value.exit_code == 2
    assert caught.value.versions == ("forward/0004_newer",)
    assert "0004_newer applied by a newer release" in str(caught.value)


def test_future_versions_defer_this_releases_seeds() -> None:
    plan = plan_apply(ALL, [row(F1), row(F2), row(F3), row(F4)])

    assert plan.future == (row(F4),)
    assert plan.forward == () and plan.seeds == ()
    assert plan.seeds_deferred and plan.empty


def test_rollback_of_a_future_version_names_the_newer_release() -> None:
    with pytest.raises(UsageError, match=r"0004 \(newer\) was applied by a newer release"):
        plan_rollback(ALL, [row(F1), row(F2), row(F3), row(F4)])


# --- failed files (issue 10.12) -----------------------------------------------------------


def test_a_pending_file_whose_last_attempt_failed_is_failed_with_when_and_the_error() -> None:
    failure = Failure(
        "forward",
        2,
        F2.checksum,
        WHEN,
        "deploy",
        "forward/0002_users.sql:2:1: "
        "SQLSTATE 22012: division by zero | statement: SELECT 1/0 | fix it",
    )
    states = {s.label: s for s in file_states(ALL, [row(F1)], [failure])}

    failed = states["forward/0002_users"]
    assert (failed.state, failed.failed_at, failed.failed_by) == ("failed", WHEN, "deploy")
    assert failed.error == "forward/0002_users.sql:2:1: SQLSTATE 22012: division by zero"
    assert states["forward/0003_orders"].state == "pending"


def test_a_failure_of_an_applied_file_is_history_not_state() -> None:
    failure = Failure("forward", 1, F1.checksum, WHEN, "deploy", "boom")

    assert file_states(ALL, [row(F1)], [failure])[0].state == "applied"


def test_a_failed_file_edited_since_says_so() -> None:
    failure = Failure("forward", 1, "0" * 64, WHEN, "deploy", "boom | fix it")

    assert file_states(ALL, [], [failure])[0].error == "boom (the file changed since)"


# --- rollback --to 0 (issue 10.13) --------------------------------------------------------


def test_rollback_to_0_undoes_everything_reversible_and_names_where_it_stopped() -> None:
    rows = [row(F1), row(F2), row(F3)]
    steps = plan_rollback(ALL, rows, steps=None, to_version=0)

    assert [s.forward.version for s in steps] == [3, 2]
    note = stopped_in_front_of(rows, steps)
    assert note is not None and "forward/0001_base.sql is irreversible" in note
    assert note.endswith("it stays applied")


def test_rollback_to_0_with_only_an_irreversible_file_applied_does_nothing_and_says_why() -> None:
    steps = plan_rollback(ALL, [row(F1)], steps=None, to_version=0)

    assert steps == ()
    assert "0001_base.sql is irreversible" in str(stopped_in_front_of([row(F1)], steps))


def test_rollback_to_0_of_a_fully_reversible_set_undoes_all_of_it() -> None:
    rows = [row(F2), row(F3)]
    steps = plan_rollback(fileset(F2, F3, R2, R3), rows, steps=None, to_version=0)

    assert [s.forward.version for s in steps] == [3, 2]
    assert stopped_in_front_of(rows, steps) is None


def test_rollback_to_0_stops_at_an_irreversible_file_between_reversible_ones() -> None:
    files = fileset(F1, F2, F3, F4, R2, m("rollback", 4, "newer"))
    rows = [row(F1), row(F2), row(F3), row(F4)]
    steps = plan_rollback(files, rows, steps=None, to_version=0)

    assert [s.forward.version for s in steps] == [4]
    assert "forward/0003_orders.sql is irreversible" in str(stopped_in_front_of(rows, steps))
