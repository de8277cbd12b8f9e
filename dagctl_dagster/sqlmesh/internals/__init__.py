"""The SQLMesh seam: the only package of dagctl-dagster that touches SQLMesh's internals.

**What counts as SQLMesh's public Python API** (usable anywhere in dagctl-dagster). SQLMesh's
documentation says that its Python API is what its CLI calls ("study how the SQLMesh CLI calls
it": docs/reference/python.md), almost all of it on ``Context``. So public is exactly:

- ``from sqlmesh import Context``, the ``Context(paths=..., config=..., gateway=..., load=...)``
  constructor as ``sqlmesh/cli/main.py`` calls it, and the members of a Context listed in
  :data:`PUBLIC_CONTEXT_MEMBERS`: those SQLMesh's CLI (``sqlmesh/cli/``) calls on its context.
  ``tests/test_sqlmesh_internals.py`` checks that each of them is still called there.
- the classes of ``sqlmesh.core.config`` that users write in a project's ``config.py``
  (``Config``, ``GatewayConfig``, ``ModelDefaultsConfig``, the connection configs), as
  constructors.
- the properties of a model that SQLMesh documents as model properties (``MODEL(...)`` in the
  model configuration reference: ``name``, ``kind``, ``cron``, ``owner``, ``tags``,
  ``description``, ``dialect``, ``column_descriptions``): :data:`PUBLIC_MODEL_PROPERTIES`. The
  translator (:class:`~dagctl_dagster.sqlmesh.translator.DagsterSQLMeshTranslator`) is given
  SQLMesh ``Model`` objects, as users' translators are, and reads those.

Everything else is internal and lives here: any other module of ``sqlmesh.core``/``sqlmesh.utils``
(the scheduler, snapshots, state sync, plans and plan builders, the console, errors, dates),
any other member of a Context (``state_sync``, ``scheduler``, ``plan_builder``, ``apply``,
``standalone_audits``, ``snapshot_evaluator``, ``load``, ...), what those return (``Snapshot``,
``Plan``, ``Environment``, audit results), any other model attribute (``fqn``,
``fully_qualified_table``, ``columns_to_types``, ``audits_with_args``, ``kind.is_external``),
every private attribute (``_x``) of a SQLMesh object, and every subclass or patch of a SQLMesh
class. Nothing here imports SQLMesh when this package is imported: loads served from the
translation cache never import it.

A run of this product must do what ``sqlmesh run`` does, model by model, so the scheduling
part follows ``Context.run`` → ``Scheduler._run_or_audit`` → ``Scheduler.run_merged_intervals``
of the tested SQLMesh (:mod:`.scheduling`). :data:`TESTED_SQLMESH` is the version range
``tests/test_sqlmesh_internals.py`` pins every internal name used here to; ``tests/test_seams.py``
fails when any other module of dagctl-dagster reaches into SQLMesh.
"""

from __future__ import annotations

from dagctl_dagster.sqlmesh.internals.audits import AuditOutcome, audit_failures
from dagctl_dagster.sqlmesh.internals.configs import (
    ConfigInputs,
    StateConnection,
    config_inputs_outside,
    load_project_configs,
    sqlmesh_project_name,
    state_connection,
)
from dagctl_dagster.sqlmesh.internals.connections import (
    concurrent_tasks,
    interrupt_queries,
    release_thread_connections,
    shares_one_cursor,
)
from dagctl_dagster.sqlmesh.internals.environments import (
    EnvironmentState,
    environment_state,
    wait_for_finalized,
)
from dagctl_dagster.sqlmesh.internals.errors import error_file, is_sqlmesh_error
from dagctl_dagster.sqlmesh.internals.intervals import ModelIntervals, completed_intervals
from dagctl_dagster.sqlmesh.internals.janitor import JanitorPass, run_janitor
from dagctl_dagster.sqlmesh.internals.loading import (
    custom_materializations,
    install_quiet_console,
    load_custom_materializations,
    load_models,
)
from dagctl_dagster.sqlmesh.internals.models import (
    ModelAudit,
    ModelNode,
    ProjectNodes,
    StandaloneAuditNode,
    audits_with_args,
    column_types,
    is_embedded,
    is_external,
    model_file,
    model_fqn,
    project_nodes,
    table_name,
)
from dagctl_dagster.sqlmesh.internals.plans import (
    ENVIRONMENT_CHANGED,
    EnvironmentChangedError,
    FailedTest,
    PlanChanges,
    PreparedPlan,
    apply_plan,
    downstream_of,
    held_out_selection,
    plan_changes,
    prepare_plan,
    run_unit_tests,
)
from dagctl_dagster.sqlmesh.internals.query_counting import count_queries, measuring_queries
from dagctl_dagster.sqlmesh.internals.recording import EvaluationRecorder, FailureRecorder, PlanBatch
from dagctl_dagster.sqlmesh.internals.row_counts import table_row_count
from dagctl_dagster.sqlmesh.internals.scheduling import (
    ScheduledRun,
    SnapshotFacts,
    UnitResult,
    execute_environment_statements,
    execute_unit,
    schedule_run,
)
from dagctl_dagster.sqlmesh.internals.versions import (
    PUBLIC_CONTEXT_MEMBERS,
    PUBLIC_MODEL_PROPERTIES,
    TESTED_SQLMESH,
    installed_sqlmesh_version,
    is_tested_sqlmesh,
)

__all__ = [
    "ENVIRONMENT_CHANGED",
    "PUBLIC_CONTEXT_MEMBERS",
    "PUBLIC_MODEL_PROPERTIES",
    "TESTED_SQLMESH",
    "AuditOutcome",
    "ConfigInputs",
    "EnvironmentChangedError",
    "EnvironmentState",
    "EvaluationRecorder",
    "FailedTest",
    "FailureRecorder",
    "JanitorPass",
    "ModelAudit",
    "ModelIntervals",
    "ModelNode",
    "PlanBatch",
    "PlanChanges",
    "PreparedPlan",
    "ProjectNodes",
    "ScheduledRun",
    "SnapshotFacts",
    "StandaloneAuditNode",
    "StateConnection",
    "UnitResult",
    "apply_plan",
    "audit_failures",
    "audits_with_args",
    "column_types",
    "completed_intervals",
    "concurrent_tasks",
    "config_inputs_outside",
    "count_queries",
    "custom_materializations",
    "downstream_of",
    "environment_state",
    "error_file",
    "execute_environment_statements",
    "execute_unit",
    "held_out_selection",
    "install_quiet_console",
    "installed_sqlmesh_version",
    "interrupt_queries",
    "is_embedded",
    "is_external",
    "is_sqlmesh_error",
    "is_tested_sqlmesh",
    "load_custom_materializations",
    "load_models",
    "load_project_configs",
    "measuring_queries",
    "model_file",
    "model_fqn",
    "plan_changes",
    "prepare_plan",
    "project_nodes",
    "release_thread_connections",
    "run_janitor",
    "run_unit_tests",
    "schedule_run",
    "shares_one_cursor",
    "sqlmesh_project_name",
    "state_connection",
    "table_name",
    "table_row_count",
    "wait_for_finalized",
]
