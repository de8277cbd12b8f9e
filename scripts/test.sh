#!/usr/bin/env bash
# Runs the whole test suite on the locked environment: the linter, the formatter check and
# the type checker first (any finding fails), then pytest against real Dagster, SQLMesh,
# dbt and PostgreSQL. Tests run in parallel workers, one more than the logical CPUs (at most
# 4): a test spends part of its time waiting for its daemons, servers and runs, and the
# extra worker keeps the CPUs busy meanwhile. Each test module runs whole on one worker, in
# the order tests/conftest.py gives (longest first), so module fixtures are made once. DAGCTL_TEST_WORKERS=0 runs them in one
# process; pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check dagctl_dagster tests benchmarks
.venv/bin/ruff format --check dagctl_dagster tests benchmarks
.venv/bin/mypy
workers="${DAGCTL_TEST_WORKERS:-$(($(nproc) + 1))}"
exec .venv/bin/pytest -n "$workers" --maxprocesses 4 --dist loadfile --no-loadscope-reorder "$@"
