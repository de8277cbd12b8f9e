"""The code location(s) of the bundled example deployment (see workspace.yaml).

``defs`` serves every project of the config as one code location; an attribute named after a
location (what ``dagctl-dagster workspace`` writes into a workspace.yaml) serves that
location's projects only. ``$DAGCTL_CONFIG`` points it at another config file; by default it
serves the one beside it.
"""

import os
from pathlib import Path

from dagctl_dagster import definitions_attribute

CONFIG = os.environ.get("DAGCTL_CONFIG") or Path(__file__).resolve().parent / ".dagctl" / "config.yaml"


def __getattr__(name: str):
    return definitions_attribute(CONFIG, name)


def __dir__() -> list[str]:
    return ["defs"]
