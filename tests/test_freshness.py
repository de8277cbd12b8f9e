"""Freshness SLAs: the real dagster-daemon ticks the `dagctl_freshness` sensor on a SQLMesh
project whose interval records (in SQLMesh state) show one model complete and one overdue.

The module's one webserver on the example deployment (`materialized_twice`: two rounds of
"Materialize all") also serves the tests of what any user sees there: the asset graph, each
group's assets and what "Materialize all" materializes (once per module: a webserver start
and its runs are most of each such test)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from daemon import running_daemon
from projects.deployment import plan_without_backfill
from projects.sqlmesh_repo import dagster_env, write_repository
from slack_stub import SlackStub
from waiting import wait_for

from dagctl_dagster.alerts.freshness import ModelSchedule, due_end, judge
from dagctl_dagster.config import FreshnessConfig
from dagctl_dagster.names import FRESHNESS_CHECK_NAME
from dagctl_dagster.run_identity import FRESHNESS_SENSOR

MODELS = {
    "fresh.sql": "MODEL (name demo.fresh, kind FULL);\nSELECT 1 AS id\n",
    "stale.sql": "MODEL (name demo.stale, kind FULL);\nSELECT 1 AS id\n",
}
UTC_NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_a_daily_model_is_late_once_its_interval_plus_grace_has_passed():
    settings = FreshnessConfig(grace_minutes=60)
    yesterday_done = datetime(2026, 11, 29, tzinfo=UTC)  # [Nov 28, Nov 29) completed
    assert due_end("@daily", "UTC", UTC_NOON, timedelta(hours=1)) == yesterday_done
    assert not judge(ModelSchedule(dg.AssetKey("m"), "@daily", "UTC", yesterday_done), settings, UTC_NOON).late
    day_before = yesterday_done - timedelta(days=1)
    at_00_30 = yesterday_done + timedelta(minutes=30)  # within the grace: not late yet
    assert not judge(ModelSchedule(dg.AssetKey("m"), "@daily", "UTC", day_before), settings, at_00_30).late
    late = judge(ModelSchedule(dg.AssetKey("m"), "@daily", "UTC", day_before), settings, UTC_NOON)
    assert late.late and "2026-11-28 00:00" in late.description
    assert judge(ModelSchedule(dg.AssetKey("m"), "@daily", "UTC", None), settings, UTC_NOON).late
    hourly = ModelSchedule(dg.AssetKey("m"), "0 * * * *", "UTC", UTC_NOON - timedelta(hours=2), grace_minutes=10)
    assert judge(hourly, settings, UTC_NOON + timedelta(minutes=5)).late  # 11:00 was due by 11:10


def _freshness_evaluations(instance: dg.DagsterInstance) -> dict[str, list[bool]]:
    records = instance.get_event_records(
        dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION), ascending=True
    )
    found: dict[str, list[bool]] = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.check_name == FRESHNESS_CHECK_NAME:
            found.setdefault(evaluation.asset_key.to_user_string(), []).append(evaluation.passed)
    return found


def _ticks(instance: dg.DagsterInstance) -> int:
    for state in instance.all_instigator_state():
        if state.name == FRESHNESS_SENSOR:
            return len(instance.get_ticks(state.instigator_origin_id, state.selector_id))
    return 0


@pytest.mark.timeout(300)
def test_an_overdue_model_fails_its_freshness_check_and_warns_once_within_the_cooldown(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", MODELS)
    config = yaml.safe_load((repo / ".dagctl" / "config.yaml").read_text())
    config["alerts"] = {"warning_channel": "#warn", "cooldown_minutes": 60}
    config["freshness"] = {"grace_minutes": 0, "check_interval_seconds": 5}
    config["projects"][0].update(
        {"schedule": "0 0 1 1 *", "janitor_schedule": None, "state_backup": {"enabled": False}}
    )
    (repo / ".dagctl" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (repo / "workspace.yaml").write_text("load_from:\n  - python_file: definitions.py\n")
    plan_without_backfill(repo / "project", then_run=["demo.fresh"])
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    with SlackStub() as stub:
        env = dagster_env(home, SLACK_API_URL=stub.url, SLACK_BOT_TOKEN="xoxb-test", DAGCTL_AUTOMATION="on")
        with running_daemon(repo, env, tmp_path / "daemon.log") as watch:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                verdicts = wait_for(
                    lambda: (v := _freshness_evaluations(instance)) and len(v) == 2 and v,
                    "both models' freshness checks",
                    timeout=180,
                    every=0.5,
                    **watch,
                )
                assert verdicts == {"demo/fresh": [True], "demo/stale": [False]}
                stub.wait_for_requests(1, timeout_s=30)
                first_ticks = _ticks(instance)
                wait_for(
                    lambda: _ticks(instance) >= first_ticks + 2,
                    "two more sensor ticks",
                    timeout=60,
                    every=0.5,
                    **watch,
                )
                # still late, in cooldown: no second post; the check is not re-recorded while unchanged
                assert [m["channel"] for m in stub.messages] == ["#warn"]
                assert "demo/stale" in stub.messages[0]["text"] and "demo/fresh" not in stub.messages[0]["text"]
                assert _freshness_evaluations(instance) == verdicts


def _dbt_example(tmp_path: Path, daily_revenue_meta: str) -> Path:
    from conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    model = repo / "examples" / "dbt_project" / "models" / "marts" / "daily_revenue.sql"
    model.write_text(daily_revenue_meta + "\n" + model.read_text())
    return repo


def test_dbt_models_take_their_own_freshness_from_meta_else_the_project_schedule(tmp_path: Path):
    from dagctl_dagster.config import load_config
    from dagctl_dagster.dbt.asset_factory import build_dbt_project
    from dagctl_dagster.dbt.freshness import DbtFreshness

    repo = _dbt_example(
        tmp_path, '{{ config(meta={"dagctl": {"freshness": {"cron": "0 6 * * *", "grace_minutes": 30}}}) }}'
    )
    loaded = load_config(repo / ".dagctl" / "config.yaml")
    project = loaded.config.project("dbt_example")  # schedule "0 * * * *"
    freshness = build_dbt_project(loaded, project).freshness
    assert isinstance(freshness, DbtFreshness)
    crons = freshness.crons
    assert crons[dg.AssetKey(["dbt_example", "daily_revenue"])] == ("0 6 * * *", 30)
    assert crons[dg.AssetKey(["dbt_example", "orders"])] == ("0 * * * *", None)


def test_a_bad_dbt_freshness_meta_is_one_error_naming_the_model(tmp_path: Path):
    from dagctl_dagster.config import load_config
    from dagctl_dagster.dbt.asset_factory import build_dbt_project
    from dagctl_dagster.errors import ProjectLoadError

    repo = _dbt_example(tmp_path, '{{ config(meta={"dagctl": {"freshness": {"cron": "every day"}}}) }}')
    loaded = load_config(repo / ".dagctl" / "config.yaml")
    with pytest.raises(
        ProjectLoadError,
        match=r"model daily_revenue \(models/marts/daily_revenue.sql\): meta.dagctl.freshness needs a valid `cron`",
    ):
        build_dbt_project(loaded, loaded.config.project("dbt_example"))


def test_freshness_config_errors_name_the_field(tmp_path: Path):
    from dagctl_dagster.config import ConfigError, parse_config

    base = {"version": 1, "projects": [{"name": "p", "framework": "sqlmesh", "path": "x"}]}
    with pytest.raises(ConfigError, match=r"freshness.tier"):
        parse_config({**base, "freshness": {"tier": "loud"}}, tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"projects\[0\].freshness.grace_minutes"):
        parse_config(
            {
                "version": 1,
                "projects": [{"name": "p", "framework": "sqlmesh", "path": "x", "freshness": {"grace_minutes": -5}}],
            },
            tmp_path / "config.yaml",
        )
    parsed = parse_config(
        {
            "version": 1,
            "freshness": {"grace_minutes": 10},
            "projects": [{"name": "p", "framework": "sqlmesh", "path": "x", "freshness": {"tier": "page"}}],
        },
        tmp_path / "config.yaml",
    )
    assert (parsed.freshness_for(parsed.projects[0]).grace_minutes, parsed.freshness_for(parsed.projects[0]).tier) == (
        10,
        "page",
    )


def test_executing_only_the_checks_evaluates_them_in_the_run(tmp_path: Path, dagster_home: Path):
    """What the UI's "Execute" on the checks does: a run that selects only checks."""
    from dagctl_dagster import load_definitions

    repo = write_repository(tmp_path / "repo", MODELS)
    plan_without_backfill(repo / "project", then_run=["demo.fresh"])
    defs = load_definitions(repo / ".dagctl" / "config.yaml")
    keys = {dg.AssetCheckKey(dg.AssetKey(["demo", m]), FRESHNESS_CHECK_NAME) for m in ("fresh", "stale")}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_check_selection=keys, asset_selection=set())
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    evaluations = {
        e.asset_check_evaluation_data.asset_key.to_user_string(): e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }
    assert evaluations == {"demo/fresh": True, "demo/stale": False}


