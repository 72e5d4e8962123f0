"""squawk over every file of sql/, as CI runs it: no --assume-in-transaction (the files
carry their own BEGIN/COMMIT), exit 0. Rules are silenced only inline, with a reason."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SQL_DIR

IGNORE = re.compile(r"--\s*squawk-ignore(?P<file>-file)?\b(?P<rest>.*)")
WITH_REASON = re.compile(r"^ (?P<rules>[a-z-]+(?:, [a-z-]+)*) -- \S.{10,}$")


def _squawk() -> str:
    found = shutil.which("squawk") or str(Path(sys.executable).with_name("squawk"))
    assert Path(found).exists(), "squawk not found (pip install squawk-cli)"
    return found


def _run(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_squawk(), *map(str, paths)], capture_output=True, text=True, timeout=60)


def test_squawk_passes_every_file(tmp_path: Path) -> None:
    files = sorted(SQL_DIR.rglob("*.sql"))
    assert len(files) == 10
    result = _run(*(_as_batch(path, tmp_path) for path in files))
    assert result.returncode == 0, result.stdout + result.stderr


def _as_batch(path: Path, tmp_path: Path) -> Path:
    """A batched file as one batch runs it: squawk's parser refuses the psql variables
    :lo and :hi, so it lints a copy with them replaced by bounds (as psql -v does)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("-- sqlrunner: batched"):
        return path
    copy = tmp_path / path.name
    copy.write_text(re.sub(r":(lo|hi)\b", lambda m: {"lo": "1", "hi": "10001"}[m[1]], text))
    return copy


def test_squawk_fails_on_an_unsafe_migration(tmp_path: Path) -> None:
    """The lint is live: a blocking index build on an existing table is reported."""
    unsafe = tmp_path / "0099_unsafe.sql"
    unsafe.write_text(
        "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nBEGIN;\n"
        "CREATE INDEX IF NOT EXISTS x_idx ON public.llm_usage_logs (model);\n"
        "COMMIT;\n",
        encoding="utf-8",
    )
    result = _run(unsafe)
    assert result.returncode != 0
    assert "require-concurrent-index-creation" in result.stdout


@pytest.mark.parametrize("path", sorted(SQL_DIR.rglob("*.sql")), ids=lambda p: p.name)
def test_rules_are_silenced_inline_with_a_reason(path: Path) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        match = IGNORE.search(line)
        if match is None:
            continue
        reason = WITH_REASON.match(match["rest"])
        assert reason is not None, f"{path.name}: squawk-ignore without a reason: {line}"
        if match["file"]:  # file-wide: only rollback files, only the ban-drop-* family
            assert path.parent.name == "rollback", line
            assert all(r.startswith("ban-drop-") for r in reason["rules"].split(", ")), line
