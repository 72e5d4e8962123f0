"""The embedded server path: started for the session, gone afterwards (the one inner run
that starts its own PostgreSQL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import APP_SQL, WriteSql


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    )


def test_embedded_server_starts_as_root_and_leaves_nothing_behind(
    write_sql: WriteSql, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sql(APP_SQL)
    seen = pytester.path / "seen.json"
    pytester.makepyfile(
        test_app=f"""
        import json
        from pathlib import Path

        def test_server_is_embedded(sqlrunner_server, sqlrunner_conn):
            assert sqlrunner_server.embedded
            pid = int((sqlrunner_server.data_dir / "postmaster.pid").read_text().split()[0])
            tiers = sqlrunner_conn.execute("SELECT count(*) FROM tiers").fetchone()[0]
            Path({str(seen)!r}).write_text(json.dumps(
                {{"data_dir": str(sqlrunner_server.data_dir), "pid": pid, "tiers": tiers}}))
        """
    )
    monkeypatch.delenv("SQLRUNNER_TEST_DSN", raising=False)
    result = pytester.runpytest_subprocess(
        "-p", "sqlrunner.testing", "-p", "no:cacheprovider", "-q"
    )
    result.assert_outcomes(passed=1)
    found = json.loads(seen.read_text())
    assert found["tiers"] == 2
    data_dir = Path(found["data_dir"])
    assert not data_dir.exists() and not data_dir.parent.exists()
    assert not _alive(found["pid"]), "the embedded postmaster outlived the session"
