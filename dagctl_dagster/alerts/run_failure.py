"""The run-failure sensor: failures no step hook saw (run worker OOM, pod evicted, launch failed).

Example::

    sensor = slack_run_failure_sensor(location, hooked_jobs={"analytics_run"})
    defs = dg.Definitions(sensors=[sensor], resources={"slack": DagctlSlackResource()})

dagster-slack's ``make_slack_on_run_failure_sensor`` builds its own ``WebClient(token)`` at
import time (Slack's URL only, the token captured at load, one channel, posting even when a
step hook already did); this sensor keeps its shape (a ``run_failure_sensor`` posting
``chat.postMessage``) but posts through the ``slack`` resource.
"""

from __future__ import annotations

from collections.abc import Collection

import dagster as dg

from dagctl_dagster.alerts.messages import RunFailure, run_failure_text
from dagctl_dagster.alerts.projects import ProjectLookup
from dagctl_dagster.alerts.sender import AlertResource
from dagctl_dagster.run_identity import RUN_FAILURE_SENSOR


def slack_run_failure_sensor(projects: ProjectLookup, hooked_jobs: Collection[str]) -> dg.SensorDefinition:
    """Posts a run failure unless the run's job has step hooks and a step failure was posted."""

    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR,
        description="Posts to Slack when a run fails outside its model steps.",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sensor(context: dg.RunFailureSensorContext, slack: AlertResource):
        run = context.dagster_run
        if run.job_name in hooked_jobs and context.get_step_failure_events():
            return dg.SkipReason(f"run {run.run_id}: its step failure hooks already posted")
        project = projects.project_of(run.job_name, run.tags)
        channel = projects.alerts_for(project).failure_channel if project else projects.default_alerts.failure_channel
        text = run_failure_text(
            RunFailure(
                project=project,
                run_id=run.run_id,
                job_name=run.job_name,
                error=context.failure_event.message or "run failed",
            )
        )
        slack.get_client().chat_postMessage(channel=channel or "", text=text)
        context.log.info(f"run {run.run_id} failure reported to {channel or '(log only)'}")
        return None

    return _sensor