CHECKS = """
query ($group: String!) {
  assetNodes(group: {groupName: $group, repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""
LATEST_EXECUTION = """
query ($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 1) { runId status }
}
"""
RUN_LOGS = """
query ($id: ID!) {
  logsForRun(runId: $id, limit: 10000) { ... on EventConnection { events { ... on MessageEvent { message } } } }
}
"""


def _freshness_status(port: int, groups: list[str]) -> dict[str, tuple[str, str]]:
    """Each model's `dagctl_freshness` check: its latest execution's status and run, as the UI reads them."""
    from webserver import graphql

    found = {}
    for group in groups:
        for node in graphql(port, CHECKS, {"group": group})["assetNodes"]:
            checks = [c["name"] for c in (node["assetChecksOrError"] or {}).get("checks", [])]
            if FRESHNESS_CHECK_NAME not in checks:
                continue
            key = {"path": node["assetKey"]["path"]}
            [latest] = graphql(port, LATEST_EXECUTION, {"key": key, "check": FRESHNESS_CHECK_NAME})[
                "assetCheckExecutions"
            ]
            found["/".join(key["path"])] = (latest["status"], latest["runId"])
    return found


def _unyielded_lines(port: int, run_id: str) -> list[str]:
    from webserver import graphql

    events = graphql(port, RUN_LOGS, {"id": run_id})["logsForRun"]["events"]
    return [e["message"] for e in events if "did not yield or return expected outputs" in (e.get("message") or "")]


@dataclass(frozen=True)
class MaterializedTwice:
    """The example deployment's two groups, each "Materialize all"-ed twice from a real webserver
    (the second finding nothing due in SQLMesh), and what the UI read after each round."""

    repo: Path  # the copy of the example deployment the webserver serves
    asset_nodes: list[dict]  # every asset node with its edges and checks, before the first run
    groups: dict[str, dict[str, bool]]  # group → its assets as the UI lists them (key → executable)
    first: list[tuple[str, str]]  # (run id, status) per group: sqlmesh_example, dbt_example
    second: list[tuple[str, str]]
    versions_after_first: dict[str, tuple[str | None, int]]  # sqlmesh_example: data version, materializations
    versions_after_second: dict[str, tuple[str | None, int]]
    materialized: dict[str, set[str]]  # run id of each first run → the keys it materialized
    freshness_after_first: dict[str, tuple[str, str]]
    freshness_after_second: dict[str, tuple[str, str]]
    audits_after_first: dict[str, tuple[str | None, str | None]]
    audits_after_second: dict[str, tuple[str | None, str | None]]
    unyielded: dict[str, list[str]]  # run id → its "did not yield" lines, as the UI reads them
    second_sqlmesh_messages: list[str]  # every log message of the second sqlmesh_example run


GROUPS = ["sqlmesh_example", "dbt_example"]


@pytest.fixture(scope="module")
def materialized_twice(tmp_path_factory) -> MaterializedTwice:
    """One webserver and its four runs for the tests that read them: they only read."""
    from conftest import copy_repository
    from test_code_location import GRAPHQL_ASSETS, example_env
    from test_surface import data_versions, group_keys, materialize_all, materialized_keys
    from webserver import graphql, running_webserver

    root = tmp_path_factory.mktemp("materialized_twice")
    example_repo = copy_repository(root / "repo")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(  # runs launched from the UI start at once (no daemon)
        "telemetry:\n  enabled: false\nrun_coordinator:\n"
        "  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    with running_webserver(example_repo, example_env(example_repo, home), kill=True) as port:
        groups = {group: group_keys(port, group) for group in [*GROUPS, "dagctl_observability"]}
        asset_nodes = graphql(port, GRAPHQL_ASSETS)["assetNodes"]
        first = [materialize_all(port, set(groups[group])) for group in GROUPS]
        freshness_after_first = _freshness_status(port, GROUPS)
        audits_after_first = audit_check_statuses(port, "sqlmesh_example")
        versions_after_first = data_versions(port, "sqlmesh_example")
        second = [materialize_all(port, set(groups[group])) for group in GROUPS]
        freshness_after_second = _freshness_status(port, GROUPS)
        audits_after_second = audit_check_statuses(port, "sqlmesh_example")
        versions_after_second = data_versions(port, "sqlmesh_example")
        unyielded = {run_id: _unyielded_lines(port, run_id) for run_id, _ in first + second}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        messages = [entry.message or "" for entry in instance.all_logs(second[0][0])]
        materialized = {run_id: materialized_keys(instance, run_id) for run_id, _ in first}
    return MaterializedTwice(
        example_repo,
        asset_nodes,
        groups,
        first,
        second,
        versions_after_first,
        versions_after_second,
        materialized,
        freshness_after_first,
        freshness_after_second,
        audits_after_first,
        audits_after_second,
        unyielded,
        messages,
    )


@pytest.mark.timeout(900)
def test_materialize_all_evaluates_the_freshness_checks_it_plans(materialized_twice: MaterializedTwice):
    """A "Materialize all" plans every check of its models: each freshness check is evaluated
    in the run, after its model (no "Skipped", no "did not yield"), and a second one that finds
    nothing due leaves every check's latest status as the first left it."""
    first, second = materialized_twice.first, materialized_twice.second
    after_first = materialized_twice.freshness_after_first
    after_second = materialized_twice.freshness_after_second
    unyielded = materialized_twice.unyielded

    assert [status for _, status in first + second] == ["SUCCESS"] * 4
    sqlmesh_checks = {key for key in after_first if key.startswith("sqlmesh_example/")}
    assert sqlmesh_checks and len(after_first) > len(sqlmesh_checks)  # both projects' models have SLAs
    # Evaluated by the runs themselves: every model was just brought up to date, so it is fresh.
    assert {status for status, _ in after_first.values()} == {"SUCCEEDED"}, after_first
    assert {run for _, run in after_first.values()} <= {run_id for run_id, _ in first}
    assert {key: status for key, (status, _) in after_second.items()} == {
        key: status for key, (status, _) in after_first.items()
    }
    assert not [line for lines in unyielded.values() for line in lines if FRESHNESS_CHECK_NAME in line], unyielded


