"""Read another tool's migration set into SourceMigration values, one small reader per tool.

Each reader knows only its tool's layout and what the tool's ledger records
as the version (the mapping key ``adopt`` looks up); conversion and writing are
shared (``conversion.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

from .conversion import Finding, ImportReport, SourceMigration, SourceText, import_set
from .errors import InvalidMigrationSet, UsageError

Reader = Callable[[Path], tuple[list[SourceMigration], list[Finding]]]


def _read(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMigrationSet(f"{path}: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise InvalidMigrationSet(f"{path}: cannot read: {exc.strerror}") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _numeric(key: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.split(r"[._]", key) if part)


UP_DOWN = re.compile(
    r"^(?P<version>\d+)_(?P<title>.+?)(?:\.(?P<dialect>\w+))?\.(?P<dir>up|down)\.sql$"
)


def read_golang_migrate(root: Path) -> tuple[list[SourceMigration], list[Finding]]:
    """golang-migrate: ``V_title.up.sql`` / ``.down.sql``; its ledger stores V as a bigint."""
    migrations, findings = read_up_down(root)
    return [replace(m, key=str(int(m.key))) for m in migrations], findings


def read_up_down(root: Path) -> tuple[list[SourceMigration], list[Finding]]:
    """pop (and golang-migrate): ``V_title[.postgres].up.sql`` / ``.down.sql``; the key is V
    as written (pop's ledger stores the string)."""
    pairs: dict[str, dict[str, Path | str]] = {}
    findings = []
    for path in sorted(root.iterdir()):
        match = UP_DOWN.match(path.name)
        if match is None:
            if path.suffix in (".fizz", ".go", ".sql"):
                findings.append(
                    Finding(
                        f"{path}:1",
                        "todo",
                        "not an up/down SQL file, not imported",
                        "rewrite it as SQL by hand (pop: `soda generate sql`)",
                    )
                )
            continue
        if match["dialect"] not in (None, "postgres", "postgresql", "pg"):
            continue
        entry = pairs.setdefault(match["version"], {"title": match["title"]})
        entry[match["dir"]] = path
    migrations = []
    for version in sorted(pairs, key=int):
        entry = pairs[version]
        up, down = entry.get("up"), entry.get("down")
        if not isinstance(up, Path):
            raise InvalidMigrationSet(f"{root}: version {version} has a down file and no up file")
        migrations.append(
            SourceMigration(
                version,
                str(entry["title"]),
                SourceText(up, _read(up)),
                SourceText(down, _read(down)) if isinstance(down, Path) else None,
            )
        )
    return migrations, findings


DBMATE_UP = re.compile(r"^--\s*migrate:up\b(?P<options>[^\n]*)$", re.M)
DBMATE_DOWN = re.compile(r"^--\s*migrate:down\b[^\n]*$", re.M)


def read_dbmate(root: Path) -> tuple[list[SourceMigration], list[Finding]]:
    """dbmate: one ``VERSION_title.sql`` split at ``-- migrate:up`` / ``-- migrate:down``."""
    migrations = []
    for path in sorted(root.glob("*.sql"), key=lambda p: p.name):
        match = re.match(r"^(\d+)_?(.*)\.sql$", path.name)
        if match is None:
            raise InvalidMigrationSet(f"{path}: dbmate file names start with a version")
        text = _read(path)
        up, down = DBMATE_UP.search(text), DBMATE_DOWN.search(text)
        if up is None:
            raise InvalidMigrationSet(f"{path}: no '-- migrate:up' line")
        no_tx = "transaction:false" in up["options"].replace(" ", "")
        up_end = down.start() if down is not None and down.start() > up.end() else len(text)
        up_text = _section(path, text, up.end(), up_end, no_tx)
        down_text = None
        if down is not None:
            down_no_tx = "transaction:false" in text[down.start() : down.end()].replace(" ", "")
            down_text = _section(path, text, down.end(), len(text), down_no_tx)
        migrations.append(SourceMigration(match[1], match[2] or match[1], up_text, down_text))
    return migrations, []


def _section(path: Path, text: str, start: int, end: int, no_tx: bool) -> SourceText:
    return SourceText(path, text[start:end], text.count("\n", 0, start) + 1, no_tx)


GOOSE = re.compile(r"^--\s*\+goose\s+(?P<word>[A-Za-z]+(?:\s+[A-Za-z]+)?)\s*$", re.M)


def read_goose(root: Path) -> tuple[list[SourceMigration], list[Finding]]:
    """goose: ``-- +goose Up/Down`` sections, ``NO TRANSACTION``, ``StatementBegin/End``."""
    migrations, findings = [], []
    for path in sorted(root.iterdir(), key=lambda p: p.name):
        match = re.match(r"^(\d+)_(.+)\.(sql|go)$", path.name)
        if match is None:
            continue
        if match[3] == "go":
            findings.append(
                Finding(
                    f"{path}:1",
                    "todo",
                    "Go migration not imported",
                    "rewrite it as SQL (a forward and a rollback file)",
                )
            )
            continue
        text = _read(path)
        marks = list(GOOSE.finditer(text))
        no_tx = any(m["word"].upper().replace(" ", "") == "NOTRANSACTION" for m in marks)
        sections: dict[str, SourceText] = {}
        for i, mark in enumerate(marks):
            word = mark["word"].lower()
            if word not in ("up", "down"):
                continue
            end = next(
                (m.start() for m in marks[i + 1 :] if m["word"].lower() in ("up", "down")),
                len(text),
            )
            body = _strip_goose(path, text, text[mark.end() : end], findings)
            sections[word] = SourceText(path, body, text.count("\n", 0, mark.end()) + 1, no_tx)
        if "up" not in sections:
            raise InvalidMigrationSet(f"{path}: no '-- +goose Up' line")
        migrations.append(
            SourceMigration(str(int(match[1])), match[2], sections["up"], sections.get("down"))
        )
    return migrations, findings


def _strip_goose(path: Path, text: str, section: str, findings: list[Finding]) -> str:
    """goose annotations are comments to PostgreSQL; ENVSUB is the one that changes SQL."""

    def drop(mark: re.Match[str]) -> str:
        word = mark["word"].upper().replace(" ", "")
        if word.startswith("ENVSUB") and word != "ENVSUBOFF":
            line = text.count("\n", 0, text.find(mark[0])) + 1
            findings.append(
                Finding(
                    f"{path}:{line}",
                    "todo",
                    "goose ENVSUB: ${VAR} is not expanded",
                    "replace each ${VAR} with its value",
                )
            )
        return ""

    return GOOSE.sub(drop, section)


FLYWAY = re.compile(r"^(?P<prefix>[VUR])(?P<version>[\d._]*)__(?P<title>.+)\.sql$")


def flyway_checksum(path: Path) -> str:
    """Flyway's checksum: CRC-32 over each line's UTF-8 bytes, line endings and BOM left out,
    as a signed 32-bit integer (what flyway_schema_history.checksum holds)."""
    crc = 0
    for line in _read(path).split("\n"):
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return str(crc - (1 << 32) if crc >= 1 << 31 else crc)


def read_flyway(root: Path) -> tuple[list[SourceMigration], list[Finding]]:
    """Flyway: ``V1__x.sql`` forward, ``U1__x.sql`` its undo, ``R__x.sql`` repeatable (a seed)."""
    found: dict[str, dict[str, Path]] = {}
    repeatable: list[Path] = []
    findings = []
    paths = sorted(p for p in root.rglob("*.sql") if p.is_file())
    for path in paths:
        match = FLYWAY.match(path.name)
        if match is None:
            findings.append(
                Finding(
                    f"{path}:1",
                    "todo",
                    "not a V/U/R migration (a callback?)",
                    "not imported; rewrite it as sqlrunner files by hand",
                )
            )
            continue
        if match["prefix"] == "R":
            repeatable.append(path)
        else:
            version = match["version"].replace("_", ".")
            found.setdefault(version, {})[match["prefix"]] = path
    migrations = [
        _flyway_versioned(root, version, found[version]) for version in sorted(found, key=_numeric)
    ]
    for path in sorted(repeatable, key=lambda p: p.name):
        title = FLYWAY.match(path.name)["title"]  # type: ignore[index]
        migrations.append(
            SourceMigration(
                title,
                title,
                SourceText(path, _read(path)),
                kind="seed",
                checksum=flyway_checksum(path),
            )
        )
    for path in paths:
        if re.search(r"\$\{[\w.]+\}", _read(path)):
            findings.append(
                Finding(
                    f"{path}:1",
                    "todo",
                    "Flyway placeholder ${...}",
                    "replace each placeholder with its value",
                )
            )
    return migrations, findings


def _flyway_versioned(root: Path, version: str, files: dict[str, Path]) -> SourceMigration:
    """``V<version>`` with its ``U`` undo, if any; outside a transaction when its
    ``.conf`` says ``executeInTransaction=false``."""
    up, down = files.get("V"), files.get("U")
    if up is None:
        raise InvalidMigrationSet(f"{root}: undo U{version} without V{version}")
    config = up.with_name(up.name + ".conf")
    no_tx = (
        config.exists()
        and re.search(r"^\s*executeInTransaction\s*=\s*false", _read(config), re.M | re.I)
        is not None
    )
    title = FLYWAY.match(up.name)["title"]  # type: ignore[index]
    return SourceMigration(
        version,
        title,
        SourceText(up, _read(up), no_transaction=no_tx),
        SourceText(down, _read(down)) if down else None,
        checksum=flyway_checksum(up),
    )


def read_diesel(root: Path) -> tuple[list[SourceMigration], list[Finding]]:
    """diesel: a directory per migration (up.sql, down.sql, metadata.toml);
    the ledger version is the directory name before ``_`` without its dashes."""
    migrations = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        match = re.match(r"^([\d-]+)_(.+)$", folder.name)
        up = folder / "up.sql"
        if match is None or not up.exists():
            continue
        no_tx = False
        metadata = folder / "metadata.toml"
        if metadata.exists():  # one key matters; tomllib is Python 3.11+
            no_tx = (
                re.search(r"^\s*run_in_transaction\s*=\s*false\b", _read(metadata), re.M)
                is not None
            )
        down = folder / "down.sql"
        migrations.append(
            SourceMigration(
                match[1].replace("-", ""),
                match[2],
                SourceText(up, _read(up), no_transaction=no_tx),
                SourceText(down, _read(down), no_transaction=no_tx) if down.exists() else None,
            )
        )
    return migrations, []


def read_sqitch(root: Path) -> tuple[list[SourceMigration], list[Finding]]:
    """Sqitch: changes in sqitch.plan order, deploy/revert/verify scripts; a change reworked
    after tag @t keeps its earlier scripts as ``deploy/name@t.sql``. The key is the change
    name (``name@t`` for an earlier instance); the checksum is the deploy script's SHA-1,
    which sqitch.changes.script_hash records."""
    plan = root / "sqitch.plan"
    if not plan.exists():
        raise InvalidMigrationSet(f"{root}: no sqitch.plan")
    entries: list[tuple[str, int]] = []  # change name, line
    tags_after: dict[int, str] = {}  # index of an entry -> first tag after it
    for number, line in enumerate(_read(plan).split("\n"), 1):
        line = line.strip()
        if not line or line.startswith(("%", "#")):
            continue
        if line.startswith("@"):
            tag = line.split()[0][1:]
            for index in range(len(entries)):
                tags_after.setdefault(index, tag)
            continue
        name = re.split(r"[\s\[]", line.lstrip("+-"), maxsplit=1)[0]
        if line.startswith("-"):
            raise InvalidMigrationSet(f"{plan}:{number}: reverting plan entries are not supported")
        entries.append((name, number))
    migrations = []
    for index, (name, _number) in enumerate(entries):
        later = any(other == name for other, _ in entries[index + 1 :])
        stem = f"{name}@{tags_after[index]}" if later else name
        deploy = root / "deploy" / f"{stem}.sql"
        revert, verify = root / "revert" / f"{stem}.sql", root / "verify" / f"{stem}.sql"
        if not deploy.exists():
            raise InvalidMigrationSet(f"{plan}: change {stem} has no {deploy}")
        migrations.append(
            SourceMigration(
                stem,
                name,
                SourceText(deploy, _read(deploy)),
                SourceText(revert, _read(revert)) if revert.exists() else None,
                SourceText(verify, _read(verify)) if verify.exists() else None,
                checksum=hashlib.sha1(deploy.read_bytes()).hexdigest(),
            )
        )
    return migrations, []


def sqitch_project(root: Path) -> str | None:
    match = re.search(r"^%project=(\S+)", _read(root / "sqitch.plan"), re.M)
    return match[1] if match else None


READERS: dict[str, Reader] = {
    "golang-migrate": read_golang_migrate,
    "dbmate": read_dbmate,
    "flyway": read_flyway,
    "sqitch": read_sqitch,
    "diesel": read_diesel,
    "goose": read_goose,
    "pop": read_up_down,
}


def import_from(
    tool: str,
    source: str | os.PathLike[str],
    sql_dir: str | os.PathLike[str] = "sql",
    *,
    verify: Literal["convert", "skip"] = "convert",
) -> ImportReport:
    """Convert another tool's migration set into an sqlrunner sql/ tree.

    CLI: ``sqlrunner import --from TOOL SRC [--sql-dir DEST] [--skip-verify]``
    (TOOL: golang-migrate, dbmate, flyway, sqitch, diesel, goose, pop). It prints
    each file written and every finding (``file:line: fixed|check|todo: what: what
    to do``). Exit codes: 0 converted (fixed/check findings are informational);
    1 written, but some findings are ``todo`` (``report.needs_attention``): a human
    must finish them before ``apply``; 2 unknown tool, unreadable source or a
    destination that already holds files not from an earlier import of this tool
    (nothing is written). Importing again into the same DEST adds only the source
    migrations that are new since, numbered after the newest.
    """
    reader = READERS.get(tool)
    if reader is None:
        raise UsageError(f"unknown tool {tool!r}: choose one of {', '.join(READERS)}")
    root = Path(source)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    verify_mode = verify if tool == "sqitch" else "convert"
    migrations, findings = reader(root)
    if not migrations:
        raise InvalidMigrationSet(f"{root}: no {tool} migrations found")
    return import_set(
        tool,
        migrations,
        root,
        Path(sql_dir),
        verify=verify_mode,
        extra=findings,
        project=sqitch_project(root) if tool == "sqitch" else None,
    )
