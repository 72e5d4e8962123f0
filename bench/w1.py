"""Workload W1: N tiny migrations (default 200), in sqlrunner's layout.

    python bench/w1.py DEST [--n 200] [--formats]

writes DEST/sql/forward/NNNN_t_NNN.sql, each

    BEGIN;
    CREATE TABLE t_NNN (id bigint primary key, v text);
    CREATE INDEX t_NNN_v_idx ON t_NNN (v);
    COMMIT;

and with --formats also the same migrations in each peer's format under
DEST/tools/ (dbmate, yoyo, alembic, sqitch; see _formats.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _formats

TEMPLATE = (
    "BEGIN;\n"
    "CREATE TABLE t_{i:03d} (id bigint primary key, v text);\n"
    "CREATE INDEX t_{i:03d}_v_idx ON t_{i:03d} (v);\n"
    "COMMIT;\n"
)


def generate(dest: Path, n: int = 200) -> Path:
    """Write the W1 set under dest/sql and return that sql dir."""
    sql_dir = Path(dest) / "sql"
    fwd = sql_dir / "forward"
    fwd.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        (fwd / f"{i:04d}_t_{i:03d}.sql").write_text(TEMPLATE.format(i=i), encoding="utf-8")
    return sql_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--formats", action="store_true", help="also write each peer's format")
    ap.add_argument("--psql", default="psql", help="psql client Sqitch should use")
    a = ap.parse_args(argv)
    sql_dir = generate(a.dest, a.n)
    print(sql_dir)
    if a.formats:
        for tool, path in _formats.write_all(
            _formats.load_sql_set(sql_dir), a.dest / "tools", a.psql
        ).items():
            print(f"{tool}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
