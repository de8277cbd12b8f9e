"""The Slack failure hook on every model step (what dagster-slack's ``slack_on_failure`` does).

The first model step of a run that fails posts at once (the run may go on for long); later
failures of that run post nothing more, and the message says where to see them. A step that
did not run its model posts nothing: the run-failure sensor posts that run, naming what
failed, unless a model failure was posted already (:mod:`dagctl_dagster.alerts.heard`).

Example::

    hook = model_failure_hook("analytics", "#data-alerts", {"analytics__db__orders": "db/orders"})
    job = dg.define_asset_job("analytics_run", selection=..., hooks={hook})

The hook needs the ``slack`` resource (:func:`~dagctl_dagster.alerts.sender.slack_resource`),
whose client posts from a background thread; the message function never raises. It is written
here rather than taken from dagster-slack so that a deployment without the ``slack`` extra
still loads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import dagster as dg

from dagctl_dagster.alerts.heard import claim_run_alert
from dagctl_dagster.alerts.messages import StepFailure, step_failure_text
from dagctl_dagster.alerts.sender import SLACK_RESOURCE_KEY
from dagctl_dagster.execution.not_run import NotRun, NotRunLedger
from dagctl_dagster.names import FAILED_MODELS_KEY, SQLMESH_MODEL_TAG, failure_hook_name

logger = logging.getLogger("dagctl_dagster.alerts")

__all__ = ["SLACK_RESOURCE_KEY", "model_failure_hook"]


def model_failure_hook(project: str, channel: str | None, models_by_op: Mapping[str, str]) -> dg.HookDefinition:
    """A failure hook posting project, model, run id, the error's first line and a run link."""

    def message(context: dg.HookContext) -> str:
        try:
            return step_failure_text(
                StepFailure(
                    project=project,
                    model=model_of_step(context, models_by_op),
                    run_id=context.run_id,
                    job_name=context.job_name,
                    error=error_of(context.op_exception),
                )
            )
        except Exception:  # a hook must never raise: fall back to the bare facts
            logger.exception("building the failure message for run %s failed", context.run_id)
            return f":red_circle: *{project}* step {context.step_key} failed in run {context.run_id}"

    @dg.failure_hook(name=failure_hook_name(project), required_resource_keys={SLACK_RESOURCE_KEY})
    def _on_model_failure(context: dg.HookContext) -> None:
        # A step that did not evaluate its model (not in the environment, the project's first
        # plan failed elsewhere, a lost claim) is no model failure: the run's own alert says why.
        if not_run_of(context) is None and _first_failure_of_run(context):
            # Without a channel the client logs the message instead of sending it.
            slack = getattr(context.resources, SLACK_RESOURCE_KEY)
            slack.get_client().chat_postMessage(channel=channel or "", text=message(context))

    return _on_model_failure


def _first_failure_of_run(context: dg.HookContext) -> bool:
    try:
        return claim_run_alert(context.instance, context.run_id, by=f"step {context.step_key}")
    except Exception:  # storage unreachable: leave the run to the run-failure sensor
        logger.exception("could not mark run %s as alerted; the run-failure sensor posts it", context.run_id)
        return False


def model_of_step(context: dg.HookContext, models_by_op: Mapping[str, str]) -> str:
    """The step's model; for a step of several models, those its failure names (``failed_models``)."""
    failed = failed_models(context.op_exception)
    if failed:
        return ", ".join(failed)
    op_name = context.op.name
    return models_by_op.get(op_name) or context.op.tags.get(SQLMESH_MODEL_TAG) or op_name


def not_run_of(context: dg.HookContext) -> NotRun | None:
    """Why the step ran nothing, when it recorded that it did not run (it failed for it)."""
    return NotRunLedger.find(context.run_id, context.step_key)


def failed_models(exc: BaseException | None) -> list[str]:
    if not isinstance(exc, dg.Failure):
        return []
    value = exc.metadata.get(FAILED_MODELS_KEY)
    names = getattr(value, "value", value)
    return [str(name) for name in names] if isinstance(names, list) else []


def error_of(exc: BaseException | None) -> str:
    if exc is None:
        return "(no error captured)"
    if isinstance(exc, dg.Failure) and exc.description:
        return exc.description
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
