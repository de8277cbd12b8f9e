#!/usr/bin/env bash
# Starts the bundled example deployment: dagster dev (webserver + daemon) on the example
# SQLMesh and dbt projects, with a project-local DAGSTER_HOME (SQLite), DuckDB warehouses
# and SQLite claims. Open http://127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || printf 'telemetry:\n  enabled: false\n' > "$DAGSTER_HOME/dagster.yaml"
exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}" "$@"
