"""pglast is imported plainly: parsing never touches the host's import system or sys.modules.

A library that a service imports must not rewrite the service's ``sys.meta_path``
or stand in for a dependency's modules. Each case runs in a fresh interpreter:
what is imported is the point.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_sqlrunner_does_not_load_the_parser() -> None:
    out = run_python(
        """
        import sys
        import sqlrunner, sqlrunner.api
        print(sorted(m for m in sys.modules if m.split(".")[0] == "pglast"))
        """
    )
    assert out == "[]"


def test_parsing_leaves_the_import_system_as_it_was() -> None:
    out = run_python(
        """
        import sys
        from pathlib import Path
        before = (list(sys.meta_path), list(sys.path_hooks))
        from sqlrunner.files import Migration
        from sqlrunner.sqltext import script_for
        text = "BEGIN;\\nSELECT $$a;b$$;\\nCOMMIT;\\n"
        m = Migration("forward", 1, "x", Path("forward/0001_x.sql"), "c", text, False)
        print([s.text for s in script_for(m).statements])
        print((list(sys.meta_path), list(sys.path_hooks)) == before)
        print([n for n in sys.modules if "pglast" in n and not n.startswith("pglast")])
        import pglast, pglast.parser
        print(all(sys.modules[n].__name__ == n for n in sys.modules if n.startswith("pglast")))
        print(type(pglast.parse_sql("select 1")[0].stmt).__name__, pglast.prettify("select a"))
        """
    )
    assert out.splitlines() == ["['SELECT $$a;b$$']", "True", "[]", "True", "SelectStmt SELECT a"]


def test_the_parser_is_pglasts_own() -> None:
    out = run_python(
        """
        import pglast.parser
        from sqlrunner import sqltext
        print(sqltext.parse_sql_json is pglast.parser.parse_sql_json)
        print(sqltext.ParseError is pglast.parser.ParseError and issubclass(sqltext.ParseError, pglast.Error))
        """
    )
    assert out.splitlines() == ["True", "True"]
