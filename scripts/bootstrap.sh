#!/usr/bin/env bash
# Installs the locked environment into .venv (uv first, from PyPI, if the machine lacks it).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# Compiled bytecode: where PYTHONDONTWRITEBYTECODE is set (as on the CI machines), every
# process would otherwise compile every module it imports, Dagster and SQLMesh included.
uv sync --frozen --quiet --compile-bytecode
