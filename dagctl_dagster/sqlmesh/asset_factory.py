"""SQLMesh project → one Dagster asset (one step) per model, audits as asset checks.

Example::

    import dagster as dg
    from dagctl_dagster import sqlmesh_assets

    defs = dg.Definitions(assets=sqlmesh_assets("path/to/sqlmesh_project", name="analytics"))

Each model is its own op, so the claim-aware executor can run models concurrently and
the UI shows each model's step, logs and status. The step executes the model's due
scheduling units through the run's shared
:class:`~dagctl_dagster.sqlmesh.session.SQLMeshRunSession`. What SQLMesh evaluates besides
models is shown too: an external model's audits are checks on its source asset, run by a
check step of their own; a standalone audit is a check on the first model it reads.
Embedded models are inlined into the models that read them, so they are no assets.

A step with nothing due records no materialization: an asset's last materialization is the
last time SQLMesh evaluated it (its data version changes only then).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.execution.framework import StepGrant
from dagctl_dagster.execution.not_run import NotRun
from dagctl_dagster.names import (
    FRAMEWORK_TAG,
    PROJECT_TAG,
    ROW_COUNT_KEY,
    SQLMESH_DURATION_KEY,
    SQLMESH_MODEL_TAG,
    NotRunReason,
)
from dagctl_dagster.pools import NO_POOL, ModelPool, model_pool
from dagctl_dagster.project import ProjectDefinitions
from dagctl_dagster.run_identity import JobKind, framework_resource_key, job_name, model_op_name
from dagctl_dagster.sqlmesh import FRAMEWORK, internals
from dagctl_dagster.sqlmesh.context import SQLMeshLocation, single_location, sqlmesh_location
from dagctl_dagster.sqlmesh.session import ModelOutcome, ModelStatus, SQLMeshRunSession
from dagctl_dagster.sqlmesh.translation_cache import ModelTranslation, ProjectTranslation, TranslationCache
from dagctl_dagster.sqlmesh.translator import (
    DagsterSQLMeshTranslator,
    audit_identity,
    model_asset_key,
)

logger = logging.getLogger(__name__)

_OP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def session_resource_key(location: SQLMeshLocation) -> str:
    """One session per location: every project of a multi-repository group shares it."""
    first_owner = location.owners[0][1] if location.is_group else location.project
    return framework_resource_key(first_owner, FRAMEWORK)


def sqlmesh_assets(
    project_dir: str | Path,
    *,
    name: str | None = None,
    gateway: str | None = None,
    environment: str = "prod",
    translator: DagsterSQLMeshTranslator | None = None,
) -> list[dg.AssetsDefinition | dg.AssetSpec | dg.AssetChecksDefinition]:
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
    return _build_assets(single_location(project_dir, project), project, translator, bind_resource=True)[0]


def build_sqlmesh_project(loaded: LoadedConfig, project: ProjectConfig) -> ProjectDefinitions:
    """The assets, model keys and session resource of one configured SQLMesh project."""
    location = sqlmesh_location(loaded, project)
    assets, model_keys = _build_assets(
        location, project, None, bind_resource=False, pool=model_pool(loaded.config, project)
    )
    return ProjectDefinitions(
        project=project,
        project_dir=loaded.project_dir(project),
        assets=assets,
        model_keys=model_keys,
        extra_checked_keys=_extra_checked_keys(assets),
        resources={session_resource_key(location): session_resource(location, project)},
    )


def sqlmesh_model_keys(loaded: LoadedConfig, project: ProjectConfig) -> list[dg.AssetKey]:
    """The keys of the project's models, from its translation (cached when its files did not
    change), without building Dagster assets."""
    location = sqlmesh_location(loaded, project)
    translator = DagsterSQLMeshTranslator(project.name)
    translation = _cached_translation(location, project, translator)
    return [dg.AssetKey(model.spec["key"].path) for model in translation.models if model.role == "model"]


def _extra_checked_keys(assets: list[Any]) -> list[dg.AssetKey]:
    return [
        key.asset_key
        for definition in assets
        if isinstance(definition, dg.AssetChecksDefinition)
        for key in definition.check_keys
    ]


def session_resource(location: SQLMeshLocation, project: ProjectConfig) -> dg.ResourceDefinition:
    """A per-run :class:`SQLMeshRunSession`, closed (DuckDB lock released) when the run ends."""

    @dg.resource(description=f"SQLMesh session of {', '.join(o for _, o in location.owners)} for one run")
    def _session(init_context: dg.InitResourceContext) -> Iterator[SQLMeshRunSession]:
        session = SQLMeshRunSession(location, project.environment, log=init_context.log)
        try:
            yield session
        finally:
            session.close()

    return _session


def _build_assets(
    location: SQLMeshLocation,
    project: ProjectConfig,
    translator: DagsterSQLMeshTranslator | None,
    *,
    bind_resource: bool,
    pool: ModelPool = NO_POOL,
) -> tuple[list[Any], list[dg.AssetKey]]:
    translator = translator or DagsterSQLMeshTranslator(project.name)
    if translator.project_name is None:
        translator.project_name = project.name
    translation = _cached_translation(location, project, translator)
    resource_key = session_resource_key(location)
    resource_defs = {resource_key: session_resource(location, project)} if bind_resource else None
    op_context = _OpContext(project, resource_key, resource_defs, pool)
    assets: list[Any] = []
    model_keys: list[dg.AssetKey] = []
    for model in translation.models:
        with warnings.catch_warnings():
            # `resource_defs` on multi_asset is beta; only the standalone factory binds it.
            warnings.simplefilter("ignore", dg.BetaWarning)
            if model.role == "standalone_audit":
                assets.append(_check_op(op_context, model))
                continue
            spec = dg.AssetSpec(**model.spec)
            if model.role == "external":
                assets.append(spec)
                if model.check_specs:
                    assets.append(_check_op(op_context, model))
                continue
            assets.append(_model_asset(op_context, model, spec))
        model_keys.append(spec.key)
    assets.extend(dg.AssetSpec(**fields) for fields in translation.undeclared_sources)
    return assets, model_keys


def _cached_translation(
    location: SQLMeshLocation, project: ProjectConfig, translator: DagsterSQLMeshTranslator
) -> ProjectTranslation:
    """The project's translation from the cache when its files are unchanged, else from a Context."""
    from dagctl_dagster.sqlmesh.context import load_context

    # A group's translation also depends on the other repositories' files, which the cache
    # key does not cover: groups always translate from a Context.
    cache = None if location.is_group else TranslationCache.for_project(location.paths[0], project, translator)
    translation = cache.load() if cache else None
    if cache is not None and translation is not None:
        logger.debug("project %s: assets from the translation cache %s", project.name, cache.path)
        return translation
    context = load_context(location)
    try:
        translation = _translate(context, translator, location)
    finally:
        context.close()
    if cache:
        cache.store(translation)
    return translation


