"""Slack failure hooks, the run-failure sensor, tiered alerts, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.project import CodeLocationContext


@dataclass
class Alerting:
    definitions: dg.Definitions = field(default_factory=dg.Definitions)

    def step_hooks_for(self, project: ProjectConfig) -> set[dg.HookDefinition]:
        return set()


def build_alerting(location: CodeLocationContext) -> Alerting:
    """Hooks and sensors for every project (filled in by the alerts module)."""
    return Alerting()
