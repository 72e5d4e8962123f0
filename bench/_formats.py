"""Read a sqlrunner SQL set and write the same migrations in each peer's format.

sqlrunner's rules (what the files look like):

* ``<sql_dir>/forward/NNNN_snake_name.sql``, applied in name order, then
  ``<sql_dir>/seed/*.sql`` in name order (when the folder exists);
* a transactional file is wrapped in one ``BEGIN; ... COMMIT;``;
* a file whose first line is ``-- sqlrunner: no-transaction`` has no
  BEGIN/COMMIT and must run in autocommit, one statement at a time (CREATE
  INDEX CONCURRENTLY).

How each peer gets the same work done, and the same transaction shape:

=========  ===============================  ===================================
tool       transactional file               no-transaction file
=========  ===============================  ===================================
psql       the file as is (its own          the file as is: psql autocommits
           BEGIN/COMMIT); see peers.py      each statement
           on ``-1``
dbmate     BEGIN/COMMIT stripped, dbmate    ``-- migrate:up transaction:false``;
           wraps the migration itself       dbmate sends the whole block in one
                                            Exec, which PostgreSQL runs as an
                                            implicit transaction, so CREATE
                                            INDEX CONCURRENTLY fails when the
                                            file has more than one statement:
                                            such a file becomes one dbmate
                                            migration per statement
yoyo       BEGIN/COMMIT stripped, yoyo      ``-- transactional: false`` (yoyo
           wraps the migration itself       splits SQL files into statements)
Alembic    BEGIN/COMMIT stripped, one       ``with op.get_context().
           ``op.execute`` of the raw SQL    autocommit_block():`` and one
                                            ``op.execute`` per statement
Sqitch     the file as is: Sqitch runs      the file as is: psql autocommits
           each deploy script with psql,    each statement
           and its own templates carry
           BEGIN/COMMIT
=========  ===============================  ===================================

"BEGIN/COMMIT stripped" removes the file's first transaction statement and
its final COMMIT; statements before BEGIN (the shipped files start with
``SET lock_timeout``) stay, and run inside the tool's transaction.

Everything here only writes files; nothing talks to a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

NO_TX_MARKER = "-- sqlrunner: no-transaction"


@dataclass
class Migration:
    seq: int  # 1-based position in the whole set (forward then seed)
    kind: str  # "forward" or "seed"
    path: Path  # the original sqlrunner file
    stem: str  # file name without .sql, e.g. 0001_t_001
    text: str
    transactional: bool
    body: str = ""  # SQL without BEGIN/COMMIT and without the marker line
    has_own_begin: bool = False
    statements: list[str] = field(default_factory=list)  # only for no-transaction files

    @property
    def snake(self) -> str:
        """The name part without the NNNN_ prefix."""
        m = re.match(r"^\d+_(.+)$", self.stem)
        return m.group(1) if m else self.stem

    @property
    def tool_name(self) -> str:
        """A name unique across forward + seed, sorting in apply order."""
        return f"{self.seq:05d}_{self.kind[0]}_{self.snake}"


def _slices(sql: str) -> list[slice]:
    """Character slices of the statements in sql (without their ';')."""
    import pglast

    try:
        return list(pglast.split(sql, with_parser=True, only_slices=True))
    except Exception:  # e.g. syntax newer than pglast's parser: the scanner still splits
        return list(pglast.split(sql, with_parser=False, only_slices=True))


def split_statements(sql: str) -> list[str]:
    """Split SQL into statements, keeping the source text (and comments) of each."""
    try:
        parts = [sql[sl] for sl in _slices(sql)]
    except ImportError:  # pragma: no cover - pglast is in setup.sh
        import sqlparse

        parts = [s.rstrip().rstrip(";") for s in sqlparse.split(sql)]
    return [p.strip() for p in parts if p.strip() and not _only_comments(p)]


def _only_comments(s: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in s.splitlines())


def _statement_kinds(sql: str) -> list[tuple[str | None, int, int]]:
    """(kind, start, stop) per statement; kind is 'begin', 'commit' or None.

    start is where the statement's first keyword is (after leading comments);
    stop is past its ';' when there is one.
    """
    import pglast

    out = []
    for sl in _slices(sql):
        toks = [
            t for t in pglast.parser.scan(sql[sl]) if t.name not in ("SQL_COMMENT", "C_COMMENT")
        ]
        if not toks:
            continue
        names = [t.name for t in toks]
        kind = None
        if names[0] == "BEGIN_P" or names[:2] == ["START", "TRANSACTION"]:
            kind = "begin"
        elif names[0] in ("COMMIT", "END_P") and "PREPARED" not in names:
            kind = "commit"
        stop = sl.stop
        while stop < len(sql) and sql[stop] in " \t":
            stop += 1
        if stop < len(sql) and sql[stop] == ";":
            stop += 1
        out.append((kind, sl.start + toks[0].start, stop))
    return out


def strip_transaction(text: str) -> tuple[str, bool]:
    """Remove the file's own BEGIN and its final COMMIT.  Returns (body, had_begin).

    Statements before BEGIN (say ``SET lock_timeout``) stay, so they run inside
    the tool's transaction instead.
    """
    kinds = _statement_kinds(text)
    tx = [k for k in kinds if k[0] is not None]
    if not tx or tx[0][0] != "begin" or kinds[-1][0] != "commit":
        return text, False
    b, c = tx[0], kinds[-1]
    body = text[: b[1]] + text[b[2] : c[1]] + text[c[2] :]
    body = re.sub(r"\n{3,}", "\n\n", body)
    return body.strip() + "\n", True


def parse_file(path: Path, seq: int, kind: str) -> Migration:
    text = path.read_text(encoding="utf-8")
    first = text.split("\n", 1)[0].strip()
    transactional = first != NO_TX_MARKER
    mig = Migration(
        seq=seq, kind=kind, path=path, stem=path.stem, text=text, transactional=transactional
    )
    if transactional:
        mig.body, mig.has_own_begin = strip_transaction(text)
    else:
        mig.body = text.split("\n", 1)[1] if "\n" in text else ""
        mig.statements = split_statements(mig.body)
    return mig


def load_sql_set(sql_dir: Path, include_seed: bool = True) -> list[Migration]:
    """The files sqlrunner would apply, in order (forward, then seed)."""
    sql_dir = Path(sql_dir)
    files: list[tuple[str, Path]] = [
        ("forward", p) for p in sorted((sql_dir / "forward").glob("*.sql"))
    ]
    if include_seed and (sql_dir / "seed").is_dir():
        files += [("seed", p) for p in sorted((sql_dir / "seed").glob("*.sql"))]
    return [parse_file(p, i, kind) for i, (kind, p) in enumerate(files, 1)]


# ---------------------------------------------------------------------------
# writers: each returns the directory (or file) the tool is pointed at


def write_dbmate(migs: list[Migration], dest: Path) -> Path:
    d = dest / "dbmate" / "migrations"
    d.mkdir(parents=True)
    n = 0
    for m in migs:
        if m.transactional:
            n += 1
            (d / f"{n:06d}_{m.snake}.sql").write_text(
                f"-- migrate:up\n{m.body.rstrip()}\n\n-- migrate:down\n", encoding="utf-8"
            )
        else:
            # one migration per statement, see the module docstring
            for j, stmt in enumerate(m.statements, 1):
                n += 1
                (d / f"{n:06d}_{m.snake}_{j}.sql").write_text(
                    f"-- migrate:up transaction:false\n{stmt};\n\n-- migrate:down\n",
                    encoding="utf-8",
                )
    return d


def write_yoyo(migs: list[Migration], dest: Path) -> Path:
    d = dest / "yoyo"
    d.mkdir(parents=True)
    for m in migs:
        head = "" if m.transactional else "-- transactional: false\n"
        (d / f"{m.tool_name}.sql").write_text(head + m.body, encoding="utf-8")
    return d


_ALEMBIC_INI = """\
[alembic]
script_location = %(here)s
path_separator = os

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

