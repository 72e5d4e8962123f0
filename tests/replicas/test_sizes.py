"""Sizes for --max-replica-lag and how far behind a standby is, without a database."""

from __future__ import annotations

import pytest

from sqlrunner.errors import UsageError
from sqlrunner.replicas import parse_size, size
from tests.integration.clirun import invoke


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 1 << 20),
        ("64MB", 64 << 20),
        ("64 mb", 64 << 20),
        ("1GB", 1 << 30),
        ("512kB", 512 << 10),
        ("1.5G", 3 << 29),
        ("100 bytes", 100),
        ("0", 0),
    ],
)
def test_sizes_count_in_units_of_1024_like_postgresql(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "64 XB", "1e9", "64MBs"])
def test_a_size_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="is not a size"):
        parse_size(text)


def test_sizes_read_as_a_person_says_them() -> None:
    assert [size(n) for n in (7456 // 8, 7456, 94 << 20, 3 << 30)] == [
        "932 bytes",
        "7.3 kB",
        "94.0 MB",
        "3.0 GB",
    ]


def test_bad_replica_options_exit_2_before_connecting() -> None:
    unreachable = "host=127.0.0.1 port=1 user=x password=secret"
    for args in (
        ["--max-replica-lag", "lots"],
        ["--wait-replicas=-1"],
        ["--replica-wait", "nan"],
    ):
        run = invoke("--dsn", unreachable, "apply", *args)
        assert run.code == 2, (args, run.output)
        assert len(run.errors) == 1 and "secret" not in run.output