def _translate(context: Any, translator: DagsterSQLMeshTranslator, location: SQLMeshLocation) -> ProjectTranslation:
    nodes = internals.project_nodes(context)
    models = nodes.models
    keys = {fqn: translator.get_asset_key(node.model) for fqn, node in models.items()}
    embedded = {fqn for fqn, node in models.items() if node.role == "embedded"}
    resolver = _DepResolver(models, keys, embedded)
    translated: list[ModelTranslation] = []
    for fqn, node in sorted(models.items()):
        if fqn in embedded or location.owner_of(node.project) != location.project:
            continue
        external = node.role == "external"
        deps = resolver.keys_of(node.depends_on)
        code_version = None if external else nodes.code_version(fqn)
        translated.append(
            ModelTranslation(
                fqn=fqn,
                name=node.name,
                external=external,
                role=node.role,
                spec=_spec_fields(node.model, keys[fqn], deps, translator, code_version),
                check_specs=[_check_spec_fields(c) for c in translator.get_check_specs(node.model, keys[fqn])],
                check_names=translator.get_check_names(node.model),
            )
        )
    for audit in nodes.standalone_audits:
        if location.owner_of(audit.project) == location.project:
            standalone = _standalone_audit(audit, resolver.keys_of(audit.depends_on), translator)
            if standalone is not None:
                translated.append(standalone)
    declared = set(keys.values())
    undeclared = [
        {"key": dep_key, "group_name": translator.get_group_name(None), "kinds": {"sqlmesh"}}
        for dep_key in dict.fromkeys(resolver.undeclared.values())
        if dep_key not in declared
    ]
    return ProjectTranslation(models=translated, undeclared_sources=undeclared)


