"""Pins `dagctl_dagster/sqlmesh/internals.py` to the SQLMesh it was written against.

The run executes SQLMesh's scheduling units itself, so it depends on SQLMesh's private
scheduler pieces behaving as in the tested minor version. Each test here fails loudly when
an upgrade changes one of them; then re-read `Context.run`, `Scheduler._run_or_audit` and
`Scheduler.run_merged_intervals` and adjust internals.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from declared import assert_seam_covers

from dagctl_dagster.sqlmesh import internals


def test_the_installed_sqlmesh_is_the_tested_minor_version():
    assert internals.installed_sqlmesh_minor() == internals.TESTED_SQLMESH_MINOR


def test_the_seam_states_the_sqlmesh_range_pyproject_declares():
    assert_seam_covers("sqlmesh", internals.SQLMESH_VERSIONS, internals.TESTED_SQLMESH_MINOR)


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
    assert internals._absolute(path, Path("/work/project")) == expected


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
