"""Pins the SQLMesh seam (`dagctl_dagster/sqlmesh/internals/`) to the SQLMesh it was written against.

The run executes SQLMesh's scheduling units itself, so it depends on SQLMesh's private
scheduler pieces behaving as in the tested versions (`TESTED_SQLMESH`). Each test here fails
loudly when an upgrade changes one of them; then re-read `Context.run`,
`Scheduler._run_or_audit` and `Scheduler.run_merged_intervals` and adjust the seam. The
tables at the end pin every SQLMesh name the seam imports or reads (and fail when the seam
uses one they do not list); the public-API rule is in the seam's docstring and
`PUBLIC_CONTEXT_MEMBERS`, which the CLI test below checks against SQLMesh's own CLI.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
from pathlib import Path

import pytest
from declared import assert_seam_covers

from dagctl_dagster.sqlmesh import internals


def test_the_installed_sqlmesh_is_the_tested_version():
    installed = internals.installed_sqlmesh_version()
    assert internals.is_tested_sqlmesh(installed), (
        f"SQLMesh {installed} is installed; the seam (dagctl_dagster/sqlmesh/internals/) was tested "
        f"with SQLMesh {internals.TESTED_SQLMESH}. Re-read Context.run, Scheduler._run_or_audit and "
        "Scheduler.run_merged_intervals, run this file, then widen TESTED_SQLMESH."
    )


def test_the_seam_states_the_sqlmesh_range_pyproject_declares():
    assert_seam_covers("sqlmesh", internals.TESTED_SQLMESH)


def _source(obj) -> str:
    return " ".join(inspect.getsource(obj).split())


def test_run_merged_intervals_still_decides_target_table_existence_as_internals_does():
    from sqlmesh.core.scheduler import Scheduler

    source = _source(Scheduler.run_merged_intervals)
    assert "snapshot.snapshot_id not in snapshots_to_create or node.batch_index > 0" in source
    assert (
        "self._dag( batched_intervals, snapshot_dag=snapshot_dag, snapshots_to_create=snapshots_to_create )" in source
    )
    assert "selected_models=selected_models" in source
    # Scheduler.evaluate hands selected_models (in **kwargs) to the evaluator and the audits.
    assert _source(Scheduler.evaluate).count("**kwargs, )") >= 2
    assert "runtime_stage=RuntimeStage.BEFORE_ALL" in source and "runtime_stage=RuntimeStage.AFTER_ALL" in source


def test_run_or_audit_still_applies_auto_restatements_then_merges_missing_intervals():
    from sqlmesh.core.scheduler import Scheduler

    source = _source(Scheduler._run_or_audit)
    assert source.index("apply_auto_restatements(") < source.index("self.merged_missing_intervals(")
    assert "update_auto_restatements(" in source
    assert "return CompletionStatus.NOTHING_TO_DO" in source  # no statements when nothing is due


def test_context_run_still_loads_materializations_and_checks_finalized_environments():
    from sqlmesh.core.context import GenericContext

    source = _source(GenericContext.run)
    assert "self._load_materializations()" in source
    assert "environment_state.finalized_ts" in source
    assert "auto_restatement_enabled=environment.lower() == c.PROD" in _source(GenericContext._run)


def test_the_private_names_internals_uses_exist_with_their_parameters():
    from sqlmesh.core.context import GenericContext
    from sqlmesh.core.scheduler import CreateNode, EvaluateNode, Scheduler
    from sqlmesh.utils.connection_pool import (
        SingletonConnectionPool,
        ThreadLocalConnectionPool,
        ThreadLocalSharedConnectionPool,
    )

    assert list(inspect.signature(Scheduler._dag).parameters) == [
        "self",
        "batches",
        "snapshot_dag",
        "snapshots_to_create",
    ]
    assert {"target_table_exists", "batch_index", "environment_naming_info"} <= set(
        inspect.signature(Scheduler.evaluate).parameters
    )
    assert callable(GenericContext._load_materializations)
    assert {f.name for f in __import__("dataclasses").fields(EvaluateNode)} == {
        "snapshot_name",
        "interval",
        "batch_index",
    }
    assert {f.name for f in __import__("dataclasses").fields(CreateNode)} == {"snapshot_name"}
    for pool in (SingletonConnectionPool, ThreadLocalConnectionPool, ThreadLocalSharedConnectionPool):
        assert callable(pool.close_cursor)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("db.duckdb", "/work/project/db.duckdb"),
        ("../shared/db.duckdb", "/work/shared/db.duckdb"),
        ("/abs/db.duckdb", "/abs/db.duckdb"),
        (":memory:", ":memory:"),
        ("md:my_db", "md:my_db"),
        ("s3://bucket/db.duckdb", "s3://bucket/db.duckdb"),
    ],
)
def test_duckdb_paths_resolve_as_sqlmesh_run_in_the_working_directory(path: str, expected: str):
    assert internals.configs._absolute(path, Path("/work/project")) == expected


def test_configs_resolve_every_duckdb_file_against_the_project(tmp_path: Path):
    (tmp_path / "config.yaml").write_text(
        "gateways:\n"
        "  local:\n"
        "    connection: {type: duckdb, database: db.duckdb}\n"
        "    state_connection: {type: duckdb, database: state.duckdb}\n"
        "  attached:\n"
        "    connection:\n"
        "      type: duckdb\n"
        "      catalogs: {main_db: main.duckdb, other: {type: duckdb, path: other.duckdb}}\n"
        "default_gateway: local\n"
        "model_defaults: {dialect: duckdb}\n"
    )
    [config] = internals.load_project_configs([tmp_path], tmp_path).values()
    local = config.gateways["local"]
    assert local.connection.database == str(tmp_path / "db.duckdb")
    assert local.state_connection.database == str(tmp_path / "state.duckdb")
    catalogs = config.gateways["attached"].connection.catalogs
    assert catalogs["main_db"] == str(tmp_path / "main.duckdb")
    assert catalogs["other"].path == str(tmp_path / "other.duckdb")


def test_what_config_loading_reads_outside_the_project_is_what_sqlmesh_reads(tmp_path: Path, monkeypatch):
    from sqlmesh.core import constants
    from sqlmesh.core.config import common

    from dagctl_dagster.sqlmesh.internals import configs

    assert configs.sqlmesh_home() == constants.SQLMESH_PATH
    assert configs.PERSONAL_CONFIG_NAMES == common.YAML_CONFIG_FILENAMES
    assert configs.CONFIG_ENV_PREFIX == f"{constants.SQLMESH}__"
    assert configs.DBT_PROJECT_FILE == common.DBT_PROJECT_FILENAME
    monkeypatch.setenv(configs.SQLMESH_HOME_ENV, str(tmp_path))
    (tmp_path / "config.yaml").write_text("gateways: {}")
    inputs = internals.config_inputs_outside(tmp_path / "project")
    assert inputs is not None and (str(tmp_path / "config.yaml"), b"gateways: {}") in inputs.personal_configs


def test_sqlmeshs_single_task_default_shares_one_cursor_and_more_tasks_do_not(tmp_path: Path):
    from sqlmesh import Context

    for tasks, shared in ((None, True), (4, False)):
        project = tmp_path / f"tasks_{tasks}"
        (project / "models").mkdir(parents=True)
        extra = f", concurrent_tasks: {tasks}" if tasks else ""
        (project / "config.yaml").write_text(
            f"gateways:\n  local:\n    connection: {{type: duckdb, database: db.duckdb{extra}}}\n"
            "default_gateway: local\nmodel_defaults: {dialect: duckdb}\n"
        )
        configs = internals.load_project_configs([project], project)
        context = Context(paths=list(configs), config=configs, load=False)
        try:
            assert internals.shares_one_cursor(context) is shared
            assert internals.concurrent_tasks(context) == (tasks or 1)
        finally:
            context.close()


def test_sqlmesh_still_finds_custom_materializations_by_name_among_the_process_classes():
    """`sqlmesh/materializations.py` refuses two projects' materializations of one name because of this."""
    from sqlmesh.core.snapshot import evaluator

    source = _source(evaluator.get_custom_materialization_type)
    assert "global _custom_materialization_type_cache" in source
    assert "CustomMaterialization.__subclasses__()" in source
    assert 'getattr(strategy_type, "NAME", strategy_type.__name__).lower()' in source


