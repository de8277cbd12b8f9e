"""The run-failure sensor: one Slack message for every failed run no step hook posted.

Example::

    sensor = slack_run_failure_sensor(lookup, steps=StepNames(models_by_op, projects_by_op))
    defs = dg.Definitions(sensors=[sensor], resources={"slack": DagctlSlackResource()})

A step hook posts the first model failure of a ``<project>_run`` and tags the run
(:mod:`dagctl_dagster.alerts.heard`); this sensor posts every other failed run, whatever
failed: steps that did not run their model (not in the environment, a failed first plan, a
lost claim), a plan or deploy job, a run worker that died (run monitoring, a Kubernetes pod),
a run that could not start, an ad-hoc asset selection ("Materialize all" carries no hooks).
The message names the failed steps and their errors, or the run's own failure.

dagster-slack's ``make_slack_on_run_failure_sensor`` builds its own ``WebClient(token)`` at
import time (Slack's URL only, the token captured at load, one channel, posting even when a
step hook already did); this sensor keeps its shape (a ``run_failure_sensor`` posting
``chat.postMessage``) but posts through the ``slack`` resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dagctl_dagster.alerts.heard import alerted_by, mark_heard, was_heard
from dagctl_dagster.alerts.messages import FailedStep, RunFailure, run_failure_text
from dagctl_dagster.alerts.projects import ProjectLookup
from dagctl_dagster.alerts.sender import AlertResource
from dagctl_dagster.names import FAILED_MODELS_KEY
from dagctl_dagster.run_identity import RUN_FAILURE_SENSOR


@dataclass(frozen=True)
class StepNames:
    """What a step key means to a person: its model, and the project of its op."""

    models_by_op: Mapping[str, str] = field(default_factory=dict)
    projects_by_op: Mapping[str, str] = field(default_factory=dict)

    def failed_step(self, event: dg.DagsterEvent) -> FailedStep:
        step_key = event.step_key or "?"
        data = event.step_failure_data
        user = data.user_failure_data if data is not None else None
        metadata: Mapping[str, Any] = user.metadata if user is not None else {}
        failed = getattr(metadata.get(FAILED_MODELS_KEY), "value", None)
        name = ", ".join(map(str, failed)) if isinstance(failed, list) and failed else self.models_by_op.get(step_key)
        error = (user.description if user is not None else None) or (data.error.message if data and data.error else "")
        return FailedStep(name=name or step_key, error=error or "step failed")

    def project_of_steps(self, events: Sequence[dg.DagsterEvent]) -> str | None:
        return next((p for e in events if (p := self.projects_by_op.get(e.step_key or ""))), None)


def slack_run_failure_sensor(projects: ProjectLookup, steps: StepNames | None = None) -> dg.SensorDefinition:
    """Posts a failed run unless it was posted already (its ``dagctl/failure_alerted`` tag)."""
    names = steps or StepNames()

    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR,
        description="Posts every failed run to Slack once, unless a model step's failure hook already did.",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sensor(context: dg.RunFailureSensorContext, slack: AlertResource):
        run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
        if was_heard(run):
            return dg.SkipReason(f"run {run.run_id}: already posted by {alerted_by(run)}")
        failures = context.get_step_failure_events()
        project = projects.project_of(run.job_name, run.tags) or names.project_of_steps(failures)
        channel = projects.alerts_for(project).failure_channel
        text = run_failure_text(
            RunFailure(
                project=project,
                run_id=run.run_id,
                job_name=run.job_name,
                error=context.failure_event.message or "run failed",
                failed_steps=tuple(names.failed_step(event) for event in failures),
            )
        )
        mark_heard(context.instance, run.run_id, by=RUN_FAILURE_SENSOR)
        slack.get_client().chat_postMessage(channel=channel or "", text=text)
        context.log.info(f"run {run.run_id} failure reported to {channel or '(log only)'}")
        return None

    return _sensor
