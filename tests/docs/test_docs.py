"""Every runnable block of README.md, MIGRATION_GUIDE.md, docs/reference.md and
docs/coming-from/*.md, run for real.

A fenced block is runnable when its language is bash/sh/shell, sql or python.
It runs in document order, in one working directory holding a copy of sql/,
with DATABASE_URL pointing at a fresh database made for that document. A page of
docs/coming-from/ starts instead where a team switching tools starts: the old
tool's files where that tool keeps them (no sql/ yet), and a database that tool
migrated (its schema, its own ledger); the index page starts from a schema built
by hand with psql (the shipped files up to 0002) and no ledger.

- bash blocks run with ``bash -e``; ``sqlrunner`` and ``python`` are this venv's;
- sql blocks run with ``psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1``;
- python blocks run with this interpreter.

An HTML comment on the line before a fence changes that:

- ``<!-- docs-test: illustrative -->``: not run (output samples, fragments);
- ``<!-- docs-test: expect-exit N -->``: must exit with N (a failure being shown);
- ``<!-- docs-test: ci -->``: the test command itself; checked to be what .ci/run runs;
- ``<!-- docs-test: embedded -->``: run without DATABASE_URL (the embedded default);
  .ci/run also runs it as written, in a fresh copy.

A leading ``python3 -m venv … && . …/activate && pip install … &&`` (or just the
``pip install … &&``) is taken as done: the suite runs inside that install.

Links between the documents (``[text](file.md#anchor)``) must resolve: the file
exists and the anchor is one GitHub derives from a heading of that file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMING_FROM = tuple(
    sorted(f"docs/coming-from/{p.name}" for p in (REPO / "docs" / "coming-from").glob("*.md"))
)
DOCUMENTS = ("README.md", "MIGRATION_GUIDE.md", "docs/reference.md", *COMING_FROM)
# Where each coming-from page's `sqlrunner import` finds the old tool's files.
SOURCE_DIRS = {
    "golang-migrate": "migrations",
    "dbmate": "db/migrations",
    "flyway": "src/main/resources/db/migration",
    "sqitch": "db",
    "diesel": "migrations",
    "goose": "migrations",
    "pop": "migrations",
}
RUNNABLE = {"bash": "bash", "sh": "bash", "shell": "bash", "sql": "sql", "python": "python"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
MARK = re.compile(r"<!--\s*docs-test:\s*([\w-]+)\s*(\d*)\s*-->\s*$")
PIP_PREFIX = re.compile(r"^(python3 -m venv [^&\n]+&&\s*\. [^&\n]+&&\s*)?pip install [^&\n]+&&\s*")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    language: str
    code: str
    mark: str
    expected_exit: int

    def __str__(self) -> str:
        return f"{self.document}:{self.line} ({self.language})"


def blocks_of(document: str) -> list[Block]:
    path = REPO / document
    if not path.exists():
        return []
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        language = match[1].lower()
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        found.append(
            Block(
                document,
                line,
                language,
                match[2],
                mark[1] if mark else "",
                int(mark[2]) if mark and mark[2] else 0,
            )
        )
    return found


def run_block(block: Block, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    kind = RUNNABLE[block.language]
    code = PIP_PREFIX.sub("", block.code.strip())
    if kind == "bash":
        argv = ["bash", "-e", "-c", code]
    elif kind == "sql":
        psql = shutil.which("psql", path=env["PATH"]) or "psql"
        argv = [psql, env["DATABASE_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        return subprocess.run(
            argv, input=code, cwd=workdir, env=env, capture_output=True, text=True, timeout=300
        )
    else:
        argv = [sys.executable, "-c", code]
    return subprocess.run(
        argv,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def environment(dsn_url: str, home: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "DATABASE_URL": dsn_url,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(home),
        "PAGER": "cat",
        "PSQL_PAGER": "cat",
    }


def as_url(conninfo: str) -> str:
    """Blocks say psql "$DATABASE_URL": give them a postgresql:// URL."""
    from psycopg.conninfo import conninfo_to_dict

    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v}
    host = params.pop("host", "localhost")
    port = params.pop("port", "5432")
    user = params.pop("user", "postgres")
    dbname = params.pop("dbname", "postgres")
    password = params.pop("password", "")
    auth = f"{user}:{password}@" if password else f"{user}@"
    if host.startswith("/"):
        return f"postgresql://{auth}/{dbname}?host={host}&port={port}"
    return f"postgresql://{auth}{host}:{port}/{dbname}"


