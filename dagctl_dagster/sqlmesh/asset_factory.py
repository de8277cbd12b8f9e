"""SQLMesh project → one Dagster asset (one step) per model, audits as asset checks.

Example::

    import dagster as dg
    from dagctl_dagster import sqlmesh_assets

    defs = dg.Definitions(assets=sqlmesh_assets("path/to/sqlmesh_project", name="analytics"))

Each model is its own op, so the claim-aware executor can run models concurrently and
the UI shows each model's step, logs and status. The step evaluates the model's due
intervals in the project's environment through the run's shared
:class:`~dagctl_dagster.sqlmesh.session.SQLMeshRunSession`.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.names import SQLMESH_MODEL_TAG
from dagctl_dagster.project import FRAMEWORK_TAG, PROJECT_TAG, ProjectDefinitions
from dagctl_dagster.sqlmesh.session import ModelRun, SQLMeshRunSession
from dagctl_dagster.sqlmesh.translation_cache import ModelTranslation, ProjectTranslation, TranslationCache
from dagctl_dagster.sqlmesh.translator import (
    DagsterSQLMeshTranslator,
    _render_args,
    audits_with_args,
    schema_and_table,
    unique_check_name,
)

logger = logging.getLogger(__name__)

MODEL_FQN_TAG = SQLMESH_MODEL_TAG
_OP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def session_resource_key(project_name: str) -> str:
    return f"sqlmesh_{project_name}"


def sqlmesh_assets(
    project_dir: str | Path,
    *,
    name: str | None = None,
    gateway: str | None = None,
    environment: str = "prod",
    translator: DagsterSQLMeshTranslator | None = None,
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """Assets for every model of a SQLMesh project, ready for ``dg.Definitions``.

    Args:
        project_dir: the SQLMesh project (the directory holding ``config.yaml``/``config.py``).
        name: the project name (asset group, tags); defaults to the directory name.
        gateway: the SQLMesh gateway; defaults to the project's default gateway.
        environment: the SQLMesh environment runs execute (default ``prod``).
        translator: rules for keys, groups, metadata and checks.

    The run's SQLMesh session resource is bound to the assets, so no resource needs to be
    passed to ``Definitions``.
    """
    project_dir = Path(project_dir).resolve()
    project = ProjectConfig(
        name=name or _OP_UNSAFE.sub("_", project_dir.name),
        framework="sqlmesh",
        path=str(project_dir),
        gateway=gateway,
        environment=environment,
    )
    return _build_assets(project_dir, project, translator, bind_resource=True)[0]


def build_sqlmesh_project(loaded: LoadedConfig, project: ProjectConfig) -> ProjectDefinitions:
    """The assets, model keys and session resource of one configured SQLMesh project."""
    project_dir = loaded.project_dir(project)
    assets, model_keys = _build_assets(project_dir, project, None, bind_resource=False)
    return ProjectDefinitions(
        project=project,
        project_dir=project_dir,
        assets=assets,
        model_keys=model_keys,
        resources={session_resource_key(project.name): session_resource(project_dir, project)},
    )


def session_resource(project_dir: Path, project: ProjectConfig) -> dg.ResourceDefinition:
    """A per-run :class:`SQLMeshRunSession`, closed (DuckDB lock released) when the run ends."""

    @dg.resource(description=f"SQLMesh session of project '{project.name}' for one run")
    def _session(init_context: dg.InitResourceContext) -> Iterator[SQLMeshRunSession]:
        session = SQLMeshRunSession(project_dir, project, log=init_context.log)
        try:
            yield session
        finally:
            session.close()

    return _session


def _build_assets(
    project_dir: Path,
    project: ProjectConfig,
    translator: DagsterSQLMeshTranslator | None,
    *,
    bind_resource: bool,
) -> tuple[list[dg.AssetsDefinition | dg.AssetSpec], list[dg.AssetKey]]:
    translator = translator or DagsterSQLMeshTranslator(project.name)
    if translator.project_name is None:
        translator.project_name = project.name
    translation = _cached_translation(project_dir, project, translator)
    resource_defs = (
        {session_resource_key(project.name): session_resource(project_dir, project)} if bind_resource else None
    )
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = []
    model_keys: list[dg.AssetKey] = []
    for model in translation.models:
        spec = dg.AssetSpec(**model.spec)
        if model.external:
            assets.append(spec)
            continue
        with warnings.catch_warnings():
            # `resource_defs` on multi_asset is beta; only the standalone factory binds it.
            warnings.simplefilter("ignore", dg.BetaWarning)
            assets.append(_model_asset(project, model, spec, resource_defs))
        model_keys.append(spec.key)
    assets.extend(dg.AssetSpec(**fields) for fields in translation.undeclared_sources)
    return assets, model_keys


def _cached_translation(
    project_dir: Path, project: ProjectConfig, translator: DagsterSQLMeshTranslator
) -> ProjectTranslation:
    """The project's translation from the cache when its files are unchanged, else from a Context."""
    from dagctl_dagster.sqlmesh.context import load_context

    cache = TranslationCache.for_project(project_dir, project, translator)
    translation = cache.load() if cache else None
    if translation is not None:
        logger.debug("project %s: assets from the translation cache %s", project.name, cache.path)
        return translation
    context = load_context(project_dir, project)
    try:
        translation = _translate(context, translator)
    finally:
        context.close()
    if cache:
        cache.store(translation)
    return translation


