#!/usr/bin/env bash
# Runs the whole test suite on the locked environment: the linter, the formatter check and
# the type checker first (any finding fails), then pytest against real Dagster, SQLMesh,
# dbt and PostgreSQL. Tests run in parallel workers, one per logical CPU (at most 4): most
# of a test's time is a Dagster, SQLMesh or dbt subprocess, so two workers keep a 2-core
# machine busy. DAGCTL_TEST_WORKERS=0 runs them in one process; pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check dagctl_dagster tests benchmarks
.venv/bin/ruff format --check dagctl_dagster tests benchmarks
.venv/bin/mypy
exec .venv/bin/pytest -n "${DAGCTL_TEST_WORKERS:-logical}" --maxprocesses 4 --dist worksteal "$@"