class _DepResolver:
    """Asset keys of what a node reads: embedded models are looked through, undeclared tables noted."""

    def __init__(self, models: dict[str, Any], keys: dict[str, dg.AssetKey], embedded: set[str]):
        self.models = models
        self.keys = keys
        self.embedded = embedded
        self.undeclared: dict[str, dg.AssetKey] = {}

    def keys_of(self, depends_on: Sequence[str]) -> list[dg.AssetKey]:
        found: dict[dg.AssetKey, None] = {}
        stack = sorted(depends_on, reverse=True)
        seen: set[str] = set()
        while stack:
            fqn = stack.pop()
            if fqn in seen:
                continue
            seen.add(fqn)
            if fqn in self.embedded:
                stack.extend(sorted(self.models[fqn].depends_on, reverse=True))
            elif fqn in self.keys:
                found[self.keys[fqn]] = None
            else:
                # A table the project reads without declaring it in external_models.yaml.
                key = self.undeclared.setdefault(fqn, model_asset_key(fqn))
                found[key] = None
        return list(found)


def _standalone_audit(
    audit: Any, deps: list[dg.AssetKey], translator: DagsterSQLMeshTranslator
) -> ModelTranslation | None:
    if not deps:
        logger.warning("standalone audit %s reads no model; it is not shown as an asset check", audit.name)
        return None
    name = _OP_UNSAFE.sub("_", audit.name)
    check = {
        "name": name,
        "asset": deps[0],
        "description": f"SQLMesh standalone audit `{audit.name}`" + ("; blocking" if audit.blocking else ""),
        "additional_deps": deps[1:],
        # Dagster-blocking would hold back the asset's downstream, which SQLMesh does not.
        "blocking": False,
        "metadata": {},
        "automation_condition": None,
    }
    return ModelTranslation(
        fqn=audit.fqn,
        name=audit.name,
        external=False,
        role="standalone_audit",
        spec={"key": deps[0]},
        check_specs=[check],
        check_names={(audit.name, ""): name},
    )


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


class _OpContext:
    """What every op of one project shares: its config, session resource key and tags."""

    def __init__(
        self, project: ProjectConfig, resource_key: str, resource_defs: dict[str, Any] | None, pool: ModelPool
    ):
        self.project = project
        self.resource_key = resource_key
        self.resource_defs = resource_defs
        self.pool = pool

    def op_name(self, key_path: Sequence[str]) -> str:
        return model_op_name(self.project.name, key_path)

    def op_tags(self, fqn: str) -> dict[str, str]:
        return {PROJECT_TAG: self.project.name, FRAMEWORK_TAG: FRAMEWORK, SQLMESH_MODEL_TAG: fqn, **self.pool.op_tags}


def _model_asset(ops: _OpContext, model: ModelTranslation, spec: dg.AssetSpec) -> dg.AssetsDefinition:
    check_specs = [dg.AssetCheckSpec(**fields) for fields in model.check_specs]
    project = ops.project

    @dg.multi_asset(
        name=ops.op_name(spec.key.path),
        specs=[spec.replace_attributes(skippable=True)],
        check_specs=check_specs,
        required_resource_keys={ops.resource_key},
        resource_defs=ops.resource_defs,
        # Makes the check outputs optional: a run with nothing due runs no audit, and
        # reports no check result rather than an invented one.
        can_subset=True,
        op_tags=ops.op_tags(model.fqn),
        pool=ops.pool.name,
    )
    def _evaluate_model(context):  # an AssetExecutionContext (string annotations cannot be resolved here)
        session: SQLMeshRunSession = getattr(context.resources, ops.resource_key)
        grant = session.grant_of(context)
        outcome = session.evaluate_model(model.fqn, grant)
        checks = list(_check_results(spec.key, outcome, model.check_names))
        _raise_unless_done(outcome, f"model {model.name}", project, grant)
        if outcome.status is not ModelStatus.EVALUATED:
            context.log.info(f"SQLMesh model {model.name}: nothing due in environment '{project.environment}'.")
            yield from _unchanged_check_results(context, spec.key, check_specs, model.name)
            return
        yield dg.MaterializeResult(
            asset_key=spec.key,
            metadata=_materialization_metadata(outcome, session),
            check_results=checks,
            data_version=_data_version(outcome),
        )

    return _evaluate_model