def test_sqlmesh_still_imports_project_files_as_top_level_modules_and_serializes_project_code():
    """`sqlmesh/imports.py` isolates loads only: evaluation runs the serialized `python_env`."""
    from sqlmesh.core.loader import Loader
    from sqlmesh.utils import metaprogramming

    assert "with sys_path(self.config_path):" in _source(Loader.load)
    assert "sys.modules.pop(" in _source(metaprogramming.import_python_file)
    serialize = _source(metaprogramming.serialize_env)
    assert "payload=normalize_source(v)" in serialize and "kind=ExecutableKind.DEFINITION" in serialize


# -- every internal name the seam uses, pinned -----------------------------------------------
#
# "module:qualified.name" → the parameters the seam passes (each must still be accepted), or
# None for a name the seam imports as a type, class or constant.
PINNED_CALLABLES: dict[str, list[str] | None] = {
    "sqlmesh:Context": ["paths", "config", "gateway", "load"],
    "sqlmesh:CustomMaterialization": None,
    "sqlmesh.core:constants": None,
    "sqlmesh.core.config:Config": None,
    "sqlmesh.core.config:GatewayConfig": None,
    "sqlmesh.core.config.connection:ConnectionConfig": None,
    "sqlmesh.core.config.connection:DuckDBConnectionConfig": None,
    "sqlmesh.core.config.loader:load_configs": ["config", "config_type", "paths"],
    "sqlmesh.core.config:Config.get_state_connection": ["gateway_name"],
    "sqlmesh.core.config:Config.get_connection": ["gateway_name"],
    "sqlmesh.core.config:Config.get_state_schema": ["gateway_name"],
    "sqlmesh.core.console:NoopConsole": None,
    "sqlmesh.core.console:get_console": [],
    "sqlmesh.core.console:set_console": ["console"],
    "sqlmesh.core.console:Console.update_cleanup_progress": ["object_name"],
    "sqlmesh.core.console:NoopConsole.log_warning": ["short_message", "long_message"],
    "sqlmesh.core.console:NoopConsole.log_error": ["message"],
    "sqlmesh.core.console:NoopConsole.log_failed_models": ["errors"],
    "sqlmesh.core.console:NoopConsole.update_snapshot_evaluation_progress": [
        "snapshot",
        "interval",
        "batch_idx",
        "duration_ms",
        "num_audits_passed",
        "num_audits_failed",
        "audit_only",
        "execution_stats",
        "auto_restatement_triggers",
    ],
    "sqlmesh.core.context:GenericContext.scheduler": ["environment"],
    "sqlmesh.core.context:GenericContext.plan_builder": [
        "environment",
        "start",
        "end",
        "restate_models",
        "skip_tests",
        "select_models",
        "skip_backfill",
        "no_gaps",
    ],
    "sqlmesh.core.context:GenericContext.apply": ["plan", "circuit_breaker"],
    "sqlmesh.core.context:GenericContext.test": ["stream"],
    "sqlmesh.core.context:GenericContext.load": [],
    "sqlmesh.core.context:GenericContext.run_janitor": ["ignore_ttl"],
    "sqlmesh.core.context:GenericContext._load_materializations": [],
    "sqlmesh.core.engine_adapter:EngineAdapter": None,
    "sqlmesh.core.engine_adapter:EngineAdapter.fetchone": ["query"],
    # Query counting (query_counting.py): the three paths that send a statement.
    "sqlmesh.core.engine_adapter:EngineAdapter._execute": ["sql", "track_rows_processed", "kwargs"],
    "sqlmesh.core.engine_adapter.mixins:PandasNativeFetchDFSupportMixin": None,
    "sqlmesh.core.engine_adapter.mixins:PandasNativeFetchDFSupportMixin._fetch_native_df": [
        "query",
        "quote_identifiers",
    ],
    "sqlmesh.core.engine_adapter.postgres:PostgresEngineAdapter": None,
    "sqlmesh.core.engine_adapter.postgres:PostgresEngineAdapter._fetch_native_df": ["query", "quote_identifiers"],
    "sqlmesh.core.engine_adapter.duckdb:DuckDBEngineAdapter": None,
    "sqlmesh.core.engine_adapter.duckdb:DuckDBEngineAdapter._df_to_source_queries": [
        "df",
        "target_columns_to_types",
        "batch_size",
        "target_table",
        "source_columns",
    ],
    "sqlmesh.core.environment:Environment": None,
    "sqlmesh.core.environment:Environment.sanitize_name": ["v"],
    "sqlmesh.core.environment:EnvironmentNamingInfo": None,
    "sqlmesh.core.environment:EnvironmentStatements": None,
    "sqlmesh.core.environment:execute_environment_statements": [
        "adapter",
        "environment_statements",
        "runtime_stage",
        "environment_naming_info",
        "default_catalog",
        "snapshots",
        "start",
        "end",
        "execution_time",
        "selected_models",
    ],
    "sqlmesh.core.macros:RuntimeStage": None,
    "sqlmesh.core.model:Model": None,
    "sqlmesh.core.model.definition:AuditResult": None,
    "sqlmesh.core.snapshot.definition:Node": None,
    "sqlmesh.core.plan:Plan": None,
    "sqlmesh.core.plan:PlanBuilder.build": [],
    "sqlmesh.core.scheduler:CreateNode": None,
    "sqlmesh.core.scheduler:EvaluateNode": None,
    "sqlmesh.core.scheduler:SchedulingUnit": None,
    "sqlmesh.core.scheduler:Scheduler": None,
    "sqlmesh.core.scheduler:Scheduler.merged_missing_intervals": ["execution_time", "deployability_index"],
    "sqlmesh.core.scheduler:Scheduler.batch_intervals": [
        "merged_intervals",
        "deployability_index",
        "environment_naming_info",
        "dag",
    ],
    "sqlmesh.core.scheduler:Scheduler._dag": ["batches", "snapshot_dag", "snapshots_to_create"],
    "sqlmesh.core.scheduler:Scheduler.evaluate": [
        "snapshot",
        "environment_naming_info",
        "start",
        "end",
        "execution_time",
        "deployability_index",
        "batch_index",
        "allow_destructive_snapshots",
        "allow_additive_snapshots",
        "target_table_exists",
        "kwargs",  # selected_models travels here to the evaluator and the audits
    ],
    "sqlmesh.core.snapshot.evaluator:SnapshotEvaluator.evaluate": ["kwargs"],
    "sqlmesh.core.snapshot.evaluator:SnapshotEvaluator.get_adapter": ["gateway"],
    "sqlmesh.core.snapshot.evaluator:SnapshotEvaluator.get_snapshots_to_create": [
        "target_snapshots",
        "deployability_index",
    ],
    "sqlmesh.core.snapshot.evaluator:SnapshotEvaluator.create_snapshot": [
        "snapshot",
        "snapshots",
        "deployability_index",
        "allow_destructive_snapshots",
        "allow_additive_snapshots",
    ],
    "sqlmesh.core.snapshot.execution_tracker:QueryExecutionTracker.get_execution_stats": ["snapshot_id_batch"],
    "sqlmesh.core.snapshot.execution_tracker:QueryExecutionStats": None,
    "sqlmesh.core.snapshot.definition:Interval": None,
    "sqlmesh.core.snapshot.definition:fingerprint_from_node": ["node", "nodes", "cache"],
    "sqlmesh.core.snapshot:DeployabilityIndex": None,
    "sqlmesh.core.snapshot:DeployabilityIndex.all_deployable": [],
    "sqlmesh.core.snapshot:DeployabilityIndex.create": ["snapshots"],
    "sqlmesh.core.snapshot:DeployabilityIndex.is_deployable": ["snapshot"],
    "sqlmesh.core.snapshot:DeployabilityIndex.is_representative": ["snapshot"],
    "sqlmesh.core.snapshot:Snapshot": None,
    "sqlmesh.core.snapshot:Snapshot.table_name": ["is_deployable"],
    "sqlmesh.core.snapshot:SnapshotFingerprint": None,
    "sqlmesh.core.snapshot:SnapshotFingerprint.to_version": [],
    "sqlmesh.core.snapshot:SnapshotId": None,
    "sqlmesh.core.snapshot:SnapshotIdBatch": None,
    "sqlmesh.core.snapshot:SnapshotTableInfo": None,
    "sqlmesh.core.snapshot:apply_auto_restatements": ["snapshots", "execution_time"],
    "sqlmesh.core.snapshot:snapshots_to_dag": ["snapshots"],
    "sqlmesh.core.state_sync:StateReader.get_environments_summary": [],
    "sqlmesh.core.state_sync:StateReader.get_environment": ["environment"],
    "sqlmesh.core.state_sync:StateReader.get_snapshots": ["snapshot_ids"],
    "sqlmesh.core.state_sync:StateReader.get_environment_statements": ["environment"],
    "sqlmesh.core.state_sync:StateReader.get_expired_environments": ["current_ts"],
    "sqlmesh.core.state_sync:StateSync.refresh_snapshot_intervals": ["snapshots"],
    "sqlmesh.core.state_sync:StateSync.add_snapshots_intervals": ["snapshots_intervals"],
    "sqlmesh.core.state_sync:StateSync.update_auto_restatements": ["next_auto_restatement_ts"],
    "sqlmesh.utils.concurrency:NodeExecutionFailedError": None,
    "sqlmesh.utils.connection_pool:ConnectionPool": None,
    "sqlmesh.utils.connection_pool:SingletonConnectionPool": None,
    "sqlmesh.utils.connection_pool:ThreadLocalConnectionPool": None,
    "sqlmesh.utils.connection_pool:ThreadLocalConnectionPool.close": [],
    "sqlmesh.utils.connection_pool:ThreadLocalSharedConnectionPool": None,
    "sqlmesh.utils.connection_pool:ThreadLocalSharedConnectionPool.close_cursor": [],
    "sqlmesh.utils.date:now_timestamp": [],
    "sqlmesh.utils.errors:ConflictingPlanError": None,
    "sqlmesh.utils.errors:NodeAuditsErrors": None,
    "sqlmesh.utils.errors:SQLMeshError": None,
}

