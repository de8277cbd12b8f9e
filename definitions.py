"""The code location of the bundled example deployment (see workspace.yaml)."""

from pathlib import Path

from dagctl_dagster import load_definitions

defs = load_definitions(Path(__file__).resolve().parent / ".dagctl" / "config.yaml")