def _check_op(ops: _OpContext, node: ModelTranslation) -> dg.AssetChecksDefinition:
    """A check step for audits SQLMesh evaluates outside a model: an external model's, a standalone one."""
    check_specs = [dg.AssetCheckSpec(**fields) for fields in node.check_specs]
    target = check_specs[0].asset_key
    project = ops.project

    @dg.multi_asset_check(
        name=ops.op_name([*target.path, "audit", node.name])
        if node.role == "standalone_audit"
        else ops.op_name([*target.path, "audits"]),
        specs=check_specs,
        required_resource_keys={ops.resource_key},
        resource_defs=ops.resource_defs,
        can_subset=True,
        op_tags=ops.op_tags(node.fqn),
        pool=ops.pool.name,
    )
    def _evaluate_audits(context):
        session: SQLMeshRunSession = getattr(context.resources, ops.resource_key)
        grant = session.grant_of(context)
        outcome = session.evaluate_model(node.fqn, grant)
        results = list(_check_results(target, outcome, node.check_names, standalone=node.role == "standalone_audit"))
        yield from results
        if outcome.status is ModelStatus.NOTHING_DUE and not results:
            yield from _unchanged_check_results(context, target, check_specs, node.name)
        what = f"standalone audit {node.name}" if node.role == "standalone_audit" else f"audits of {node.name}"
        _raise_unless_done(outcome, what, project, grant)

    return _evaluate_audits


def _raise_unless_done(outcome: ModelOutcome, name: str, project: ProjectConfig, grant: StepGrant) -> None:
    """A failure for anything but "evaluated" or "nothing due"; a model not evaluated for
    another reason than failing is recorded as not run, with that reason, before it fails."""
    if outcome.status is ModelStatus.FAILED:
        raise dg.Failure(
            description=f"SQLMesh {name} (project '{project.name}') failed: {outcome.error}",
            metadata={
                "model": name,
                "project": project.name,
                "error": outcome.error or "",
                "traceback": dg.MetadataValue.text(outcome.traceback or ""),
            },
        )
    not_run = _not_run_of(outcome, name, project)
    if not_run is not None:
        raise grant.not_run(not_run, model=name)


def _not_run_of(outcome: ModelOutcome, name: str, project: ProjectConfig) -> NotRun | None:
    if outcome.status is ModelStatus.NOT_IN_ENVIRONMENT:
        return NotRun(
            NotRunReason.NOT_IN_ENVIRONMENT,
            f"SQLMesh {name} is not in environment '{project.environment}': nothing was evaluated. "
            f"Apply a plan (job {job_name(project, JobKind.PLAN)}) to add it.",
        )
    if outcome.status is ModelStatus.NOT_PREPARED:
        return NotRun(NotRunReason.FRAMEWORK_NOT_READY, f"SQLMesh {name} was not evaluated: {outcome.error}")
    if outcome.status is ModelStatus.NOT_DEPLOYED:
        return NotRun(NotRunReason.NOT_DEPLOYED, outcome.error or f"SQLMesh {name} was not deployed")
    if outcome.status is ModelStatus.CLAIM_LOST:
        return NotRun(
            NotRunReason.CLAIM_LOST,
            f"SQLMesh {name}: this run lost its claim (released, or its lease expired while the run "
            "could not renew it), so it started no more of its intervals"
            + (f" after {len(outcome.intervals)} evaluated" if outcome.intervals else "")
            + "; another run may be evaluating them.",
        )
    if outcome.status is ModelStatus.STOPPED:
        return NotRun(
            NotRunReason.RUN_STOPPED,
            f"SQLMesh {name}: the run stopped before its remaining intervals were evaluated.",
        )
    return None


def _check_results(
    asset_key: dg.AssetKey,
    outcome: ModelOutcome,
    check_names: dict[tuple[str, str], str],
    *,
    standalone: bool = False,
) -> Iterator[dg.AssetCheckResult]:
    failed_rows: dict[str, int] = {}
    blocking: dict[str, bool] = {}
    for audit in outcome.audits:
        name = check_names.get(audit_identity(audit.name, {} if standalone else audit.args))
        if name is None:
            name = next((n for (a, _), n in check_names.items() if a == audit.name), None)
        if name is None:
            continue
        failed_rows[name] = failed_rows.get(name, 0) + audit.failed_rows
        blocking[name] = audit.blocking
    if not failed_rows and outcome.plan_intervals and outcome.plan_audits_failed == 0:
        # Evaluated by the run's first plan, whose audits all passed.
        failed_rows = dict.fromkeys(check_names.values(), 0)
        blocking = dict.fromkeys(check_names.values(), False)
    for name, rows in failed_rows.items():
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=name,
            passed=rows == 0,
            severity=dg.AssetCheckSeverity.ERROR if blocking[name] else dg.AssetCheckSeverity.WARN,
            metadata={"failed_rows": rows, "batches": len(outcome.intervals) or len(outcome.plan_intervals) or 1},
        )


