"""Password masking follows libpq's own reading of the DSN, and hides what libpq cannot read."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from sqlrunner.session import mask_password, unparsable_dsn


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u@h/db?pass%77ord=s3cret", "postgresql://u@h/db?pass%77ord=***"),
        ("postgresql://u:s3cret@h/db?password=other", "postgresql://u:***@h/db?password=***"),
        ("postgresql://u:s3cret@h@x/db", "postgresql://u:***@h@x/db"),  # password ends at '@'
        ("postgresql://u:pa?ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("postgresql://u@h/db?sslpassword=s3cret", "postgresql://u@h/db?sslpassword=***"),
        ("postgres://u:s%2F3cret@/db?host=/tmp&port=5", "postgres://u:***@/db?host=/tmp&port=5"),
    ],
)
def test_every_password_libpq_reads_from_a_url_is_masked(dsn: str, shown: str) -> None:
    assert mask_password(dsn) == shown
    read = conninfo_to_dict(dsn)
    assert read.get("password") or read.get("sslpassword")  # libpq really reads a secret there
    assert "s3cret" not in shown


def test_a_conninfo_ssl_key_password_is_masked_too() -> None:
    shown = mask_password("host=db sslpassword=s3cret dbname=x")

    assert "s3cret" not in shown
    assert conninfo_to_dict(shown)["sslpassword"] == "***"


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:s3cret%zz@h/db",  # bad percent-encoding
        "postgresql://u:s3cret%00@h/db",  # %00
        "postgresql://u:s3cret@[::1/db",  # an unclosed [
        "postgresql://u:s3cret@h/db?nosuch=1",  # a key libpq rejects
        "host=h password=s3cret nosuch=1",
        "host=h s3cret",
    ],
)
def test_a_dsn_libpq_cannot_parse_is_hidden_whole(dsn: str) -> None:
    assert mask_password(dsn) == "<unparsable DSN>"
    assert "s3cret" not in unparsable_dsn(dsn)


def test_masking_keeps_no_cache() -> None:
    assert not hasattr(mask_password, "cache_info")
