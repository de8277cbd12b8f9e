#!/usr/bin/env bash
# Runs the whole test suite on the locked environment: the linter and the formatter check
# first (any finding fails), then pytest against real Dagster, SQLMesh, dbt and PostgreSQL,
# with the type checker running beside it: it only reads the source, and its findings fail
# the command as before (printed after the tests). Tests run in parallel workers, one more
# than the logical CPUs (at most 4): a test spends part of its time waiting for its daemons,
# servers and runs, and the extra worker keeps the CPUs busy meanwhile (two more measured
# slower). DAGCTL_TEST_WORKERS=0 runs them in one process; pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check dagctl_dagster tests benchmarks
.venv/bin/ruff format --check dagctl_dagster tests benchmarks
types_log="$(mktemp)"
.venv/bin/mypy >"$types_log" 2>&1 &
types_pid=$!
trap 'kill "$types_pid" 2>/dev/null || true; rm -f "$types_log"' EXIT
workers="${DAGCTL_TEST_WORKERS:-$(($(nproc) + 1))}"
tests=0
.venv/bin/pytest -n "$workers" --maxprocesses 4 --dist worksteal "$@" || tests=$?
types=0
wait "$types_pid" || types=$?
echo "mypy:"
cat "$types_log"
if [ "$tests" -ne 0 ]; then
  exit "$tests"
fi
if [ "$types" -ne 0 ]; then
  echo "The type checker found errors (above)." >&2
  exit "$types"
fi