def _unchanged_check_results(
    context: Any, asset_key: dg.AssetKey, check_specs: Sequence[dg.AssetCheckSpec], model_name: str
) -> Iterator[dg.AssetCheckResult]:
    """The audits' results on the table as it still is, for a step with nothing due.

    SQLMesh evaluated nothing, so it ran no audit and the table is the one the audits last
    ran on (for an external model's or a standalone audit's step: nothing was due for them). Dagster planned the checks when the run was created; with no result it would
    show them "skipped" as their latest state. Each check whose last result was on the
    asset's latest materialization reports that result again, saying so; any other check
    reports nothing.
    """
    from dagctl_dagster.execution.dagster_adapter import verdicts_on_latest_materialization

    keys = [dg.AssetCheckKey(asset_key, spec.name) for spec in check_specs]
    selected = context.selected_asset_check_keys
    verdicts = verdicts_on_latest_materialization(context.instance, [k for k in keys if k in selected])
    for key, verdict in verdicts.items():
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=key.name,
            passed=verdict.passed,
            severity=verdict.severity,
            metadata={**verdict.metadata, "audited_in_run": verdict.run_id, "nothing_due": True},
            description=(
                f"Nothing due: SQLMesh evaluated no interval of {model_name} and ran no audit. The table "
                f"is unchanged since this audit ran in run {verdict.run_id}; this is that result."
            ),
        )


def _data_version(outcome: ModelOutcome) -> dg.DataVersion:
    intervals = outcome.kept_intervals + outcome.plan_intervals + outcome.intervals
    latest_end = max(end for _, end in intervals)
    return dg.DataVersion(f"{outcome.snapshot_version}:{latest_end}:{len(intervals)}:{_now_ms()}")


def _now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


def _materialization_metadata(outcome: ModelOutcome, session: SQLMeshRunSession) -> dict[str, Any]:
    intervals = outcome.kept_intervals + outcome.plan_intervals + outcome.intervals
    metadata: dict[str, Any] = {
        "intervals": dg.MetadataValue.int(outcome.interval_count),
        "batches": dg.MetadataValue.int(len(outcome.plan_intervals) + len(outcome.intervals)),
        "interval_ranges": ", ".join(f"{_ts(s)} → {_ts(e)}" for s, e in intervals),
        "sqlmesh/environment": session.environment,
    }
    if outcome.plan_intervals or outcome.intervals:
        # What this run evaluated took this long; kept intervals were evaluated by another run.
        metadata[SQLMESH_DURATION_KEY] = dg.MetadataValue.float(round(outcome.duration_s, 4))
    if outcome.plan_intervals:
        metadata["evaluated_by_plan"] = dg.MetadataValue.bool(True)
    if outcome.kept_intervals:
        metadata["deployed_by_plan"] = dg.MetadataValue.bool(True)
        metadata["evaluated_earlier"] = dg.MetadataValue.text(
            "the first plan deployed intervals an earlier plan evaluated into this table (one that "
            "failed, or of another environment): "
            + ", ".join(f"{_ts(s)} → {_ts(e)}" for s, e in outcome.kept_intervals)
        )
    if outcome.rows_processed is not None:
        metadata["rows_processed"] = dg.MetadataValue.int(outcome.rows_processed)
    if outcome.row_count is not None:
        metadata[ROW_COUNT_KEY] = dg.MetadataValue.int(outcome.row_count)
    if outcome.cost is not None:
        metadata.update(outcome.cost.metadata())
    if outcome.physical_table:
        metadata["physical_table"] = outcome.physical_table
    if outcome.snapshot_version:
        metadata["snapshot_version"] = outcome.snapshot_version
    if session.initial_plan_applied:
        metadata["initial_plan_applied"] = True
    return metadata


def _ts(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
