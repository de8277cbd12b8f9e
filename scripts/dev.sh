#!/usr/bin/env bash
# Starts the bundled example deployment: `dg dev` (webserver + daemon) on the example
# SQLMesh and dbt projects, with a project-local DAGSTER_HOME (SQLite), DuckDB warehouses
# and SQLite claims. Open http://127.0.0.1:3000.
# Schedules and sensors that launch runs start off; DAGCTL_AUTOMATION=on scripts/dev.sh
# starts them as production does.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
export DAGCTL_AUTOMATION="${DAGCTL_AUTOMATION:-off}"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || printf 'telemetry:\n  enabled: false\n' > "$DAGSTER_HOME/dagster.yaml"
exec .venv/bin/dg dev -w workspace.yaml -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}" "$@"