# The env.py `alembic init` generates, online mode only, with the URL taken
# from the environment.  Like the template, it leaves transaction_per_migration
# at its default (False): one transaction for the whole upgrade, and
# autocommit_block() commits it and opens a new one around a no-transaction
# migration.
_ALEMBIC_ENV = """\
import os

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config


def run_migrations_online():
    connectable = engine_from_config(
        {"sqlalchemy.url": os.environ["BENCH_ALEMBIC_URL"]},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""

_BIND_RE = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def _alembic_sql_literal(sql: str) -> str:
    # op.execute() wraps a string in sqlalchemy.text(): escape ':name' so it
    # is not taken for a bind parameter ('%' is handled by SQLAlchemy).
    return repr(_BIND_RE.sub(r"\\:\1", sql))


def write_alembic(migs: list[Migration], dest: Path) -> Path:
    d = dest / "alembic"
    (d / "versions").mkdir(parents=True)
    (d / "alembic.ini").write_text(_ALEMBIC_INI, encoding="utf-8")
    (d / "env.py").write_text(_ALEMBIC_ENV, encoding="utf-8")
    prev = None
    for m in migs:
        rev = f"r{m.seq:05d}"
        if m.transactional:
            up = f"    op.execute({_alembic_sql_literal(m.body)})\n"
        else:
            up = "    with op.get_context().autocommit_block():\n" + "".join(
                f"        op.execute({_alembic_sql_literal(s)})\n" for s in m.statements
            )
        (d / "versions" / f"{rev}_{m.snake}.py").write_text(
            f'"""{m.stem}"""\nfrom alembic import op\n\n'
            f"revision = {rev!r}\ndown_revision = {prev!r}\n"
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n{up}\n\ndef downgrade():\n    pass\n",
            encoding="utf-8",
        )
        prev = rev
    return d / "alembic.ini"


def write_sqitch(migs: list[Migration], dest: Path, psql: str) -> Path:
    d = dest / "sqitch"
    for sub in ("deploy", "revert", "verify"):
        (d / sub).mkdir(parents=True)
    (d / "sqitch.conf").write_text(
        "[core]\n\tengine = pg\n\tplan_file = sqitch.plan\n\ttop_dir = .\n"
        f'[engine "pg"]\n\tclient = {psql}\n'
        "[user]\n\tname = Bench\n\temail = bench@example.invalid\n"
        "[deploy]\n\tverify = false\n",
        encoding="utf-8",
    )
    lines = ["%syntax-version=1.0.0", "%project=bench", ""]
    for m in migs:
        name = f"m{m.tool_name}"
        # Sqitch runs the deploy script with psql as it is: keep the file's
        # own BEGIN/COMMIT (Sqitch's templates have them too); a
        # no-transaction file runs statement by statement in autocommit.
        (d / "deploy" / f"{name}.sql").write_text(m.text, encoding="utf-8")
        (d / "revert" / f"{name}.sql").write_text("-- nothing\n", encoding="utf-8")
        (d / "verify" / f"{name}.sql").write_text("-- nothing\n", encoding="utf-8")
        lines.append(f"{name} 2024-01-01T00:00:00Z Bench <bench@example.invalid> # {m.stem}")
    (d / "sqitch.plan").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def write_all(migs: list[Migration], dest: Path, psql: str = "psql") -> dict[str, Path]:
    """Write every peer's format under dest; returns tool -> path."""
    dest = Path(dest)
    return {
        "dbmate": write_dbmate(migs, dest),
        "yoyo": write_yoyo(migs, dest),
        "alembic": write_alembic(migs, dest),
        "sqitch": write_sqitch(migs, dest, psql),
    }
