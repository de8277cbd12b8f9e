"""What each dbt node costs the warehouse: the bundled dbt example built on PostgreSQL, each
node's `warehouse_queries` compared with the server's own log, and built with counting off.
Statements are sent and counted by dbt's own process, so these builds run in the test's
process. The DuckDB side, built through the real `dagster` CLI and read back through the
webserver's GraphQL API as the UI plots it, is in test_dbt_metadata.py: it shares that
module's one build and webserver.

dbt marks each statement it sends for a node with its query comment (``"node_id": ...``), so
the warehouse's log says which node sent what: DuckDB's query log (switched on by an
``on-run-start`` hook, written to files), PostgreSQL's ``log_statement = 'all'``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from cost_helpers import logged_postgres
from in_process_runs import materialize_in_process
from test_dbt_factory import PROJECT, dbt_only_repo
from webserver import graphql_when

from dagctl_dagster.cost import COUNT_QUERIES_ENV

pytestmark = pytest.mark.timeout(900)

NODE_ID = re.compile(r'"node_id": "([^"]+)"')
MATERIALIZED = """
query ($group: String!) {
  assetNodes(group: {groupName: $group, repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    assetKey { path }
    assetMaterializations(limit: 1) {
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on FloatMetadataEntry { floatValue }
        ... on TextMetadataEntry { text }
      }
    }
  }
}
"""


def by_node_id(messages: list[str]) -> Counter[str]:
    """Statements per node, from dbt's query comment in the statement's text."""
    found: Counter[str] = Counter()
    for message in messages:
        match = NODE_ID.search(message)
        if match:
            found[match.group(1)] += 1
    return found


def cost_metadata(port: int) -> dict[str, dict[str, object]]:
    """Each asset's last materialization metadata as the webserver on ``port`` serves it, by
    model name."""
    nodes = graphql_when(
        port,
        MATERIALIZED,
        lambda data: data["assetNodes"] and all(n["assetMaterializations"] for n in data["assetNodes"]),
        "the webserver to serve the dbt materializations",
        variables={"group": PROJECT},
    )["assetNodes"]
    found = {}
    for node in nodes:
        entries = node["assetMaterializations"][0]["metadataEntries"]
        found[node["assetKey"]["path"][-1]] = {
            e["label"]: e.get("intValue", e.get("floatValue", e.get("text"))) for e in entries
        }
    return found


def recorded(dagster_home: Path) -> dict[str, dict[str, object]]:
    """Each dbt asset's last materialization metadata in the instance, by model name (what
    :func:`cost_metadata` reads through the webserver, for tests whose point is the count)."""
    import dagster as dg

    found: dict[str, dict[str, object]] = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for key in instance.get_asset_keys():
            if key.path[0] != PROJECT:
                continue
            event = instance.get_latest_materialization_event(key)
            assert event is not None and event.asset_materialization is not None, key
            found[key.path[-1]] = {label: value.value for label, value in event.asset_materialization.metadata.items()}
    return found


def assert_counts_match(shown: dict[str, dict[str, object]], logged: Counter[str]) -> None:
    assert shown
    for name, metadata in shown.items():
        unique_id = str(metadata["unique_id"])
        assert isinstance(metadata["warehouse_queries"], int), (name, metadata)
        assert isinstance(metadata["warehouse_query_s"], float) and metadata["warehouse_query_s"] > 0, name
        if unique_id.startswith("seed."):
            # A DuckDB seed's load (`COPY`) is sent without dbt's comment: the log cannot name it.
            assert metadata["warehouse_queries"] >= logged[unique_id] > 0, (name, logged[unique_id])
        else:
            assert metadata["warehouse_queries"] == logged[unique_id], (name, metadata, logged[unique_id])


def test_postgres_node_counts_equal_the_servers_statement_log(tmp_path: Path, dagster_home: Path, monkeypatch):
    repo = dbt_only_repo(tmp_path / "repo")
    config = repo / ".dagctl" / "config.yaml"
    config.write_text(config.read_text().replace("target: dev", "target: prod"))
    monkeypatch.delenv("DAGSTER_DBT_PARSE_PROJECT_ON_LOAD", raising=False)
    with logged_postgres() as postgres:
        for name, value in postgres.libpq_env().items():
            monkeypatch.setenv(name, value)
        materialize_in_process(repo, group=PROJECT)  # dbt's own process sends what is counted
        logged = by_node_id([s.text for s in postgres.statements()])
    shown = recorded(dagster_home)  # the UI's view of the same metadata: test_dbt_metadata.py

    assert_counts_match(shown, logged)


def test_counting_off_leaves_dbt_nodes_without_cost(tmp_path: Path, dagster_home: Path, monkeypatch):
    """Counting is switched in dbt's own process (from the environment it inherits)."""
    repo = dbt_only_repo(tmp_path / "repo")
    monkeypatch.setenv(COUNT_QUERIES_ENV, "0")
    monkeypatch.setenv("DBT_EXAMPLE_DB", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("DAGSTER_DBT_PARSE_PROJECT_ON_LOAD", raising=False)
    materialize_in_process(repo, group=PROJECT)  # dbt's own process sends what is counted
    shown = recorded(dagster_home)

    assert shown and all("warehouse_queries" not in metadata for metadata in shown.values())
    assert all("dagster/row_count" in metadata for metadata in shown.values()), "dbt's process still measures"
