"""Names one room writes and another reads: run tags, metadata keys, the run summary's fields.

Producers and consumers import them from here, so a rename changes both sides at once.

Example::

    from dagctl_dagster.names import ExecutorSummary, PROJECT_TAG

    summary = ExecutorSummary.from_metadata(engine_event_metadata)  # None if not a summary
    summary.skipped                                                # every skip reason
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# Run and op tags.
PROJECT_TAG = "dagctl/project"
FRAMEWORK_TAG = "dagctl/framework"
SQLMESH_MODEL_TAG = "dagctl/sqlmesh_model"
MODELS_TAG_PREFIX = "dagctl/models_"
DURATION_TAG = "dagctl/duration_s"
# Op tag of a model step in a warehouse pool: the pool's limit from `.dagctl/config.yaml`.
POOL_LIMIT_TAG = "dagctl/pool_limit"
# Tags of the runs the deploy sensor launches.
DEPLOY_VERSION_TAG = "dagctl/deploy-version"
DEPLOY_COMMIT_TAG = "dagctl/deploy-commit"
DEPLOY_SCOPE_TAG = "dagctl/deploy-scope"
DEPLOY_CHANGED_FILES_TAG = "dagctl/changed-files"
# Dagster refuses longer tag values.
MAX_TAG_CHARS = 1000
# The commit the code location was loaded from (a git-sync checkout); the run launcher has
# the run's git-sync clone it, and the UI shows it on the run.
CODE_REVISION_TAG = "dagctl/code_revision"

# Asset keys and group of the code location's own observability assets. They live under
# their own prefix so that a project's key prefix and group hold exactly its models.
OBSERVABILITY_PREFIX = "dagctl"
OBSERVABILITY_GROUP = "dagctl_observability"

# Metadata of model materializations.
SQLMESH_DURATION_KEY = "duration_s"
DBT_DURATION_KEY = "Execution Duration"  # dagster-dbt's, from dbt's node timings
ROW_COUNT_KEY = "dagster/row_count"
COLUMN_SCHEMA_KEY = "dagster/column_schema"
MODEL_DURATION_KEYS = (SQLMESH_DURATION_KEY, DBT_DURATION_KEY)
# What a model's evaluation cost the warehouse (dagctl_dagster/cost.py): on its materialization,
# summed on the run summary and on `dagctl/<project>/runs`; left out where nothing was counted.
WAREHOUSE_QUERIES_KEY = "warehouse_queries"
WAREHOUSE_QUERY_TIME_KEY = "warehouse_query_s"

# Step hooks that act only when a step fails (the Slack model-failure hook): the executor
# does not build their hook context for a step that succeeded.
FAILURE_HOOK_PREFIX = "dagctl_slack_on_failure_"


def failure_hook_name(project: str) -> str:
    return f"{FAILURE_HOOK_PREFIX}{project}"


def acts_only_on_failure(hook_name: str) -> bool:
    return hook_name.startswith(FAILURE_HOOK_PREFIX)


# Run tag: this failed run has had its one Slack message (value: who posted it, the failure
# hook of a step or the run-failure sensor). Whoever sets it first posts; nobody else does.
FAILURE_ALERTED_TAG = "dagctl/failure_alerted"


# Metadata of a failed multi-model step (one dbt invocation): the models behind the failure.
FAILED_MODELS_KEY = "failed_models"
SKIPPED_MODELS_KEY = "skipped_models"


def model_names(value: Any) -> list[str]:
    """The models a ``failed_models`` / ``skipped_models`` value lists (a list, its JSON, or
    a ``MetadataValue`` of either)."""
    raw = getattr(value, "value", value)
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.startswith("[") else [n for n in raw.split(", ") if n]
    return [str(n) for n in raw or []]


# Output metadata of a `<project>_plan` run: whether the plan was applied.
PLAN_APPLIED_KEY = "applied"
PLAN_ENVIRONMENT_KEY = "environment"


# Failure metadata of a step that did not evaluate its model for a reason other than the
# model failing, as the UI and the event log show it. In the run worker the reason travels as
# a typed value (execution/not_run.py), which the summary and the hooks read.
NOT_RUN_REASON_KEY = "dagctl/not_run_reason"


class NotRunReason(enum.Enum):
    NOT_IN_ENVIRONMENT = "not_in_environment"  # files changed, no plan applied yet
    CLAIM_LOST = "claim_lost"  # the run no longer holds the model's claim
    ENVIRONMENT_UNAVAILABLE = "environment_unavailable"  # removed while the run went on
    FRAMEWORK_NOT_READY = "framework_not_ready"  # e.g. a unit test failed before the first plan
    RUN_STOPPED = "run_stopped"  # the run was terminated mid-model
    # A plan the run applied failed on another model, so SQLMesh promoted nothing: the model is
    # not in the environment (what the plan evaluated of it is kept for the next plan).
    NOT_DEPLOYED = "not_deployed"


# Metadata key of a run summary that counts one project's models (a run spanning several
# projects also writes one summary per project).
SUMMARY_PROJECT_KEY = "project"


@dataclass(frozen=True)
class ExecutorSummary:
    """The claim-aware executor's run summary (an engine event's metadata), counted per model.

    ``executed`` models were evaluated (their step materialized them); ``nothing_due`` models
    had their step succeed with nothing to evaluate. A step with no model (a check step)
    counts only when it fails or does not run, as one (execution/tally.py).
    """

    duration_s: float
    executed: int
    failed: int
    blocked: int
    skipped_claimed_elsewhere: int
    skipped_environment_changed: int
    skipped_downstream: int
    not_run: int = 0
    # Steps skipped because an operator paused their model (their downstream counts as skipped_downstream).
    skipped_paused: int = 0
    # Models left out of a multi-model step (dbt build): claimed elsewhere or paused.
    models_left_out: int = 0
    not_run_not_in_environment: int = 0
    not_run_claim_lost: int = 0
    not_run_environment_unavailable: int = 0
    not_run_framework_not_ready: int = 0
    not_run_run_stopped: int = 0
    not_run_not_deployed: int = 0
    # Models whose step succeeded with nothing due (nothing evaluated, no materialization).
    nothing_due: int = 0
    # What the run's models cost the warehouse (the sums of their materializations'
    # WAREHOUSE_QUERIES_KEY / WAREHOUSE_QUERY_TIME_KEY); None, and not written, when none was counted.
    warehouse_queries: int | None = None
    warehouse_query_s: float | None = None

    @property
    def skipped(self) -> int:
        return (
            self.skipped_claimed_elsewhere
            + self.skipped_environment_changed
            + self.skipped_downstream
            + self.skipped_paused
        )

    def metadata(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ExecutorSummary | None:
        """The summary in an event's metadata (raw values or ``MetadataValue``s), else None."""
        values = {
            f.name: getattr(metadata.get(f.name, f.default), "value", metadata.get(f.name, f.default))
            for f in fields(cls)
        }
        counts = [v for k, v in values.items() if k not in _SUMMARY_NUMBERS]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            return None
        if not all(_optional_number(values[k]) for k in _SUMMARY_NUMBERS if k != "duration_s"):
            return None
        if not isinstance(values["duration_s"], (int, float)):
            return None
        return cls(**values)


_SUMMARY_NUMBERS = ("duration_s", WAREHOUSE_QUERIES_KEY, WAREHOUSE_QUERY_TIME_KEY)


def _optional_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


# Metadata of the AssetObservation a pause or resume records on the model's asset.
PAUSED_KEY = "dagctl/paused"
PAUSED_REASON_KEY = "dagctl/paused_reason"
PAUSED_BY_KEY = "dagctl/paused_by"
PAUSED_SINCE_KEY = "dagctl/paused_since"


# The freshness SLA check every model gets, and its metadata.
FRESHNESS_CHECK_NAME = "dagctl_freshness"
FRESHNESS_LAST_END_KEY = "dagctl/last_interval_end"
FRESHNESS_DUE_KEY = "dagctl/due_interval_end"