AUDIT_CHECKS = """
query ($group: String!) {
  assetNodes(group: {groupName: $group, repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    assetKey { path }
    assetChecksOrError {
      ... on AssetChecks { checks { name executionForLatestMaterialization { status runId } } }
    }
  }
}
"""


def audit_check_statuses(port: int, group: str) -> dict[str, tuple[str | None, str | None]]:
    """Each SQLMesh audit check's latest status and run, as the UI reads them (the
    `dagctl_freshness` checks are the alerts' own, not SQLMesh audits)."""
    from webserver import graphql

    nodes = graphql(port, AUDIT_CHECKS, {"group": group})["assetNodes"]
    statuses: dict[str, tuple[str | None, str | None]] = {}
    for node in nodes:
        for check in node["assetChecksOrError"].get("checks", []):
            if check["name"] == FRESHNESS_CHECK_NAME:
                continue
            latest = check["executionForLatestMaterialization"] or {}
            statuses[f"{'/'.join(node['assetKey']['path'])}:{check['name']}"] = (
                latest.get("status"),
                latest.get("runId"),
            )
    return statuses


@pytest.mark.timeout(900)
def test_a_no_op_materialize_all_keeps_every_audits_latest_status(materialized_twice: MaterializedTwice):
    """Issue 27 on SQLMesh audits (beside the freshness test above, on the same runs): the second
    "Materialize all" of sqlmesh_example finds nothing due and keeps every audit's latest status."""
    [(_, first_status), _] = materialized_twice.first
    [(second_run, second_status), _] = materialized_twice.second
    after_first = materialized_twice.audits_after_first
    after_second = materialized_twice.audits_after_second

    assert first_status == second_status == "SUCCESS"
    assert "sqlmesh_example/incremental_orders:assert_positive_amount" in after_first
    assert {status for status, _ in after_first.values()} == {"SUCCEEDED"}, after_first
    assert {key: status for key, (status, _) in after_second.items()} == {
        key: status for key, (status, _) in after_first.items()
    }
    # The second run reported them (nothing was due, so no audit ran): no "skipped" record.
    assert {run for _, run in after_second.values()} == {second_run}
    messages = materialized_twice.second_sqlmesh_messages
    unyielded = [m for m in messages if "did not yield or return expected outputs" in m and "sqlmesh_example" in m]
    assert not [m for m in unyielded if FRESHNESS_CHECK_NAME not in m], unyielded