# "module:Class" → attributes the seam reads on its objects: class members, pydantic or
# dataclass fields, or attributes its methods set (``self.<name> = ``).
PINNED_ATTRIBUTES: dict[str, set[str]] = {
    "sqlmesh.core.context:GenericContext": {
        "concurrent_tasks",
        "config",
        "console",
        "models",
        "standalone_audits",
        "state_sync",
        "snapshot_evaluator",
        "_models",
        "_snapshot_evaluator",
        "_engine_adapter",
        "_state_sync",
    },
    "sqlmesh.core.config:Config": {
        "project",
        "gateways",
        "default_connection",
        "default_test_connection_",
        "default_gateway_name",
        "run",
    },
    "sqlmesh.core.config:RunConfig": {"environment_check_interval", "environment_check_max_wait"},
    "sqlmesh.core.config:GatewayConfig": {"connection", "state_connection", "test_connection"},
    "sqlmesh.core.config.connection:ConnectionConfig": {"type_", "concurrent_tasks"},
    "sqlmesh.core.config.connection:DuckDBConnectionConfig": {"database", "catalogs"},
    "sqlmesh.core.config.connection:PostgresConnectionConfig": {"host", "port", "user", "password", "database"},
    "sqlmesh.core.environment:EnvironmentSummary": {"name", "plan_id", "finalized_ts", "expired"},
    "sqlmesh.core.environment:Environment": {"naming_info", "snapshots"},
    "sqlmesh.core.environment:EnvironmentNamingInfo": {"name"},
    "sqlmesh.core.macros:RuntimeStage": {"BEFORE_ALL", "AFTER_ALL"},
    "sqlmesh.core.scheduler:Scheduler": {"snapshots", "snapshots_by_name", "snapshot_evaluator", "default_catalog"},
    "sqlmesh.core.scheduler:SchedulingUnit": {"snapshot_name"},
    "sqlmesh.core.scheduler:EvaluateNode": {"snapshot_name", "interval", "batch_index"},
    "sqlmesh.core.scheduler:CreateNode": {"snapshot_name"},
    "sqlmesh.core.snapshot.evaluator:SnapshotEvaluator": {"adapter", "adapters", "execution_tracker"},
    "sqlmesh.core.snapshot.execution_tracker:QueryExecutionStats": {"total_rows_processed"},
    "sqlmesh.core.snapshot:SnapshotIdBatch": {"snapshot_id", "batch_id"},
    "sqlmesh.core.snapshot:Snapshot": {
        "name",
        "node",
        "version",
        "snapshot_id",
        "is_model",
        "is_external",
        "intervals",
        "name_version",
        "next_auto_restatement_ts",
        "change_category",
        "model",
        "model_gateway",
    },
    "sqlmesh.core.snapshot:SnapshotTableInfo": {"name"},
    "sqlmesh.core.snapshot:SnapshotChangeCategory": {"BREAKING", "NON_BREAKING"},
    "sqlmesh.core.plan:Plan": {
        "context_diff",
        "snapshots",
        "directly_modified",
        "indirectly_modified",
        "missing_intervals",
        "previous_plan_id",
    },
    "sqlmesh.core.plan.definition:SnapshotIntervals": {"snapshot_id", "intervals"},
    "sqlmesh.core.context_diff:ContextDiff": {"added", "removed_snapshots"},
    "sqlmesh.core.model:SqlModel": {
        "fqn",
        "name",
        "kind",
        "project",
        "depends_on",
        "fully_qualified_table",
        "columns_to_types",
        "audits_with_args",
        "interval_unit",
        "cron",
        "cron_tz",
        "dbt_unique_id",
        "_path",
    },
    "sqlmesh.core.model.kind:_ModelKind": {"is_external", "is_embedded", "is_full", "is_seed"},
    "sqlmesh.core.audit:StandaloneAudit": {"fqn", "name", "project", "depends_on", "blocking"},
    "sqlmesh.core.model.definition:AuditResult": {"audit", "audit_args", "blocking", "count", "skipped"},
    "sqlmesh.utils.errors:AuditError": {"audit_name", "audit_args", "count"},
    "sqlmesh.utils.errors:NodeAuditsErrors": {"errors"},
    "sqlmesh.utils.concurrency:NodeExecutionFailedError": {"node"},
    "sqlmesh.core.test.result:ModelTextTestResult": {"failures", "errors"},
    "sqlmesh.core.engine_adapter:EngineAdapter": {"_connection_pool", "dialect"},
    "sqlmesh.utils.connection_pool:ThreadLocalConnectionPool": {"_thread_connections", "_thread_cursors"},
    "sqlmesh.utils.connection_pool:SingletonConnectionPool": {"_connection", "_cursor"},
    "sqlmesh.core.state_sync.db.facade:EngineAdapterStateSync": {"engine_adapter"},
}


