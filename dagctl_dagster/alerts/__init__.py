"""Slack failure hooks, the run-failure sensor, tiered alerts and run metrics.

``load_definitions`` calls :func:`build_alerting` once per code location::

    alerting = build_alerting(location)
    job = dg.define_asset_job("analytics_run", ..., hooks=alerting.step_hooks_for(project))
    defs = dg.Definitions.merge(..., alerting.definitions)

``alerting.definitions`` holds the ``slack`` resource
(:func:`~dagctl_dagster.alerts.sender.slack_resource`), the run-failure sensor, the
tiered-alert sensor, the ``dagctl/<project>/sqlmesh_state`` observable asset of each project
with a state database (SQLMesh)
with its hourly observation schedule, the ``dagctl/<project>/alerts`` / ``dagctl/<project>/runs``
record assets. These live in
group ``dagctl_observability`` under the ``dagctl`` prefix: a project's key prefix and group
hold exactly its models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.names import OBSERVABILITY_GROUP
from dagctl_dagster.project import CodeLocationContext
from dagctl_dagster.run_identity import JobKind, job_name

if TYPE_CHECKING:
    from dagctl_dagster.alerts.run_failure import StepNames


@dataclass
class Alerting:
    definitions: dg.Definitions = field(default_factory=dg.Definitions)
    hooks: dict[str, set[dg.HookDefinition]] = field(default_factory=dict)
    # The `dagctl_freshness` checks: the sensor and the runs that plan them evaluate them;
    # `<project>_run` jobs leave them out.
    freshness_checks: list[dg.AssetChecksDefinition] = field(default_factory=list)

    def step_hooks_for(self, project: ProjectConfig) -> set[dg.HookDefinition]:
        """The failure hooks to attach to the project's jobs (one Slack hook)."""
        return set(self.hooks.get(project.name, set()))


def build_alerting(location: CodeLocationContext) -> Alerting:
    """Hooks, sensors, observable assets and the Slack resource for every project."""
    from dagctl_dagster.alerts.freshness import build_freshness
    from dagctl_dagster.alerts.hooks import SLACK_RESOURCE_KEY, model_failure_hook
    from dagctl_dagster.alerts.projects import ProjectLookup
    from dagctl_dagster.alerts.run_failure import slack_run_failure_sensor
    from dagctl_dagster.alerts.sender import slack_resource
    from dagctl_dagster.alerts.state_size import state_key, state_size_observation
    from dagctl_dagster.alerts.tiered import alerts_key, runs_key, tiered_alert_sensor

    lookup = ProjectLookup(location.loaded.config)
    hooks: dict[str, set[dg.HookDefinition]] = {}
    for project_defs in location.projects:
        channel = lookup.alerts_for(project_defs.name).failure_channel
        hooks[project_defs.name] = {model_failure_hook(project_defs.name, channel, project_defs.models_by_op)}

    state_assets, state_jobs, state_schedules = state_size_observation(location.projects)
    record_assets = [
        dg.AssetSpec(key, group_name=OBSERVABILITY_GROUP, description=description)
        for p in location.projects
        for key, description in (
            (alerts_key(p.name), f"Alerts raised for project '{p.name}' (tier, cause, summary)."),
            (
                runs_key(p.name),
                f"One observation per finished run that included models of '{p.name}' "
                f'({job_name(p.project, JobKind.RUN)}, "Materialize all", any selection): duration and model counts.',
            ),
        )
    ]
    sensors = [
        slack_run_failure_sensor(lookup, _step_names(location)),
        tiered_alert_sensor(
            lookup,
            model_keys={p.name: list(p.model_keys) for p in location.projects},
            state_keys={p.name: state_key(p.name) for p in location.projects if p.state_probe is not None},
            state_probes={p.name: p.state_probe for p in location.projects if p.state_probe is not None},
        ),
    ]
    freshness_checks, freshness_sensors = build_freshness(location, lookup)
    definitions = dg.Definitions(
        assets=[*state_assets, *record_assets],
        asset_checks=freshness_checks,
        jobs=state_jobs,
        schedules=state_schedules,
        sensors=[*sensors, *freshness_sensors],
        resources={SLACK_RESOURCE_KEY: slack_resource()},
    )
    return Alerting(definitions=definitions, hooks=hooks, freshness_checks=freshness_checks)


def _step_names(location: CodeLocationContext) -> StepNames:
    from dagctl_dagster.alerts.run_failure import StepNames

    projects_by_op = {
        definition.op.name: p.name
        for p in location.projects
        for definition in p.assets
        if isinstance(definition, dg.AssetsDefinition) and definition.is_executable
    }
    models_by_op = {op: model for p in location.projects for op, model in p.models_by_op.items()}
    return StepNames(models_by_op=models_by_op, projects_by_op=projects_by_op)
