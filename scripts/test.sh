#!/usr/bin/env bash
# Runs the whole test suite on the locked environment (real Dagster, SQLMesh, dbt, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/pytest "$@"
