"""pgparser loads pglast's C parser alone; pglast itself must keep working in the same process.

Each case runs in a fresh interpreter: what is imported is the point.
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


def test_the_parser_loads_without_pglasts_python_modules() -> None:
    out = run_python(
        """
        import sys
        from sqlrunner import pgparser
        p = pgparser.parser()
        print(p.split("select 1; select $$a;b$$", only_slices=True))
        print(sorted(m for m in sys.modules if m == "pglast" or m.startswith("pglast.")))
        """
    )
    slices, loaded = out.splitlines()
    assert slices == "(slice(0, 8, None), slice(10, 24, None))"
    assert "pglast.ast" not in loaded and "pglast.enums" not in loaded and "'pglast'" not in loaded


def test_a_syntax_error_is_parse_error_with_its_offset() -> None:
    out = run_python(
        """
        from sqlrunner import pgparser
        p = pgparser.parser()
        try:
            p.parse_sql_json("select 1;\\nselec 2")
        except p.ParseError as exc:
            print(exc.args)
        """
    )
    assert out == "('syntax error at or near \"selec\"', 10)"


def test_pglast_imported_afterwards_is_whole() -> None:
    out = run_python(
        """
        from sqlrunner import pgparser
        light = pgparser.parser()
        light.split("select 1")
        import pglast
        import pglast.parser
        print(pglast.parser is light, pglast.error.Error is pglast.Error)
        print(type(pglast.parse_sql("select 1")[0].stmt).__name__)
        try:
            pglast.parse_sql("selec")
        except pglast.Error as exc:
            print("caught", type(exc).__name__)
        print(pglast.prettify("select a from b"))
        """
    )
    assert out.splitlines() == ["True True", "SelectStmt", "caught ParseError", "SELECT a", "FROM b"]


def test_pglast_imported_first_is_simply_reused() -> None:
    out = run_python(
        """
        import pglast.parser
        from sqlrunner import pgparser
        print(pgparser.parser() is pglast.parser)
        """
    )
    assert out == "True"
