"""The options every command shares, on a ``Settings`` context object, and the option
types and checks that refuse a bad value before anything runs (exit 2, one line).

Defaults are the library's own (``session.DEFAULTS``): written once, there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import click

from .. import embedded
from ..errors import UsageError
from ..report import Report, render_text, to_json
from ..session import DEFAULTS, duration_ms, lock_timeout_ms, mask_password
from .config import ConfigFile
from .output import ProgressPrinter, document, json_line

INT_MAX_MS = 2**31 - 1  # PostgreSQL's largest timeout setting (lock_timeout, ...): INT_MAX ms
MAX_IDENTIFIER_BYTES = 63  # the longest identifier in bytes; PostgreSQL truncates longer ones
LEDGER_SUFFIXES = ("_history", "_progress", "_backfill")  # the ledger's sibling tables
NAME_LIMIT = 200  # NNNN_NAME.sql must fit a 255-byte file name, whatever the version


class LedgerNames(TypedDict):
    ledger_schema: str
    ledger_table: str


@dataclass(slots=True)
class Settings:
    """The options shared by every command, filled wherever they appear on the line."""

    dsn: str | None = None
    sql_dir: str | None = None
    as_json: bool = False
    verbose: int = 0
    quiet: bool = False
    ledger_schema: str = DEFAULTS.ledger_schema
    ledger_table: str = DEFAULTS.ledger_table
    log_format: str = "text"
    heartbeat: float = 10.0
    config: ConfigFile = field(default_factory=lambda: ConfigFile(None, {}))

    @property
    def verbosity(self) -> int:
        return -1 if self.quiet else self.verbose

    @property
    def ledger(self) -> LedgerNames:
        return {"ledger_schema": self.ledger_schema, "ledger_table": self.ledger_table}

    def say(self, text: str) -> None:
        """Human text: stdout normally, stderr in --json mode (stdout is the document)."""
        if text and self.verbosity >= 0:
            click.echo(text, err=self.as_json)

    def note(self, text: str) -> None:
        """A line about the run (the target, a warning): stderr, silenced by -q."""
        if self.verbosity >= 0:
            click.echo(json_line("note", text) if self.log_format == "json" else text, err=True)

    def show(self, report: Report, listed: bool = False) -> None:
        """The report; ``listed`` when the progress already printed each file's line,
        so the text ends the run with its summary instead of repeating them."""
        if self.as_json:
            click.echo(to_json(report))
        self.say(render_text(report, files=not listed))

    def document(self, kind: str, **fields: Any) -> None:
        """The --json document of a command without a report value (new, repair, ...)."""
        if self.as_json:
            click.echo(document(kind, **fields))

    def created(self, paths: Sequence[Path]) -> None:
        """The files or folders a command wrote: a line each, or one JSON document."""
        self.document("created", paths=[str(p) for p in paths])
        for path in paths:
            self.say(f"created {path}")

    def target(self) -> str:
        """--dsn, else $SQLRUNNER_DSN, else $DATABASE_URL, else the embedded server;
        announced first, password masked."""
        if self.dsn is not None and not self.dsn.strip():
            raise UsageError("--dsn is empty: give a PostgreSQL URL or conninfo")
        for name in ("SQLRUNNER_DSN", "DATABASE_URL"):
            if self.dsn is None and name in os.environ and not os.environ[name].strip():
                raise UsageError(f"{name} is set but empty: set it to a DSN, or unset it")
        if self.dsn:
            self.note(f"target: {mask_password(self.dsn)}")
            return self.dsn
        if not embedded.available():
            raise UsageError(embedded.NO_DATABASE)
        dsn = embedded.start()
        self.note(
            f"target: embedded PostgreSQL in ./{embedded.HOME}/pgdata "
            f"(no --dsn or DATABASE_URL given): {mask_password(dsn)}"
        )
        return dsn

    @contextmanager
    def progress(self, dsn: str) -> Iterator[ProgressPrinter]:
        """The live progress of a run on stderr, ended however the run ends."""
        printer = ProgressPrinter(
            verbosity=self.verbosity, dsn=dsn, heartbeat=self.heartbeat, log_format=self.log_format
        )
        try:
            yield printer
        finally:
            printer.close()


# --- values refused before anything runs (exit 2, one line) -------------------------------


def version_number(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is not None and not value.isdigit():
        raise click.BadParameter(f"{value!r} is not a version number (NNNN)")
    return None if value is None else int(value)


def seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Finite, not negative, and no longer than PostgreSQL's longest timeout."""
    if not math.isfinite(value) or not 0 <= value <= INT_MAX_MS / 1000:
        raise click.BadParameter(f"{value} is not between 0 and {INT_MAX_MS // 1000} seconds")
    return value


