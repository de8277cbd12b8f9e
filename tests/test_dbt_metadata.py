"""What the UI shows of a dbt asset, measured: one run of the bundled dbt example (DuckDB), as
`dagster asset materialize` runs it (in this process: the location's asset job and executor),
and one real webserver for the module, read by each test through its GraphQL API.
The warehouse itself is the oracle: its tables for column names, types and row counts, its
query log for what each node cost (test_cost_dbt.py: the same count on PostgreSQL, and off)."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import instance_home
from in_process_runs import materialize_in_process
from test_code_location import example_env
from test_cost_dbt import assert_counts_match, by_node_id, cost_metadata
from test_dbt_factory import PROJECT, dbt_only_repo
from webserver import graphql_when, running_webserver

# Added to the copy: a view (measured columns, no row count) without a dbt description.
VIEW_MODEL = "orders_per_status"
VIEW_SQL = "{{ config(materialized='view') }}\nselect status, count(*) as orders from {{ ref('stg_orders') }} group by status\n"
DESCRIPTIONS = {
    "orders": "Orders with their payments split by method.",
    "stg_payments": "One row per payment, amounts in dollars.",
    "raw_payments": "Payments in cents.",
    VIEW_MODEL: f"dbt model {VIEW_MODEL}",
}
ASSETS = """
query ($group: String!) {
  assetNodes(group: {groupName: $group, repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    assetKey { path }
    description
    metadataEntries {
      label
      ... on CodeReferencesMetadataEntry { codeReferences { ... on LocalFileCodeReference { filePath } } }
    }
    assetMaterializations(limit: 1) {
      metadataEntries {
        label
        ... on TableSchemaMetadataEntry { schema { columns { name type } } }
        ... on IntMetadataEntry { intValue }
      }
    }
  }
}
"""


def warehouse_truth(path: str) -> dict[str, tuple[list[tuple[str, str]], int | None]]:
    """Each relation's columns (name, DuckDB type) and, for tables, its row count."""
    found: dict[str, tuple[list[tuple[str, str]], int | None]] = {}
    with duckdb.connect(path, read_only=True) as con:
        relations = con.sql("select table_name, table_type from information_schema.tables where table_schema = 'main'")
        for name, kind in relations.fetchall():
            columns = [(row[0], row[1]) for row in con.sql(f"describe main.{name}").fetchall()]
            rows = con.sql(f"select count(*) from main.{name}").fetchone()[0] if kind == "BASE TABLE" else None
            found[name] = (columns, rows)
    return found


@dataclass(frozen=True)
class Served:
    """What the module's one build left: the warehouse's and its query log's truth, and what
    the webserver served of it."""

    project_dir: Path
    truth: dict[str, tuple[list[tuple[str, str]], int | None]]
    logged: Counter[str]
    asset_nodes: list[dict]
    costs: dict[str, dict[str, object]]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    """The example with a view added and DuckDB's query log switched on (dbt's ``on-run-start``
    hook, written to files), built once, then served once: the tests only read."""
    root = tmp_path_factory.mktemp("dbt_metadata")
    repo = dbt_only_repo(root / "repo")
    project_dir = repo / "examples" / "dbt_project"
    (project_dir / "models" / "marts" / f"{VIEW_MODEL}.sql").write_text(VIEW_SQL)
    log_dir = root / "duckdb_log"
    project_file = project_dir / "dbt_project.yml"
    project_file.write_text(
        project_file.read_text()
        + f"\non-run-start:\n  - \"CALL enable_logging('QueryLog', storage='file', storage_path='{log_dir}')\"\n"
    )
    env = example_env(repo, instance_home(root / "dagster_home"))

    with pytest.MonkeyPatch.context() as patch:
        for name in ("DAGSTER_HOME", "DBT_EXAMPLE_DB", "SQLMESH_EXAMPLE_DB", "DAGCTL_CONFIG"):
            patch.setenv(name, env[name])
        patch.delenv("DAGSTER_DBT_PARSE_PROJECT_ON_LOAD", raising=False)
        materialize_in_process(repo, group=PROJECT)
    with (log_dir / "duckdb_log_entries.csv").open(newline="") as entries:
        logged = by_node_id([row["message"] for row in csv.DictReader(entries) if row["type"] == "QueryLog"])
    truth = warehouse_truth(env["DBT_EXAMPLE_DB"])
    with running_webserver(repo, env, kill=True) as port:
        asset_nodes = graphql_when(
            port,
            ASSETS,
            lambda data: data["assetNodes"],
            "the webserver to serve the dbt assets",
            variables={"group": PROJECT},
        )["assetNodes"]
        costs = cost_metadata(port)
    return Served(project_dir=project_dir, truth=truth, logged=logged, asset_nodes=asset_nodes, costs=costs)


@pytest.mark.timeout(900)
def test_dbt_assets_show_measured_columns_row_counts_and_plain_descriptions(served: Served):
    truth, project_dir = served.truth, served.project_dir
    by_name = {node["assetKey"]["path"][-1]: node for node in served.asset_nodes}
    assert set(by_name) == set(truth)
    for name, node in by_name.items():
        (materialization,) = node["assetMaterializations"]
        measured = {entry["label"]: entry for entry in materialization["metadataEntries"]}
        columns, rows = truth[name]
        schema = measured["dagster/column_schema"]["schema"]["columns"]
        assert [(c["name"], c["type"]) for c in schema] == columns, name
        if rows is None:
            assert "dagster/row_count" not in measured, f"{name} is a view: it has no row count"
        else:
            assert measured["dagster/row_count"]["intValue"] == rows, name

        assert "Raw SQL" not in node["description"] and "```" not in node["description"], name
        (references,) = [e for e in node["metadataEntries"] if e["label"] == "dagster/code_references"]
        (source,) = [Path(r["filePath"]) for r in references["codeReferences"]]
        assert source.is_file() and source.stem == name and project_dir in source.parents, source
    for name, description in DESCRIPTIONS.items():
        assert by_name[name]["description"] == description, name


@pytest.mark.timeout(900)
def test_duckdb_node_counts_equal_duckdbs_query_log_and_reach_the_ui(served: Served):
    """Each node's ``warehouse_queries``, as the UI plots it, is what DuckDB logged for it
    (the view included)."""
    assert set(served.costs) == set(served.truth)
    assert_counts_match(served.costs, served.logged)