def prepare(document: str, workdir: Path, dsn: str, psql: list[str], scratch: Path) -> None:
    """The working directory and database a document's blocks start from (see above)."""

    def run_psql(target: str, script: Path, cwd: Path) -> None:
        subprocess.run(
            [*psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target, "-f", str(script)],
            cwd=cwd,
            check=True,
            capture_output=True,
            timeout=60,
        )

    tool = Path(document).stem
    if document not in COMING_FROM or tool == "README":
        shutil.copytree(REPO / "sql", workdir / "sql")
        if tool == "README" and document in COMING_FROM:
            for path in sorted((workdir / "sql" / "forward").glob("*.sql"))[:2]:
                run_psql(dsn, path, workdir)
        return
    from tests.conftest import write_files
    from tests.importing.oldtools import migrate_with_old_tool
    from tests.importing.sets import SETS

    files = {k: v for k, v in SETS[tool].items() if not k.endswith(".fizz")}  # pop's own DSL
    src = write_files(workdir / SOURCE_DIRS[tool], files)
    scratch.mkdir()
    migrate_with_old_tool(tool, dsn, src, scratch, run_psql)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_runnable_block_runs(
    document: str, dsn: str, tmp_path: Path, psql: list[str]
) -> None:
    blocks = [b for b in blocks_of(document) if b.language in RUNNABLE]
    if document == "README.md" or document in COMING_FROM:
        assert blocks, f"{document} has no runnable block"
    if not (REPO / document).exists():
        pytest.fail(f"{document} is missing")
    workdir = tmp_path / "work"
    workdir.mkdir()
    prepare(document, workdir, dsn, psql, tmp_path / "scratch")
    env = environment(as_url(dsn), tmp_path)
    ran = 0
    try:
        for block in blocks:
            if block.mark == "illustrative":
                continue
            if block.mark == "ci":
                ci = (REPO / ".ci" / "run").read_text()
                assert block.code.strip() in ci, f"{block}: .ci/run does not run this command"
                continue
            block_env = env
            if block.mark == "embedded":
                ci = (REPO / ".ci" / "run").read_text()
                assert block.code.strip() in ci, f"{block}: .ci/run does not run this command"
                block_env = {k: v for k, v in env.items() if k != "DATABASE_URL"}
            result = run_block(block, workdir, block_env)
            assert result.returncode == block.expected_exit, (
                f"{block} exited {result.returncode}, expected {block.expected_exit}\n"
                f"--- code\n{block.code}--- stdout\n{result.stdout[-3000:]}"
                f"--- stderr\n{result.stderr[-3000:]}"
            )
            ran += 1
    finally:
        if (workdir / ".sqlrunner").exists():
            subprocess.run(
                [sys.executable, "-m", "sqlrunner", "stop-embedded"],
                cwd=workdir,
                capture_output=True,
                timeout=60,
            )
    assert ran > 0, f"{document}: no block ran"


def test_illustrative_blocks_are_few() -> None:
    for document in DOCUMENTS:
        blocks = [b for b in blocks_of(document) if b.language in RUNNABLE]
        illustrative = [b for b in blocks if b.mark == "illustrative"]
        assert len(illustrative) <= max(3, len(blocks) // 4), (
            f"{document}: {len(illustrative)} of {len(blocks)} runnable blocks are illustrative"
        )


def test_docs_name_no_machine_paths() -> None:
    for document in DOCUMENTS:
        path = REPO / document
        if path.exists():
            text = path.read_text()
            assert not re.search(r"/(work|farm|root|home/\w+)/", text), document
            assert "/tmp/" not in text, document


def prose_of(text: str) -> str:
    """The document without its fenced blocks: a link inside a code sample is not a link."""
    return FENCE.sub("", text)


def anchors_of(path: Path) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped,
    each space a hyphen, and -1, -2 ... on repeats."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(prose_of(path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("document", DOCUMENTS)
def test_links_resolve(document: str) -> None:
    path = REPO / document
    broken = []
    for target in LINK.findall(prose_of(path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors_of(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    assert not broken, f"{document}: broken links: {broken}"


def test_guide_and_reference_link_each_other() -> None:
    guide = prose_of((REPO / "MIGRATION_GUIDE.md").read_text())
    reference = prose_of((REPO / "docs/reference.md").read_text())
    assert "](docs/reference.md" in guide
    assert "](../MIGRATION_GUIDE.md" in reference


def test_guide_is_a_runbook() -> None:
    """The guide keeps its twelve sections and stays short enough to read in a change window
    (it was a 124 KB book): the twelve, with the preamble, about 30 KB; tables, matrices and
    long explanations belong in docs/reference.md. Sections later features add (the standbys,
    the backfill) go before the Reference, which stays last, and count only towards the whole
    file's limit."""
    text = (REPO / "MIGRATION_GUIDE.md").read_text()
    headings = re.findall(r"^## (\d+)\. (.+)$", text, re.M)
    numbers = [int(n) for n, _ in headings]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert headings[-1][1] == "Reference" and len(headings) >= 12, headings
    parts = re.split(r"(?m)^(?=## )", text)
    twelve = [p for p in parts if not p.startswith("## ") or re.match(r"## ([1-9]|1[01])\. ", p)]
    twelve.append(parts[-1])
    size = len("".join(twelve).encode())
    assert size <= 32_768, f"the twelve sections of MIGRATION_GUIDE.md are {size} bytes"
    assert len(text.encode()) <= 40_960, f"MIGRATION_GUIDE.md is {len(text.encode())} bytes"
