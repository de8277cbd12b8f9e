"""The dbt asset factory on the bundled example: real dbt-core + dbt-duckdb, in-process Dagster.

dbt processes are the expensive part (a parse or a build is seconds each), so one copy of the
example is parsed and built once for the module and several tests read that run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest
from conftest import copy_repository
from dagster_dbt import DbtCliResource

from dagctl_dagster.alerts.run_summary import summarize_run
from dagctl_dagster.cli import main as cli_main
from dagctl_dagster.config import load_config
from dagctl_dagster.dbt.asset_factory import KEEP_INVOCATION_DIRS, build_dbt_project, dbt_assets, prune_invocation_dirs
from dagctl_dagster.dbt.manifest import FINGERPRINT_FILE_NAME
from dagctl_dagster.errors import ProjectLoadError
from dagctl_dagster.names import FRAMEWORK_TAG, PROJECT_TAG

PROJECT = "dbt_example"
OP_NAME = f"{PROJECT}_dbt_build"
SEEDS = {"raw_customers": 50, "raw_orders": 200, "raw_payments": 228}
STAGING = {"stg_customers": 50, "stg_orders": 200, "stg_payments": 228}
MARTS = {"orders": 200, "customers": 50}
MODEL_NAMES = [*SEEDS, *STAGING, *MARTS, "daily_revenue"]
LINEAGE = {
    "raw_customers": set(),
    "raw_orders": set(),
    "raw_payments": set(),
    "stg_customers": {"raw_customers"},
    "stg_orders": {"raw_orders"},
    "stg_payments": {"raw_payments"},
    "orders": {"stg_orders", "stg_payments"},
    "customers": {"stg_customers", "orders"},
    "daily_revenue": {"orders"},
}
DBT_ONLY_CONFIG = f"""\
version: 1
projects:
  - name: {PROJECT}
    framework: dbt
    path: examples/dbt_project
    target: dev
"""


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey([PROJECT, name])


def dbt_only_repo(destination: Path) -> Path:
    """A copy of the example deployment whose config lists only the dbt project."""
    repo = copy_repository(destination)
    (repo / ".dagctl" / "config.yaml").write_text(DBT_ONLY_CONFIG)
    return repo


def load_project(repo: Path):
    loaded = load_config(repo / ".dagctl" / "config.yaml")
    return build_dbt_project(loaded, loaded.config.project(PROJECT))


def step_failure_description(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    return failure.step_failure_data.user_failure_data.description


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The example parsed and built once: repo, project definitions, run result, warehouse path."""
    repo = dbt_only_repo(tmp_path_factory.mktemp("dbt") / "repo")
    working_dir = os.getcwd()
    with pytest.MonkeyPatch.context() as env:
        # A relative path: dagster-dbt runs dbt in the project directory, so it lands there.
        env.setenv("DBT_EXAMPLE_DB", "module_warehouse.duckdb")
        env.setenv("MAX_CONCURRENT_MODELS", "3")
        env.delenv("DAGSTER_DBT_PARSE_PROJECT_ON_LOAD", raising=False)
        project_defs = load_project(repo)
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize(
            project_defs.assets, resources=project_defs.resources, instance=instance, raise_on_error=False
        )
    return SimpleNamespace(
        repo=repo,
        project_defs=project_defs,
        instance=instance,
        result=result,
        warehouse=repo / "examples" / "dbt_project" / "module_warehouse.duckdb",
        working_dir=working_dir,
    )


@pytest.mark.timeout(600)
def test_every_model_and_seed_is_an_asset_with_dbt_lineage(built):
    project_defs = built.project_defs
    (assets_def,) = project_defs.assets

    assert project_defs.model_keys == sorted((key(n) for n in MODEL_NAMES), key=lambda k: k.to_user_string())
    assert set(assets_def.keys) == {key(n) for n in MODEL_NAMES}
    for name, upstream in LINEAGE.items():
        assert set(assets_def.asset_deps[key(name)]) == {key(u) for u in upstream}, name
    for spec in assets_def.specs:
        assert spec.group_name == PROJECT
        assert spec.kinds == {"dbt", "duckdb"}
        assert spec.tags[PROJECT_TAG] == PROJECT and spec.tags[FRAMEWORK_TAG] == "dbt"
    assert assets_def.op.name == OP_NAME
    assert assets_def.op.tags[PROJECT_TAG] == PROJECT
    assert assets_def.op.tags[FRAMEWORK_TAG] == "dbt"
    assert set(project_defs.resources) == {f"{PROJECT}_dbt"}


