"""Every option and its default is written once, in ``session.Options``: the api
keywords, the CLI's defaults and the retry policy all read it."""

from __future__ import annotations

import dataclasses

import pytest

from sqlrunner.cli import cli
from sqlrunner.cli.options import Settings
from sqlrunner.errors import UsageError
from sqlrunner.ledger import LedgerTables
from sqlrunner.locking import RetryPolicy
from sqlrunner.session import DEFAULTS, Options, OptionValues


def test_the_api_keywords_are_the_option_fields() -> None:
    assert set(OptionValues.__annotations__) == {f.name for f in dataclasses.fields(Options)}


@pytest.mark.parametrize("command", ["apply", "rollback", "seed"])
@pytest.mark.parametrize("option", ["lock_timeout", "lock_retries", "wait", "runner_wait"])
def test_the_cli_defaults_are_the_library_defaults(command: str, option: str) -> None:
    params = {p.name: p for p in cli.commands[command].params}
    assert params[option].default == getattr(DEFAULTS, option)


def test_the_ledger_and_retry_defaults_are_the_library_defaults() -> None:
    assert (Settings().ledger_schema, Settings().ledger_table) == (
        DEFAULTS.ledger_schema,
        DEFAULTS.ledger_table,
    )
    assert LedgerTables() == LedgerTables.of(DEFAULTS)
    assert RetryPolicy() == RetryPolicy.of(DEFAULTS)


def test_options_parse_the_lock_timeout_once_and_refuse_bad_values() -> None:
    assert Options(lock_timeout="2s").lock_timeout_ms == 2000
    with pytest.raises(UsageError, match="at least 1ms"):
        Options(lock_timeout="0ms")
    with pytest.raises(UsageError, match="0 or more"):
        Options(lock_retries=-1)
    with pytest.raises(TypeError):
        Options(lock_timout="1s")  # type: ignore[call-arg]