def _resolve(spec: str) -> object:
    module, qualified = spec.split(":")
    found: object = importlib.import_module(module)
    for part in qualified.split("."):
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("spec", sorted(PINNED_CALLABLES))
def test_each_internal_name_the_seam_calls_exists_with_the_parameters_it_passes(spec: str):
    target = _resolve(spec)
    expected = PINNED_CALLABLES[spec]
    if expected is None:
        return
    parameters = inspect.signature(target).parameters  # type: ignore[arg-type]
    missing = [name for name in expected if name not in parameters]
    assert not missing, f"{spec} no longer takes {missing}; it takes {list(parameters)}"


def _has_attribute(kind: type, name: str) -> bool:
    declared = [*getattr(kind, "model_fields", {}), *getattr(kind, "__dataclass_fields__", {})]
    declared += [n for base in kind.__mro__ for n in getattr(base, "__annotations__", {})]
    if hasattr(kind, name) or name in declared:
        return True
    sources = []
    for base in kind.__mro__:
        with contextlib.suppress(TypeError, OSError):
            sources.append(inspect.getsource(base))
    return any(f"self.{name} =" in source or f"self.{name}: " in source for source in sources)


@pytest.mark.parametrize("spec", sorted(PINNED_ATTRIBUTES))
def test_each_internal_attribute_the_seam_reads_is_still_there(spec: str):
    kind = _resolve(spec)
    assert isinstance(kind, type)
    missing = sorted(name for name in PINNED_ATTRIBUTES[spec] if not _has_attribute(kind, name))
    assert not missing, f"{spec} no longer has {missing}"