@pytest.mark.timeout(600)
def test_dbt_tests_become_asset_checks(built):
    project_defs = built.project_defs
    (assets_def,) = project_defs.assets
    checks = {(check.asset_key, check.name) for check in assets_def.check_keys}

    assert len(checks) == 17
    assert (key("stg_orders"), "unique_stg_orders_order_id") in checks
    assert (key("stg_payments"), "relationships_stg_payments_order_id__order_id__ref_stg_orders_") in checks
    assert (
        key("stg_payments"),
        "accepted_values_stg_payments_payment_method__credit_card__bank_transfer__coupon__gift_card",
    ) in checks
    assert (key("daily_revenue"), "not_null_daily_revenue_order_date") in checks
    assert {asset_key for asset_key, _ in checks} == {key(n) for n in [*STAGING, *MARTS, "daily_revenue"]}


@pytest.mark.timeout(600)
def test_build_materializes_every_model_with_one_duration_and_one_row_count(built):
    result = built.result
    assert result.success

    metadata = {
        event.materialization.asset_key: event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    assert set(metadata) == {key(n) for n in MODEL_NAMES}
    for name in MODEL_NAMES:
        entry = metadata[key(name)]
        duration = entry["Execution Duration"].value
        assert isinstance(duration, float) and duration > 0, name
        assert entry["unique_id"].value.split(".")[-1] == name
        # one of each: dagster-dbt's duration and the measured row count, no other beside them
        assert not {"execution_time_s", "rows_affected"} & set(entry), name
        assert entry["dagster/column_schema"].value.columns, name
    # Every seed and table, counted by dbt's own process while it held the DuckDB file.
    for name, rows in {**SEEDS, **STAGING, **MARTS}.items():
        assert metadata[key(name)]["dagster/row_count"].value == rows, name

    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 17
    assert all(evaluation.passed for evaluation in evaluations)


@pytest.mark.timeout(600)
def test_materializations_arrive_as_dbt_reports_each_node(built):
    repo, result, instance = built.repo, built.result, built.instance
    (invocation_dir,) = (repo / "examples" / "dbt_project" / "target").glob(f"{OP_NAME}-{result.run_id[:7]}-*")
    # dbt writes run_results.json once, after its last node.
    dbt_done = (invocation_dir / "run_results.json").stat().st_mtime
    stamps = {
        entry.dagster_event.asset_key.path[-1]: entry.timestamp
        for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert set(stamps) == set(MODEL_NAMES)
    assert all(stamps[seed] < dbt_done for seed in SEEDS), "seeds were recorded only after dbt exited"
    assert max(stamps[seed] for seed in SEEDS) <= stamps["daily_revenue"]


@pytest.mark.timeout(600)
def test_assets_have_clean_metadata_and_descriptions(built):
    (assets_def,) = built.project_defs.assets
    for spec in assets_def.specs:
        name = spec.key.path[-1]
        assert "dagster_dbt/project" not in spec.metadata, name
        assert spec.description and "Raw SQL" not in spec.description, name
        (reference,) = spec.metadata["dagster/code_references"].code_references
        assert Path(reference.file_path).stem == name, name


@pytest.mark.timeout(600)
def test_run_summary_counts_dbt_models(built):
    summary = summarize_run(built.instance, built.instance.get_run_record_by_id(built.result.run_id))
    assert (summary.executed, summary.failed, summary.blocked, summary.skipped) == (len(MODEL_NAMES), 0, 0, 0)


def test_invocation_directories_are_bounded(tmp_path):
    target = tmp_path / "target"
    for i in range(KEEP_INVOCATION_DIRS + 3):
        d = target / f"{OP_NAME}-run{i:04d}-abc{i:04d}"
        d.mkdir(parents=True)
        os.utime(d, (1_000_000 + i, 1_000_000 + i))
    other = target / "other_op-run0000-abc0000"
    other.mkdir()
    os.utime(other, (1, 1))
    newest = target / f"{OP_NAME}-run{KEEP_INVOCATION_DIRS + 2:04d}-abc{KEEP_INVOCATION_DIRS + 2:04d}"

    prune_invocation_dirs(newest)

    kept = sorted(p.name for p in target.iterdir())
    expected = [f"{OP_NAME}-run{i:04d}-abc{i:04d}" for i in range(3, KEEP_INVOCATION_DIRS + 3)]
    assert kept == sorted([*expected, other.name])


@pytest.mark.timeout(600)
def test_warehouse_holds_built_tables_in_the_project_directory(built):
    warehouse = built.warehouse
    assert warehouse.is_file()
    # dbt ran in the project directory; the test process is back where it started.
    assert os.getcwd() == built.working_dir
    assert not Path(built.working_dir, "module_warehouse.duckdb").exists()
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        counts = {
            name: conn.execute(f"select count(*) from main.{name}").fetchone()[0] for name in [*SEEDS, *STAGING, *MARTS]
        }
        lifetime_value = conn.execute("select sum(lifetime_value) from main.customers").fetchone()[0]
        paid = conn.execute("select sum(amount) / 100.0 from main.raw_payments").fetchone()[0]
    assert counts == {**SEEDS, **STAGING, **MARTS}
    assert float(lifetime_value) == pytest.approx(float(paid))


@pytest.mark.timeout(600)
def test_dbt_build_runs_with_max_concurrent_models_threads_and_project_target(built):
    repo, result = built.repo, built.result
    target_dir = repo / "examples" / "dbt_project" / "target"
    # dagster-dbt gives every invocation its own target directory: <op>-<run id>-<uuid>.
    (invocation_dir,) = target_dir.glob(f"{OP_NAME}-{result.run_id[:7]}-*")
    run_results = json.loads((invocation_dir / "run_results.json").read_text())

    assert run_results["args"]["which"] == "build"
    assert run_results["args"]["threads"] == 3
    assert run_results["args"]["target"] == "dev"


@pytest.mark.timeout(600)
def test_unchanged_project_reuses_its_manifest(built, monkeypatch, capsys):
    repo, project_defs = built.repo, built.project_defs
    manifest = repo / "examples" / "dbt_project" / "target" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert (manifest.parent / FINGERPRINT_FILE_NAME).is_file()

    monkeypatch.setenv("DBT_EXAMPLE_DB", "module_warehouse.duckdb")
    monkeypatch.delenv("DAGSTER_DBT_PARSE_PROJECT_ON_LOAD", raising=False)
    again = load_project(repo)
    assert cli_main(["dbt", "prepare", "--config", str(repo / ".dagctl" / "config.yaml")]) == 0

    assert manifest.stat().st_mtime_ns == before
    assert again.model_keys == project_defs.model_keys
    assert capsys.readouterr().out.endswith(f"{PROJECT}: up to date: {manifest}\n")


@pytest.mark.timeout(600)
def test_failing_model_fails_the_step_naming_it_and_its_skipped_downstream(tmp_path, monkeypatch, capsys):
    repo = dbt_only_repo(tmp_path / "repo")
    project_dir = repo / "examples" / "dbt_project"
    # Parses fine, fails in DuckDB: 'credit_card' is no integer.
    (project_dir / "models" / "staging" / "stg_payments.sql").write_text(
        "select id as payment_id, order_id, payment_method, cast(payment_method as integer) as amount\n"
        "from {{ ref('raw_payments') }}\n"
    )
    monkeypatch.setenv("DBT_EXAMPLE_DB", str(tmp_path / "failing.duckdb"))
    monkeypatch.delenv("MAX_CONCURRENT_MODELS", raising=False)
    monkeypatch.delenv("DAGSTER_DBT_PARSE_PROJECT_ON_LOAD", raising=False)

    # Prepared ahead, as in an image build; loading then reuses that manifest.
    assert cli_main(["dbt", "prepare", "--config", str(repo / ".dagctl" / "config.yaml")]) == 0
    manifest = project_dir / "target" / "manifest.json"
    assert capsys.readouterr().out == f"{PROJECT}: parsed: {manifest}\n"
    prepared_at = manifest.stat().st_mtime_ns

    # The public factory: its DbtCliResource comes bound, so no resources are passed.
    assets_def = dbt_assets(project_dir, name=PROJECT, target="dev")
    assert manifest.stat().st_mtime_ns == prepared_at
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([assets_def], instance=instance, raise_on_error=False)

    assert not result.success
    description = step_failure_description(result)
    assert "dbt build of project 'dbt_example' failed" in description
    assert "model stg_payments (models/staging/stg_payments.sql) error" in description
    assert "Could not convert string 'credit_card'" in description
    assert (
        "skipped downstream: customers (upstream stg_payments failed); "
        "daily_revenue (upstream stg_payments failed); orders (upstream stg_payments failed)"
    ) in description

    logged = [entry.user_message for entry in instance.all_logs(result.run_id) if entry.dagster_event is None]
    assert "dbt skipped model orders: upstream stg_payments failed" in logged
    assert "dbt skipped model customers: upstream stg_payments failed" in logged
    assert any(m.startswith("dbt model stg_payments error: Runtime Error in model stg_payments") for m in logged)

    materialized = {event.materialization.asset_key for event in result.get_asset_materialization_events()}
    assert materialized == {key(n) for n in [*SEEDS, "stg_customers", "stg_orders"]}
    summary = summarize_run(instance, instance.get_run_record_by_id(result.run_id))
    assert (summary.executed, summary.failed, summary.blocked) == (len(SEEDS) + 2, 1, 3)
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    failure_metadata = failure.step_failure_data.user_failure_data.metadata
    assert failure_metadata["failed_models"].value == ["dbt_example/stg_payments"]
    assert failure_metadata["skipped_models"].value == [
        "dbt_example/customers",
        "dbt_example/daily_revenue",
        "dbt_example/orders",
    ]
    checked = {(e.asset_key, e.passed) for e in result.get_asset_check_evaluations()}
    assert (key("stg_orders"), True) in checked
    assert not any(asset_key == key("orders") for asset_key, _ in checked)

    # The same directory, now with a model dbt cannot parse: the stale manifest is not reused.
    (project_dir / "models" / "marts" / "broken.sql").write_text("select * from {{ ref('does_not_exist') }}\n")
    with pytest.raises(ProjectLoadError) as raised:
        dbt_assets(project_dir, name=PROJECT, target="dev")
    assert raised.value.project == PROJECT
    assert raised.value.file == Path("models/marts/broken.sql")
    assert "does_not_exist" in str(raised.value)


@pytest.mark.timeout(600)
def test_model_that_fails_to_compile_is_a_project_load_error(tmp_path, monkeypatch):
    repo = dbt_only_repo(tmp_path / "repo")
    (repo / "examples" / "dbt_project" / "models" / "broken.sql").write_text("select {{ 1 + }} as x\n")
    monkeypatch.setenv("DBT_EXAMPLE_DB", str(tmp_path / "never.duckdb"))

    with pytest.raises(ProjectLoadError) as raised:
        load_project(repo)

    assert raised.value.project == PROJECT
    assert raised.value.file == Path("models/broken.sql")
    message = str(raised.value)
    assert message.startswith("project 'dbt_example', file models/broken.sql: dbt parse failed:")
    assert "Compilation Error in model broken" in message
    assert not (repo / "examples" / "dbt_project" / "target" / FINGERPRINT_FILE_NAME).exists()


@pytest.mark.timeout(60)
def test_missing_project_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ProjectLoadError) as raised:
        dbt_assets(tmp_path / "no_such_project", name="gone")

    assert raised.value.project == "gone"
    assert f"dbt project directory {tmp_path / 'no_such_project'} does not exist" in str(raised.value)
    assert "fix the project's `path`" in str(raised.value)


@pytest.mark.timeout(60)
def test_directory_without_dbt_project_yml_names_the_file(tmp_path):
    (tmp_path / "not_dbt").mkdir()
    with pytest.raises(ProjectLoadError) as raised:
        dbt_assets(tmp_path / "not_dbt", name="loose")
    assert raised.value.project == "loose"
    assert raised.value.file == tmp_path / "not_dbt" / "dbt_project.yml"


@pytest.mark.timeout(600)
def test_invalid_max_concurrent_models_fails_the_run_before_dbt_starts(built, monkeypatch):
    repo, project_defs = built.repo, built.project_defs
    monkeypatch.setenv("MAX_CONCURRENT_MODELS", "five")
    invocations_before = set((repo / "examples" / "dbt_project" / "target").glob(f"{OP_NAME}-*"))

    result = dg.materialize(project_defs.assets, resources=project_defs.resources, raise_on_error=False)

    assert not result.success
    assert step_failure_description(result) == (
        "env var MAX_CONCURRENT_MODELS must be a positive integer such as 5 (got 'five'); "
        "it sets dbt's --threads. Fix it and launch the run again."
    )
    assert set((repo / "examples" / "dbt_project" / "target").glob(f"{OP_NAME}-*")) == invocations_before


@pytest.mark.timeout(600)
def test_load_definitions_serves_the_dbt_project_with_its_run_job(built, monkeypatch):
    from dagctl_dagster import load_definitions

    monkeypatch.setenv("DBT_EXAMPLE_DB", "module_warehouse.duckdb")
    defs = load_definitions(built.repo / ".dagctl" / "config.yaml")

    job = defs.resolve_job_def(f"{PROJECT}_run")
    assert set(job.asset_layer.selected_asset_keys) == {key(n) for n in MODEL_NAMES}
    assert job.executor_def.name == "claim_aware"
    assert isinstance(defs.resources[f"{PROJECT}_dbt"], DbtCliResource)
    assert defs.resolve_assets_def(key("orders")).op.name == OP_NAME
