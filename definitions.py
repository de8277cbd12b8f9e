"""The code location of the bundled example deployment (see workspace.yaml).

``$DAGCTL_CONFIG`` points it at another config file; by default it serves the one beside it.
"""

import os
from pathlib import Path

from dagctl_dagster import load_definitions

defs = load_definitions(os.environ.get("DAGCTL_CONFIG") or Path(__file__).resolve().parent / ".dagctl" / "config.yaml")
