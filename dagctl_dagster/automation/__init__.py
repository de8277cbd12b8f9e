"""Schedules, the config-version deploy sensor, SQLMesh plan / janitor / state-backup jobs."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from dagctl_dagster.project import CodeLocationContext


@dataclass
class Automation:
    definitions: dg.Definitions = field(default_factory=dg.Definitions)


def build_automation(location: CodeLocationContext) -> Automation:
    """Schedules, sensors and jobs for every project (filled in by the automation module)."""
    return Automation()
