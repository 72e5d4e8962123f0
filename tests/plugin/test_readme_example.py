"""The README's "Testing your application with sqlrunner" examples, run as written."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Testing your application with sqlrunner"


def example_files() -> dict[str, str]:
    """Every python block of the section whose first line names its file (``# tests/x.py``)."""
    text = REPO.joinpath("README.md").read_text()
    section = text[text.index(SECTION) :]
    following = section.find("\n## ", len(SECTION))
    section = section if following < 0 else section[:following]
    files = {}
    for block in re.findall(r"^```python\n(.*?)^```", section, re.M | re.S):
        first, _, body = block.partition("\n")
        assert first.startswith("# "), f"a README example names its file first: {first!r}"
        files[first[2:].strip()] = body
    return files


def test_readme_application_example_passes(
    pytester: pytest.Pytester, run_inner: Callable[..., pytest.RunResult]
) -> None:
    files = example_files()
    shutil.copytree(REPO / "sql", pytester.path / "sql")
    for name in ("tests/test_tiers.py", "tests/test_migrations.py"):
        path = pytester.path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(files[name])
    run_inner("-q").assert_outcomes(passed=4)


def test_readme_pytest_postgresql_example_passes(pytester: pytest.Pytester, outer_dsn: str) -> None:
    files = example_files()
    shutil.copytree(REPO / "sql", pytester.path / "sql")
    pytester.makeconftest(files["conftest.py"])
    pytester.makepyfile(
        test_app="def test_migrated(postgresql):\n"
        "    assert postgresql.execute('SELECT count(*) FROM tier_model_rules').fetchone()[0]\n"
    )
    params = psycopg.conninfo.conninfo_to_dict(outer_dsn)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-q",
        f"--postgresql-host={params.get('host', 'localhost')}",
        f"--postgresql-port={params.get('port', 5432)}",
        f"--postgresql-user={params.get('user', 'postgres')}",
        *([f"--postgresql-password={params['password']}"] if params.get("password") else []),
    )
    result.assert_outcomes(passed=1)