def test_the_pins_cover_every_sqlmesh_name_the_seam_uses():
    """A name used in the seam but pinned nowhere here fails: pin it before relying on it."""
    from test_seams import SQLMESH_SEAM, sqlmesh_library

    library = sqlmesh_library()
    pinned_names = {spec.split(":")[1].split(".")[-1] for spec in PINNED_CALLABLES}
    pinned_names |= {name for names in PINNED_ATTRIBUTES.values() for name in names}
    imported: set[str] = set()
    used: set[str] = set()
    for path in SQLMESH_SEAM.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlmesh":
                imported.update(f"{node.module}:{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Attribute) and node.attr in library.private_names | library.internal_members:
                used.add(node.attr)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr")
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in library.private_names | library.internal_members
            ):
                used.add(node.args[1].value)
    assert imported - set(PINNED_CALLABLES) == set()
    assert used - pinned_names == set()


def test_the_public_context_members_are_those_sqlmeshs_cli_calls():
    """The rule of the seam: SQLMesh documents its Python API as what its CLI calls."""
    import re

    import sqlmesh.cli
    from sqlmesh import Context

    cli = Path(sqlmesh.cli.__file__).parent
    called = set()
    for source in (cli / "main.py", cli / "__init__.py"):
        called |= set(re.findall(r"\b(?:ctx\.obj|obj|context)\.([a-z][a-z_]*)\b", source.read_text()))
    assert set(internals.PUBLIC_CONTEXT_MEMBERS) <= called, set(internals.PUBLIC_CONTEXT_MEMBERS) - called
    assert all(_has_attribute(Context, name) for name in internals.PUBLIC_CONTEXT_MEMBERS)
