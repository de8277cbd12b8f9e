"""A job under the claim-aware executor whose steps end three ways: one succeeds, one fails,
one records that it did not run (through the typed channel a framework's step body uses)
and fails with a plain failure. The Slack failure hook of project ``notrun`` is attached."""

import dagster as dg
from dagster import AssetExecutionContext

from dagctl_dagster.alerts.hooks import SLACK_RESOURCE_KEY, model_failure_hook
from dagctl_dagster.alerts.slack import DagctlSlackResource
from dagctl_dagster.execution.executor import claim_aware_executor
from dagctl_dagster.execution.framework import StepGrants
from dagctl_dagster.execution.not_run import NotRun
from dagctl_dagster.names import NotRunReason

PROJECT = "notrun"
REFUSED_MESSAGE = "refused: this run lost the claim on notrun/refused"
BROKEN_ERROR = "notrun/broken failed on purpose"

_grants = StepGrants()


@dg.asset(key=[PROJECT, "fine"])
def fine() -> None:
    return None


@dg.asset(key=[PROJECT, "refused"])
def refused(context: AssetExecutionContext) -> None:
    grant = _grants.of(context)
    not_run = NotRun(NotRunReason.CLAIM_LOST, REFUSED_MESSAGE)
    grant.ledger.record(grant.step_key, not_run)
    # No reason in the failure's metadata: readers must take it from the typed record.
    raise dg.Failure(description=not_run.message)


@dg.asset(key=[PROJECT, "broken"])
def broken() -> None:
    raise RuntimeError(BROKEN_ERROR)


MODELS_BY_OP = {"notrun__fine": "notrun/fine", "notrun__refused": "notrun/refused", "notrun__broken": "notrun/broken"}
hook = model_failure_hook(PROJECT, "#data-alerts", MODELS_BY_OP)
job = dg.define_asset_job(
    f"{PROJECT}_run", selection=[fine, refused, broken], executor_def=claim_aware_executor, hooks={hook}
)
defs = dg.Definitions(assets=[fine, refused, broken], jobs=[job], resources={SLACK_RESOURCE_KEY: DagctlSlackResource()})


def get_job() -> dg.JobDefinition:
    return defs.resolve_job_def(f"{PROJECT}_run")
