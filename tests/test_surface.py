"""What a user sees through the `dagster` CLI and the webserver: a project's key prefix and
group hold exactly its models, and both can be materialized as a whole.

The webserver's side (groups, "Materialize all" twice) is
`test_freshness.py::test_webserver_groups_hold_exactly_the_models_and_materialize_all_works`: it
reads the runs of that module's one Materialize-all webserver instead of starting its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter
from test_code_location import SQLMESH_MODELS, dagster, example_env
from waiting import wait_for
from webserver import graphql, graphql_when

LOCATION = "dagctl"
DBT_KEYS = {
    *(
        f"dbt_example/{m}"
        for m in ("stg_customers", "stg_orders", "stg_payments", "customers", "orders", "daily_revenue")
    ),
    *(f"dbt_example/{s}" for s in ("raw_customers", "raw_orders", "raw_payments")),
}
OBSERVABILITY_KEYS = {
    "dagctl/sqlmesh_example/alerts",
    "dagctl/sqlmesh_example/runs",
    "dagctl/sqlmesh_example/sqlmesh_state",
    "dagctl/dbt_example/alerts",
    "dagctl/dbt_example/runs",
}


def materialized_keys(instance: DagsterInstance, run_id: str | None = None) -> set[str]:
    records = instance.get_event_records(EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION), limit=10_000)
    return {
        r.event_log_entry.dagster_event.asset_key.to_user_string()
        for r in records
        if run_id is None or r.run_id == run_id
    }


@pytest.mark.timeout(600)
def test_cli_key_prefix_selection_materializes_exactly_the_projects_models(example_repo: Path, dagster_home: Path):
    env = example_env(example_repo, dagster_home)
    result = dagster(
        ["asset", "materialize", "-f", "definitions.py", "--select", 'key:"sqlmesh_example/*"'], example_repo, env
    )
    assert result.returncode == 0, result.stderr[-4000:]
    with DagsterInstance.get() as instance:
        assert materialized_keys(instance) == set(SQLMESH_MODELS)


GROUP_ASSETS = """
query ($group: String!) {
  assetNodes(group: {groupName: $group, repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    assetKey { path }
    isExecutable
  }
}
"""
LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_STATUS = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
VERSIONS = """
query ($group: String!) {
  assetNodes(group: {groupName: $group, repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    assetKey { path }
    dataVersion
    assetMaterializations(limit: 100) { runId }
  }
}
"""


def data_versions(port: int, group: str) -> dict[str, tuple[str | None, int]]:
    """Each asset's data version and number of materializations, as the UI reads them."""
    nodes = graphql(port, VERSIONS, {"group": group})["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): (n["dataVersion"], len(n["assetMaterializations"])) for n in nodes}


def group_keys(port: int, group: str, timeout: float = 240) -> dict[str, bool]:
    listed = graphql_when(
        port,
        GROUP_ASSETS,
        lambda data: data["assetNodes"],
        f"the webserver to list group {group}",
        variables={"group": group},
        timeout=timeout,
    )
    return {"/".join(n["assetKey"]["path"]): n["isExecutable"] for n in listed["assetNodes"]}


def materialize_all(port: int, keys: set[str], timeout: float = 300) -> tuple[str, str]:
    """What the UI's "Materialize all" does: launch the asset job on the group's keys."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": key.split("/")} for key in sorted(keys)],
        },
        "mode": "default",
        "executionMetadata": {"tags": []},
    }
    launched = graphql(port, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished() -> str | None:
        status = graphql(port, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    return run_id, wait_for(finished, f"run {run_id} to finish", timeout=timeout, every=1.0)