def _translate(context: Any, translator: DagsterSQLMeshTranslator) -> ProjectTranslation:
    from sqlmesh.core.snapshot.definition import fingerprint_from_node

    models = dict(context.models)
    nodes = context._models  # the mapping SQLMesh fingerprints against
    keys = {fqn: translator.get_asset_key(model) for fqn, model in models.items()}
    fingerprints: dict[str, Any] = {}
    translated: list[ModelTranslation] = []
    external: dict[str, dg.AssetKey] = {}
    for fqn, model in sorted(models.items()):
        deps = [_dep_key(dep, keys, external) for dep in sorted(model.depends_on)]
        if model.kind.is_external:
            spec = _spec_fields(model, keys[fqn], deps, translator, code_version=None)
            translated.append(ModelTranslation(fqn=fqn, name=model.name, external=True, spec=spec))
            continue
        code_version = fingerprint_from_node(model, nodes=nodes, cache=fingerprints).to_version()
        translated.append(
            ModelTranslation(
                fqn=fqn,
                name=model.name,
                external=False,
                spec=_spec_fields(model, keys[fqn], deps, translator, code_version),
                check_specs=[_check_spec_fields(c) for c in translator.get_check_specs(model, keys[fqn])],
                check_names=_check_names_by_audit(model, translator),
            )
        )
    declared = set(keys.values())
    undeclared = [
        {"key": dep_key, "group_name": translator.get_group_name(None), "kinds": {"sqlmesh"}}
        for dep_key in dict.fromkeys(external.values())
        if dep_key not in declared
    ]
    return ProjectTranslation(models=translated, undeclared_sources=undeclared)


def _dep_key(dep_fqn: str, keys: dict[str, dg.AssetKey], external: dict[str, dg.AssetKey]) -> dg.AssetKey:
    if dep_fqn in keys:
        return keys[dep_fqn]
    # A table the project reads without declaring it in external_models.yaml.
    if dep_fqn not in external:
        external[dep_fqn] = dg.AssetKey(schema_and_table(dep_fqn))
    return external[dep_fqn]


def _spec_fields(
    model: Any,
    key: dg.AssetKey,
    deps: Sequence[dg.AssetKey],
    translator: DagsterSQLMeshTranslator,
    code_version: str | None,
) -> dict[str, Any]:
    return {
        "key": key,
        "deps": list(deps),
        "description": translator.get_description(model),
        "group_name": translator.get_group_name(model),
        "owners": list(translator.get_owners(model)),
        "tags": dict(translator.get_tags(model)),
        "kinds": set(translator.get_kinds(model)),
        "metadata": dict(translator.get_metadata(model)),
        "code_version": code_version,
    }


def _check_spec_fields(check: dg.AssetCheckSpec) -> dict[str, Any]:
    return {
        "name": check.name,
        "asset": check.asset_key,
        "description": check.description,
        "additional_deps": [dep.asset_key for dep in check.additional_deps or []],
        "blocking": check.blocking,
        "metadata": dict(check.metadata or {}),
        "automation_condition": check.automation_condition,
    }