@pytest.mark.timeout(900)
def test_webserver_groups_hold_exactly_the_models_and_materialize_all_works(materialized_twice: MaterializedTwice):
    """What a user sees in the webserver (on the same runs as the tests above): a project's group
    holds exactly its models, all executable, and "Materialize all" materializes exactly them; a
    second one that finds nothing due in SQLMesh changes no data version and adds no
    materialization (no new point in the asset's plots)."""
    from test_code_location import SQLMESH_MODELS
    from test_surface import DBT_KEYS, OBSERVABILITY_KEYS

    groups = materialized_twice.groups
    [sqlmesh_run, dbt_run] = materialized_twice.first
    [second_sqlmesh_run, _] = materialized_twice.second
    after_first = materialized_twice.versions_after_first

    assert groups["sqlmesh_example"] == {key: True for key in SQLMESH_MODELS}
    assert groups["dbt_example"] == {key: True for key in DBT_KEYS}
    assert set(groups["dagctl_observability"]) == OBSERVABILITY_KEYS
    assert sqlmesh_run[1] == "SUCCESS" and second_sqlmesh_run[1] == "SUCCESS" and dbt_run[1] == "SUCCESS"
    assert all(version is not None and count == 1 for version, count in after_first.values()), after_first
    assert materialized_twice.versions_after_second == after_first
    assert materialized_twice.materialized[sqlmesh_run[0]] == set(SQLMESH_MODELS)
    assert materialized_twice.materialized[dbt_run[0]] == DBT_KEYS


