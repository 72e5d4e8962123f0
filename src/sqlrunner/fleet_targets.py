"""The targets of a fleet run: read from a list, checked whole, sliced into shards.

A list is one libpq DSN per line (``#`` comments and blank lines allowed), or TOML
with ``[[target]]`` tables (``name``, ``dsn``, optional ``schema``). Every flaw of
the list is found before any target is touched (exit 2), and no message ever shows
a password: DSNs appear masked, and one libpq cannot parse appears not at all.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import UsageError
from .session import mask_password

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOML_KEYS = frozenset({"name", "dsn", "schema"})
MAX_IDENTIFIER_BYTES = 63


class InvalidTargets(UsageError):
    """The target list cannot be used as it is (exit 2): nothing was run anywhere."""


@dataclass(frozen=True, slots=True)
class FleetTarget:
    """One database (or one tenant schema in it) of a fleet."""

    name: str
    dsn: str
    schema: str | None = None

    @property
    def server(self) -> str:
        """``host:port``: what ``per_server`` counts (libpq's defaults for what is unset)."""
        return server_of(conninfo_to_dict(self.dsn))

    @property
    def conninfo(self) -> str:
        """The DSN, with ``search_path`` set to the tenant schema in the startup packet.

        A startup-packet setting is what ``RESET ALL`` returns to, so the runner's
        per-file session reset keeps the tenant's search_path for every file.
        """
        if self.schema is None:
            return self.dsn
        # libpq's options: backslash escapes a space or a backslash inside a value
        path = sql.Identifier(self.schema).as_string().replace("\\", "\\\\").replace(" ", "\\ ")
        given = conninfo_to_dict(self.dsn).get("options")
        options = f"{given} -c search_path={path}" if given else f"-c search_path={path}"
        return make_conninfo(self.dsn, options=options)

    @property
    def shown(self) -> str:
        """The DSN as users may see it (password masked)."""
        return mask_password(self.dsn)


def read_targets(source: str) -> list[FleetTarget]:
    """The targets of a list file (``-``: stdin), every flaw reported at once."""
    try:
        if source == "-":
            text, where = sys.stdin.read(), "stdin"
        else:
            with open(source, encoding="utf-8") as f:
                text, where = f.read(), source
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidTargets(f"cannot read the target list {source}: {reason}") from None
    return parse_targets(text, where)


def parse_targets(text: str, where: str = "targets") -> list[FleetTarget]:
    """A DSN-per-line list or TOML ``[[target]]`` tables, checked whole (InvalidTargets)."""
    lines = [line.strip() for line in text.splitlines()]
    is_toml = any(line.startswith("[") for line in lines)
    found = _from_toml(text, where) if is_toml else _from_lines(lines, where)
    targets = [t for _, t in found]
    if not targets:
        raise InvalidTargets(f"{where}: no targets (one DSN per line, or [[target]] tables)")
    seen: dict[str, str] = {}
    problems = []
    for at, target in found:
        if target.name in seen:
            problems.append(
                f"{at}: target {target.name!r} is listed twice (first at {seen[target.name]})"
            )
        seen.setdefault(target.name, at)
    if problems:
        raise _listing(problems)
    return targets


def _from_lines(lines: Sequence[str], where: str) -> list[tuple[str, FleetTarget]]:
    found, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        at = f"{where}:{number}"
        try:
            found.append((at, FleetTarget(default_name(line), line)))
        except InvalidTargets as exc:
            problems.append(f"{at}: {exc}")
    if problems:
        raise _listing(problems)
    return found


def _from_toml(text: str, where: str) -> list[tuple[str, FleetTarget]]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names a line and column, never the text of a value
        raise InvalidTargets(f"{where}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"target"})
    entries = data.get("target", [])
    if extra or not isinstance(entries, list):
        raise InvalidTargets(
            f"{where}: only [[target]] tables are allowed (found {extra or ['target']})"
        )
    found, problems = [], []
    for index, entry in enumerate(entries, 1):
        at = f"{where}: [[target]] #{index}"
        try:
            found.append((at, _toml_target(entry)))
        except InvalidTargets as exc:
            problems.append(f"{at}: {exc}")
    if problems:
        raise _listing(problems)
    return found


def _toml_target(entry: Any) -> FleetTarget:
    if not isinstance(entry, dict):
        raise InvalidTargets("must be a table")
    unknown = sorted(set(entry) - TOML_KEYS)
    if unknown:
        raise InvalidTargets(f"unknown key(s) {', '.join(unknown)} (allowed: dsn, name, schema)")
    dsn, name, schema = entry.get("dsn"), entry.get("name"), entry.get("schema")
    if not isinstance(dsn, str) or not dsn.strip():
        raise InvalidTargets('needs dsn = "..." (a libpq URL or conninfo)')
    for key, value in (("name", name), ("schema", schema)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidTargets(f"{key} must be a non-empty string")
    if schema is not None and (len(schema.encode()) > MAX_IDENTIFIER_BYTES or "\x00" in schema):
        raise InvalidTargets(f"schema {schema[:80]!r} must be 1 to 63 bytes without NUL")
    return FleetTarget(name or default_name(dsn.strip(), schema), dsn.strip(), schema)


def server_of(params: dict[str, Any]) -> str:
    """``host:port`` of parsed libpq parameters (PGHOST, PGPORT, libpq's defaults)."""
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "local"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    return f"{host}:{port}"


def parsed(dsn: str) -> dict[str, Any]:
    """libpq's reading of ``dsn``; InvalidTargets (the DSN not shown) when it cannot."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise InvalidTargets(
            "libpq cannot parse this DSN (not shown, it may hold a password); check its "
            "quoting and percent-encoding"
        ) from None


def default_name(dsn: str, schema: str | None = None) -> str:
    """``host:port/dbname`` (``/schema``): stable across runs, so shards stay stable."""
    params = parsed(dsn)
    dbname = params.get("dbname") or params.get("user") or os.environ.get("PGDATABASE", "")
    return f"{server_of(params)}/{dbname}" + (f"/{schema}" if schema else "")


def _listing(problems: Sequence[str]) -> InvalidTargets:
    if len(problems) == 1:
        return InvalidTargets(problems[0])
    return InvalidTargets(f"{len(problems)} problems in the target list: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Shard:
    """``K/N``: the K-th (1-based) of N stable slices of a fleet, by a hash of each name."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, slash, count = text.partition("/")
        if not (slash and index.isdigit() and count.isdigit()):
            raise UsageError(f"--shard {text!r}: give K/N, e.g. 1/4 (K from 1 to N)")
        shard = cls(int(index), int(count))
        if not 1 <= shard.index <= shard.count:
            raise UsageError(
                f"--shard {text!r}: K must be from 1 to N (1-based: a Kubernetes Indexed Job "
                "passes $((JOB_COMPLETION_INDEX + 1)))"
            )
        return shard

    def holds(self, target: FleetTarget) -> bool:
        """The same answer on every machine and every run (hashlib, not the salted hash())."""
        digest = hashlib.sha256(target.name.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
