"""The batched header, the :lo/:hi substitution psql would do, and the size optimiser."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlrunner.backfill import next_size
from sqlrunner.batched import BatchSpec, parse_header, variables
from sqlrunner.files import Migration
from sqlrunner.position import duration_ms, is_batched
from sqlrunner.sqltext import script_for


def forward(text: str) -> Migration:
    return Migration("forward", 4, "fill", Path("sql/forward/0004_fill.sql"), "c", text, False)


def test_the_header_names_table_key_size_target_and_derived_columns() -> None:
    spec = parse_header(
        "-- sqlrunner: batched table=public.llm_usage_logs key=id size=10_000 "
        "target=250ms derived=provider,cost_usd"
    )
    assert spec == BatchSpec(
        "public", "llm_usage_logs", "id", 10_000, 250, ("provider", "cost_usd")
    )


def test_the_header_defaults_and_folds_names_like_postgresql() -> None:
    spec = parse_header("--sqlrunner:batched table=Events key=ID size=5")
    assert (spec.schema, spec.table, spec.key, spec.target_ms, spec.derived) == (
        None,
        "events",
        "id",
        500,
        (),
    )
    assert parse_header("-- sqlrunner: batched table=t key=id size=5 target=off").target_ms is None


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("-- sqlrunner: batched key=id size=5", "missing table="),
        ("-- sqlrunner: batched table=t key=id size=5 size=6", "size= given twice"),
        ("-- sqlrunner: batched table=t key=id size=-5", "size=-5"),
        ("-- sqlrunner: batched table=a.b.c key=id size=5", "table=a.b.c"),
        ('-- sqlrunner: batched table=t key="id" size=5', "key="),
        ("-- sqlrunner: batched table=t key=id size=5 target=0ms", "at least 1ms"),
        ("-- sqlrunner: batched table=t key=id size=5 derived=", "not name=value"),
        ("-- sqlrunner: batched table=t key=id size=5 derived=a,b-c", "derived=a,b-c"),
        ("-- sqlrunner: batched table=t key=id size=5 lo", "not name=value"),
    ],
)
def test_a_bad_header_says_what_is_wrong(header: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as bad:
        parse_header(header)
    assert says in str(bad.value)


def test_durations_need_a_unit() -> None:
    assert [duration_ms(v) for v in ("500ms", "2s", "1.5s", "10m", "10min", "1h")] == [
        500,
        2000,
        1500,
        600_000,
        600_000,
        3_600_000,
    ]
    with pytest.raises(ValueError):
        duration_ms("500")


def test_only_forward_files_with_the_mark_are_batched() -> None:
    assert is_batched(forward("-- sqlrunner: batched table=t key=id size=1\n"))
    assert not is_batched(forward("-- sqlrunner: batchedx table=t\n"))
    assert not is_batched(forward("-- sqlrunner: no-transaction\n"))
    seed = Migration("seed", 1, "s", Path("s.sql"), "c", "-- sqlrunner: batched\n", False)
    assert not is_batched(seed)


def test_variables_are_found_where_psql_finds_them() -> None:
    text = (
        "UPDATE t SET a = ':lo', b = $$:hi$$, c = E':lo\\'', d = \"x:lo\" -- :lo\n"
        "/* :hi /* nested :lo */ */ WHERE id >= :lo AND id < :hi::bigint AND x[1:hi] = :'q'"
    )
    found = variables(text)
    assert [raw for _, raw in found] == [":lo", ":hi", ":hi", ":'q'"]
    assert [text[offset : offset + len(raw)] for offset, raw in found] == [
        ":lo",
        ":hi",
        ":hi",
        ":'q'",
    ]
    assert variables("SELECT a::int, b :: int FROM t") == []


HEADER = "-- sqlrunner: batched table=t key=id size=10\n"


def test_substitution_writes_the_bounds_as_literals_and_nothing_else() -> None:
    script = script_for(
        forward(HEADER + "UPDATE t SET n = ':lo' || $q$:hi$q$ WHERE id >= :lo AND id < :hi;\n")
    )
    assert script.batch is not None
    assert script.batch.render(1, 10_001) == (
        "UPDATE t SET n = ':lo' || $q$:hi$q$ WHERE id >= 1 AND id < 10001"
    )
    # a negative bound keeps its space: "x-:lo" must not become the comment "x--5"
    assert script.batch.render(-5, 3).endswith("id >=  -5 AND id < 3")


def test_error_positions_map_back_through_the_substitution() -> None:
    script = script_for(forward(HEADER + "UPDATE t SET n = 1 WHERE id >= :lo AND id < :hi AND z\n"))
    batch = script.batch
    assert batch is not None
    text = batch.statement.text
    for lo, hi in ((1, 9), (123_456_789, 987_654_321_000)):
        rendered = batch.render(lo, hi)
        # the same token, before and after each substituted bound
        for word in ("UPDATE", "id <", "AND z"):
            assert batch.position_in_file(lo, hi, rendered.index(word) + 1) == text.index(word) + 1
        # inside a literal: the bound it stands for
        inside = rendered.index(str(hi), rendered.index("id <")) + len(str(hi))  # its last
        assert batch.position_in_file(lo, hi, inside) == text.index(":hi") + 1


def test_the_statement_keeps_the_file_text_and_position() -> None:
    script = script_for(forward(HEADER + "-- why\n\n  DELETE FROM t WHERE id >= :lo AND id < :hi;"))
    (statement,) = script.statements
    assert (statement.line, statement.column, statement.kind) == (4, 3, "DeleteStmt")
    assert statement.text == "DELETE FROM t WHERE id >= :lo AND id < :hi"


@pytest.mark.parametrize(
    ("size", "took_ms", "target", "expected"),
    [
        (1000, 100, 500, 1200),  # fast: grow, by 20% at most
        (1000, 450, 500, 1000),  # within 10% of the target: keep
        (1000, 520, 500, 1000),
        (1000, 700, 500, 714),  # a bit slow: shrink in proportion
        (1000, 5000, 500, 500),  # far too slow: halve at most
        (1000, 100, None, 1000),  # target=off
        (100_000, 1, 500, 100_000),  # never past 100x the header's size
        (10, 10_000, 500, 10),  # nor under 1/100 of it
    ],
)
def test_the_size_moves_toward_the_target_within_bounds(
    size: int, took_ms: float, target: int | None, expected: int
) -> None:
    assert next_size(size, took_ms, target, initial=1000) == expected
