#!/usr/bin/env bash
# Runs the whole test suite on the locked environment: the linter and the formatter check first
# (any finding fails at once), then pytest against real Dagster, SQLMesh, dbt and PostgreSQL,
# with the type checker beside it (a finding fails the command when pytest ends, its output
# printed last). mypy uses one core for half a minute; beside pytest that core is not idle.
# Tests run in parallel workers, one more than the logical CPUs (at most 4): a test spends
# part of its time waiting for its daemons, servers and runs, and the extra worker keeps the
# CPUs busy meanwhile. Each test module runs whole on one worker, in the order
# tests/conftest.py gives (longest first), so module fixtures are made once.
# DAGCTL_TEST_WORKERS=0 runs them in one process; pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check dagctl_dagster tests benchmarks
.venv/bin/ruff format --check dagctl_dagster tests benchmarks
mypy_log="$(mktemp)"
trap 'kill "${mypy_pid:-}" 2>/dev/null || true; rm -f "$mypy_log"' EXIT
.venv/bin/mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
workers="${DAGCTL_TEST_WORKERS:-$(($(nproc) + 1))}"
pytest_status=0
.venv/bin/pytest -n "$workers" --maxprocesses 4 --dist loadfile --no-loadscope-reorder "$@" || pytest_status=$?
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
cat "$mypy_log"
if [ "$mypy_status" -ne 0 ]; then
  echo "mypy found the problems above (exit $mypy_status)" >&2
fi
[ "$pytest_status" -eq 0 ] && [ "$mypy_status" -eq 0 ] || exit $((pytest_status ? pytest_status : mypy_status))