def lock_timeout(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """'200ms', '2s', '1min': at least 1 ms (0 means "wait forever"), at most INT_MAX ms."""
    try:
        milliseconds = lock_timeout_ms(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None
    if milliseconds > INT_MAX_MS:
        raise click.BadParameter(
            f"{value!r} is over PostgreSQL's longest lock_timeout ({INT_MAX_MS}ms)"
        )
    return milliseconds


def budget(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """'10m', '90s', '1h' (a bare number is seconds) -> seconds, more than 0."""
    if value is None:
        return None
    try:
        milliseconds = duration_ms(value, bare="s")
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None
    if milliseconds < 1:
        raise click.BadParameter(f"{value!r}: give a budget of more than 0, e.g. 10m")
    return milliseconds / 1000


def identifier(value: str, limit: int) -> str:
    """A schema or table name PostgreSQL keeps whole: 1 to ``limit`` bytes, no NUL."""
    size = len(value.encode())
    if size == 0 or size > limit or "\x00" in value:
        raise click.BadParameter(
            f"{value[:80]!r} must be 1 to {limit} bytes without NUL (PostgreSQL truncates "
            f"identifiers over {MAX_IDENTIFIER_BYTES} bytes)"
        )
    return value


LEDGER_NAME_LIMITS = {
    "ledger_schema": MAX_IDENTIFIER_BYTES,
    "ledger_table": MAX_IDENTIFIER_BYTES - max(map(len, LEDGER_SUFFIXES)),
}


def migration_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not 0 < len(value.encode()) <= NAME_LIMIT:
        raise click.BadParameter(
            f"a name of {len(value)} characters: give 1 to {NAME_LIMIT} "
            "(NNNN_NAME.sql must fit a 255-byte file name)"
        )
    return value


# --- options ---------------------------------------------------------------------------------


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Write a global option into the Settings, unless it only holds its default: the
    command's copy of an option must not undo what was given before the command."""
    if param.name is None or ctx.get_parameter_source(param.name) in (
        None,
        click.core.ParameterSource.DEFAULT,
    ):
        return
    if param.name in LEDGER_NAME_LIMITS:
        value = identifier(value, LEDGER_NAME_LIMITS[param.name])
    settings = ctx.ensure_object(Settings)
    if param.name == "verbose":
        settings.verbose += value
    else:
        setattr(settings, param.name, value)


# The options shared by every command: (flags, environment variables, help, click's
# other settings). The help states each default: the group's options have none in click,
# so a command's copy given later cannot undo one given earlier.
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], tuple[str, ...], str, dict[str, Any]], ...] = (
    (
        ("--dsn",),
        ("SQLRUNNER_DSN", "DATABASE_URL"),
        "PostgreSQL URL or conninfo (default: the embedded PostgreSQL).",
        {},
    ),
    (
        ("--sql-dir",),
        ("SQLRUNNER_SQL_DIR",),
        "The migration set (default: ./sql, else the shipped set).",
        {},
    ),
    (
        ("--json", "as_json"),
        ("SQLRUNNER_JSON",),
        "One JSON document on stdout; human text on stderr.",
        {"is_flag": True},
    ),
    (
        ("-v", "--verbose"),
        ("SQLRUNNER_VERBOSE",),
        "More detail (-vv: every statement).",
        {"count": True},
    ),
    (("-q", "--quiet"), ("SQLRUNNER_QUIET",), "Only errors.", {"is_flag": True}),
    (
        ("--log-format",),
        ("SQLRUNNER_LOG_FORMAT",),
        "Progress on stderr as text, or as JSON lines for log shippers.",
        {"type": click.Choice(["text", "json"])},
    ),
    (
        ("--heartbeat",),
        ("SQLRUNNER_HEARTBEAT",),
        "Without a terminal, a line this often while a statement runs (default 10).",
        {"type": click.FloatRange(min=0.5, max=3600), "metavar": "SECONDS"},
    ),
    (
        ("--ledger-schema",),
        ("SQLRUNNER_LEDGER_SCHEMA",),
        f"Schema of sqlrunner's tables (default: {DEFAULTS.ledger_schema}).",
        {},
    ),
    (
        ("--ledger-table",),
        ("SQLRUNNER_LEDGER_TABLE",),
        f"The ledger table (default: {DEFAULTS.ledger_table}).",
        {},
    ),
)