@pytest.mark.timeout(300)
def test_webserver_graphql_lists_every_model_with_edges_and_checks(materialized_twice: MaterializedTwice):
    """Every model of both examples as the UI's asset graph lists it (read from the webserver above
    before its first run): executable, with its edges and its checks."""
    from test_code_location import SQLMESH_CHECKS, SQLMESH_MODELS, dbt_models

    nodes = materialized_twice.asset_nodes
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    for key in SQLMESH_MODELS:
        assert by_key[key]["isExecutable"], key
    deps = {key: {"/".join(d["path"]) for d in node["dependencyKeys"]} for key, node in by_key.items()}
    assert deps["sqlmesh_example/orders_enriched"] == {
        "sqlmesh_example/incremental_orders",
        "sqlmesh_example/customers",
    }
    assert deps["sqlmesh_example/customers"] == {"raw/customers"}
    assert not by_key["raw/customers"]["isExecutable"]
    checks = {
        (key, c["name"]) for key, node in by_key.items() for c in (node["assetChecksOrError"].get("checks") or [])
    }
    assert SQLMESH_CHECKS <= checks
    example_repo = materialized_twice.repo
    dbt_keys = {key for key in by_key if key.split("/")[-1] in dbt_models(example_repo)}
    assert {k.split("/")[-1] for k in dbt_keys} == dbt_models(example_repo)
    assert any(deps[k] & dbt_keys for k in dbt_keys), "dbt models have no upstream edges between them"
    assert any(key in dbt_keys for key, _ in checks), "dbt tests are not asset checks"