def _model_asset(
    project: ProjectConfig,
    model: ModelTranslation,
    spec: dg.AssetSpec,
    resource_defs: dict[str, Any] | None,
) -> dg.AssetsDefinition:
    fqn = model.fqn
    model_name = model.name
    check_specs = [dg.AssetCheckSpec(**fields) for fields in model.check_specs]
    check_names = model.check_names
    resource_key = session_resource_key(project.name)
    op_name = _OP_UNSAFE.sub("_", "__".join([project.name, *spec.key.path]))

    @dg.multi_asset(
        name=op_name,
        specs=[spec],
        check_specs=check_specs,
        required_resource_keys={resource_key},
        resource_defs=resource_defs,
        # Makes the check outputs optional: a run with nothing due runs no audit, and
        # reports no check result rather than an invented one.
        can_subset=True,
        op_tags={PROJECT_TAG: project.name, FRAMEWORK_TAG: "sqlmesh", MODEL_FQN_TAG: fqn},
    )
    def _evaluate_model(context):  # an AssetExecutionContext (string annotations cannot be resolved here)
        session: SQLMeshRunSession = getattr(context.resources, resource_key)
        try:
            run = session.run_model(fqn)
        except Exception as exc:
            run = getattr(exc, "model_run", None)
            if run is not None:
                yield from _check_results(spec.key, run, check_names)
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise dg.Failure(
                description=f"SQLMesh model {model_name} (project '{project.name}') failed: {first_line}",
                metadata={"model": model_name, "project": project.name, "error": first_line},
            ) from exc
        if not run.in_environment:
            context.log.warning(
                f"Model {model_name} is not in environment '{project.environment}' yet: apply a plan "
                f"(job {project.name}_plan) to add it. Nothing was evaluated."
            )
        yield dg.MaterializeResult(
            asset_key=spec.key,
            metadata=_materialization_metadata(run, session),
            check_results=list(_check_results(spec.key, run, check_names)),
        )

    return _evaluate_model


def _check_names_by_audit(model: Any, translator: DagsterSQLMeshTranslator) -> dict[tuple[str, str], str]:
    used: set[str] = set()
    names: dict[tuple[str, str], str] = {}
    for audit, args in audits_with_args(model):
        names[(audit.name, _render_args(args))] = unique_check_name(
            translator.get_check_name(audit.name, args), used
        )
    return names


def _check_results(
    asset_key: dg.AssetKey, run: ModelRun, check_names: dict[tuple[str, str], str]
) -> Iterator[dg.AssetCheckResult]:
    failed_rows: dict[str, int] = {}
    blocking: dict[str, bool] = {}
    for audit in run.audits:
        name = check_names.get((audit.name, _render_args(audit.args)))
        if name is None:
            name = next((n for (a, _), n in check_names.items() if a == audit.name), None)
        if name is None:
            continue
        failed_rows[name] = failed_rows.get(name, 0) + audit.failed_rows
        blocking[name] = audit.blocking
    for name, rows in failed_rows.items():
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=name,
            passed=rows == 0,
            severity=dg.AssetCheckSeverity.ERROR if blocking[name] else dg.AssetCheckSeverity.WARN,
            metadata={"failed_rows": rows, "batches": len(run.intervals) or 1},
        )


def _materialization_metadata(run: ModelRun, session: SQLMeshRunSession) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "duration_s": dg.MetadataValue.float(round(run.duration_s, 4)),
        "intervals": dg.MetadataValue.int(len(run.intervals)),
        "sqlmesh/environment": session.environment,
    }
    if run.intervals:
        metadata["interval_ranges"] = ", ".join(f"{_ts(s)} → {_ts(e)}" for s, e in run.intervals)
    if run.rows_processed is not None:
        metadata["rows_processed"] = dg.MetadataValue.int(run.rows_processed)
    if run.physical_table:
        metadata["physical_table"] = run.physical_table
    if run.snapshot_version:
        metadata["snapshot_version"] = run.snapshot_version
    if not run.in_environment:
        metadata["in_environment"] = False
    if session.initial_plan_applied:
        metadata["initial_plan_applied"] = True
    return metadata


def _ts(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