def global_options(on_group: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The shared options. On the group they read env vars and show in --help; every
    command accepts them again (hidden), so they work before or after the command."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        # reversed: the first option listed shows first in --help
        for flags, envvars, text, extra in reversed(GLOBAL_OPTIONS):
            f = click.option(
                *flags,
                envvar=list(envvars) if on_group else None,
                help=text,
                expose_value=False,
                callback=_store,
                hidden=not on_group,
                show_envvar=on_group,
                **extra,
            )(f)
        return f

    return decorate


def setting(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command's option that reads ``SQLRUNNER_<NAME>`` too; both show in --help."""
    envvar = "SQLRUNNER_" + name.lstrip("-").replace("-", "_").upper()
    return click.option(name, envvar=envvar, show_envvar=True, show_default=True, **kwargs)


def seconds_setting(name: str, default: float, text: str) -> Callable[..., Any]:
    return setting(
        name, type=float, callback=seconds, metavar="SECONDS", default=default, help=text
    )


def version_option(name: str, text: str) -> Callable[..., Any]:
    return click.option(name, metavar="VERSION", callback=version_number, help=text)


wait_option = seconds_setting("--wait", DEFAULTS.wait, "Seconds to keep retrying the connection.")


def lock_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--lock-timeout, --lock-retries, --wait, --runner-wait: passed to the api as they are."""
    for option in (
        seconds_setting(
            "--runner-wait",
            DEFAULTS.runner_wait,
            "Seconds to wait for another sqlrunner to finish.",
        ),
        wait_option,
        setting(
            "--lock-retries",
            type=click.IntRange(min=0),
            default=DEFAULTS.lock_retries,
            help="Attempts after a lock timeout, with jittered backoff.",
        ),
        setting(
            "--lock-timeout",
            callback=lock_timeout,
            metavar="DURATION",
            default=DEFAULTS.lock_timeout,
            help="lock_timeout per attempt: the longest anyone queues behind us.",
        ),
    ):
        f = option(f)
    return f


budget_option = setting(
    "--budget",
    callback=budget,
    metavar="DURATION",
    help="Stop a batched file cleanly between batches after this long (e.g. 10m); "
    "exit 6, and the next apply continues it.",
)


def replica_options(f: Callable[..., Any], replica_dsns: bool = True) -> Callable[..., Any]:
    """apply's standby options (replicas.py), passed to the api as they are.
    ``replica_dsns=False`` leaves out --replica (fleet apply: a standby follows one server)."""

    def wait_seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> Any:
        return None if value is None else seconds(ctx, param, value)

    def byte_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        from ..replicas import parse_size

        try:
            return None if value is None else parse_size(value)
        except UsageError as exc:
            raise click.BadParameter(str(exc)) from None

    for option in (
        seconds_setting(
            "--replica-wait",
            DEFAULTS.replica_wait,
            "Longest wait, each time, for a standby over the lag bound.",
        ),
        setting(
            "--max-replica-lag",
            metavar="SIZE",
            callback=byte_size,
            help="Between no-transaction statements, wait while a standby is further behind "
            "(64MB, 1GB, bytes).",
        ),
        click.option(
            "--replica",
            "replicas",
            metavar="DSN",
            multiple=True,
            help="A standby pg_stat_replication does not show (cascaded, behind a pooler); "
            "repeatable.",
        )
        if replica_dsns
        else None,
        setting(
            "--wait-replicas",
            type=float,
            is_flag=False,
            flag_value=300.0,
            default=None,
            callback=wait_seconds,
            metavar="[SECONDS]",
            help="After the last commit, wait until every standby replayed it (default 300 s); "
            "exit 8 if one has not.",
        ),
    ):
        f = f if option is None else option(f)
    return f


def fleet_replica_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """fleet apply's: apply's, each target watching its own standbys; --replica is refused
    with the reason (a user's apply command line, reused, says why it does not fit)."""

    def refuse(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        if value:
            raise UsageError(
                "fleet apply does not take --replica: a standby follows one server, so one "
                "list cannot serve every target (--wait-replicas and --max-replica-lag watch "
                "each target's own standbys)"
            )

    hidden = click.option(
        "--replica", multiple=True, hidden=True, expose_value=False, callback=refuse
    )
    return hidden(replica_options(f, replica_dsns=False))
