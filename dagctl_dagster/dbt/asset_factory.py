"""dbt project → Dagster assets, on dagster-dbt's ``@dbt_assets``, ``DbtProject`` and ``DbtCliResource``.

Example::

    import dagster as dg
    from dagctl_dagster import dbt_assets

    defs = dg.Definitions(assets=[dbt_assets("path/to/dbt_project", name="marts", target="prod")])

Every model, seed and snapshot is an asset keyed ``[<project>, <name>]`` in group
``<project>``; dbt tests are asset checks. One step runs ``dbt build`` for the selected
models with ``--threads`` = ``MAX_CONCURRENT_MODELS`` (default 5) and the project's target,
in its own target directory (``target/<op>-<run id>-<uuid>``, made by dagster-dbt), so
concurrent runs never share artifacts; the newest ``KEEP_INVOCATION_DIRS`` of them are kept.
Each model's materialization reaches Dagster as dbt reports the node, with dagster-dbt's
``Execution Duration`` and what the warehouse says of the built relation: ``dagster/column_schema``
(names and types) and, unless a view, ``dagster/row_count`` (see :func:`run_dbt_build`);
a failed model fails the step with a message naming it and the models dbt skipped because of
it (metadata ``failed_models`` / ``skipped_models``, which run summaries and Slack read),
while the independent models it did build stay materialized.

How the manifest is prepared (development) and shipped (production images) is described
in :mod:`dagctl_dagster.dbt.manifest`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import dagster_dbt
from dagster import AssetExecutionContext
from dagster_dbt import DbtProject

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.cost import QueryCost
from dagctl_dagster.dbt.freshness import dbt_freshness
from dagctl_dagster.dbt.internals.measuring import Measurement
from dagctl_dagster.dbt.internals.resources import (
    cost_in_dbt,
    get_manifest_and_translator_from_dbt_assets,
    is_duckdb_adapter,
    measured_in_dbt,
    measurement_metadata,
    release_warehouse,
    with_measurements,
)
from dagctl_dagster.dbt.manifest import adapter_type, open_dbt_project, prepare_manifest
from dagctl_dagster.dbt.run_results import RunResults
from dagctl_dagster.dbt.session import DbtRunSession
from dagctl_dagster.dbt.translator import FRAMEWORK, DagctlDbtTranslator
from dagctl_dagster.errors import ProjectLoadError
from dagctl_dagster.execution.framework import StepGrant
from dagctl_dagster.execution.not_run import NotRun
from dagctl_dagster.names import (
    FAILED_MODELS_KEY,
    FRAMEWORK_TAG,
    PROJECT_TAG,
    ROW_COUNT_KEY,
    SKIPPED_MODELS_KEY,
    NotRunReason,
)
from dagctl_dagster.pools import NO_POOL, ModelPool, model_pool
from dagctl_dagster.project import ProjectDefinitions
from dagctl_dagster.run_identity import framework_resource_key, project_op_name
from dagctl_dagster.secrets import redact
from dagctl_dagster.settings import MAX_CONCURRENT_ENV, InvalidMaxConcurrent, parse_max_concurrent

# Full rebuilds: the new table holds exactly the rows the statement wrote.
_REBUILT_MATERIALIZATIONS = frozenset({"table", "seed"})
# dagster-dbt writes each invocation's artifacts to target/<op>-<run>-<uuid>; the newest are kept.
KEEP_INVOCATION_DIRS = 5
DUCKDB_ADAPTER = "duckdb"
# Measuring queries at once while dbt builds (dagster-dbt's own default is higher; one
# warehouse connection per thread, beside dbt's --threads).
MEASURING_THREADS = 2
_OP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_RESULT_ROWS = re.compile(r"^[A-Z]+ (\d+)$")


def resource_key(project_name: str) -> str:
    """The key of a project's ``DbtCliResource`` (unique per project within a code location)."""
    return framework_resource_key(project_name, FRAMEWORK)


def dbt_assets(
    project_dir: str | Path,
    *,
    name: str | None = None,
    target: str | None = None,
    profiles_dir: str | Path | None = None,
    translator: DagctlDbtTranslator | None = None,
) -> dg.AssetsDefinition:
    """The assets of every model, seed and snapshot of a dbt project, ready for ``dg.Definitions``.

    Args:
        project_dir: the dbt project (the directory holding ``dbt_project.yml``).
        name: the project name (asset key prefix, group, tags); defaults to the directory name.
        target: the ``profiles.yml`` target runs use; defaults to the profile's own default.
        profiles_dir: where ``profiles.yml`` lives; defaults to the project directory.
        translator: rules for keys, groups, metadata and checks.

    The project's ``DbtCliResource`` is bound to the returned assets, so ``Definitions``
    needs no resource for it.

    Raises:
        ProjectLoadError: the directory, ``dbt_project.yml`` or ``profiles.yml`` is missing, or
            ``dbt parse`` failed (the message names the file).
    """
    project_dir = Path(project_dir).resolve()
    project = ProjectConfig(
        name=name or _OP_UNSAFE.sub("_", project_dir.name),
        framework="dbt",
        path=str(project_dir),
        target=target,
        profiles_dir=str(profiles_dir) if profiles_dir else None,
    )
    built = _build(project, project_dir, Path(profiles_dir).resolve() if profiles_dir else None, translator)
    (bound,) = dg.with_resources([built.assets_def], {built.resource_key: built.resource})
    return bound


def build_dbt_project(
    loaded: LoadedConfig, project: ProjectConfig, upstream_keys: Container[dg.AssetKey] = ()
) -> ProjectDefinitions:
    """The assets, model keys and ``DbtCliResource`` of one configured dbt project.

    ``upstream_keys``: the SQLMesh models of the code location, which the project's sources
    may read (see :class:`DagctlDbtTranslator`).
    """
    project_dir = loaded.project_dir(project)
    profiles_dir = loaded.profiles_dir(project)
    translator = DagctlDbtTranslator(project.name, upstream_keys=upstream_keys, project_dir=project_dir)
    built = _build(project, project_dir, profiles_dir, translator, model_pool(loaded.config, project))
    model_keys = sorted(built.assets_def.keys, key=lambda key: key.to_user_string())
    return ProjectDefinitions(
        project=project,
        project_dir=project_dir,
        assets=[built.assets_def],
        model_keys=model_keys,
        resources={built.resource_key: built.resource},
        freshness=dbt_freshness(
            loaded.config, project, model_keys, _freshness_of_models(project.name, built.assets_def)
        ),
    )


def _freshness_of_models(
    project_name: str, assets_def: dg.AssetsDefinition
) -> dict[dg.AssetKey, tuple[str, int | None]]:
    """Each model's ``meta: {dagctl: {freshness: {cron: "...", grace_minutes: N}}}``."""
    from croniter import croniter

    manifest, translator = get_manifest_and_translator_from_dbt_assets(assets_def)
    found: dict[dg.AssetKey, tuple[str, int | None]] = {}
    for props in manifest.get("nodes", {}).values():
        if props.get("resource_type") != "model":
            continue
        meta = (props.get("config") or {}).get("meta") or props.get("meta") or {}
        freshness = (meta.get("dagctl") or {}).get("freshness") if isinstance(meta.get("dagctl"), dict) else None
        if freshness is None:
            continue
        where = f"model {props['name']} ({props.get('original_file_path')}): meta.dagctl.freshness"
        if (
            not isinstance(freshness, dict)
            or not isinstance(freshness.get("cron"), str)
            or not croniter.is_valid(freshness["cron"])
        ):
            raise ProjectLoadError(project_name, f"{where} needs a valid `cron` (e.g. '0 6 * * *')")
        grace = freshness.get("grace_minutes")
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool) or grace < 0):
            raise ProjectLoadError(project_name, f"{where}.grace_minutes must be a whole number of minutes >= 0")
        found[translator.get_asset_key(props)] = (freshness["cron"], grace)
    return found


def max_concurrent_models(environ: Mapping[str, str] | None = None) -> int:
    """``MAX_CONCURRENT_MODELS`` as a positive integer (default 5), the ``--threads`` of dbt."""
    raw = (os.environ if environ is None else environ).get(MAX_CONCURRENT_ENV, "").strip()
    try:
        return parse_max_concurrent(raw, source=f"env var {MAX_CONCURRENT_ENV}")
    except InvalidMaxConcurrent as exc:
        raise dg.Failure(description=f"{exc}; it sets dbt's --threads. Fix it and launch the run again.") from None


@dataclass(frozen=True)
class _BuiltProject:
    assets_def: dg.AssetsDefinition
    resource_key: str
    resource: DbtRunSession


def _build(
    project: ProjectConfig,
    project_dir: Path,
    profiles_dir: Path | None,
    translator: DagctlDbtTranslator | None,
    pool: ModelPool = NO_POOL,
) -> _BuiltProject:
    dbt_project = open_dbt_project(project.name, project_dir, target=project.target, profiles_dir=profiles_dir)
    manifest_path = prepare_manifest(project.name, dbt_project)
    key = resource_key(project.name)
    try:
        assets_def = _define_assets(project.name, dbt_project, manifest_path, translator, key, pool)
    except (dg.DagsterError, ValueError, KeyError) as exc:
        raise ProjectLoadError(project.name, f"{type(exc).__name__}: {exc}", manifest_path) from exc
    on_duckdb = adapter_type(manifest_path) == DUCKDB_ADAPTER
    return _BuiltProject(
        assets_def,
        key,
        DbtRunSession.of_project(
            project.name, dbt_project, measured_by_dbt=on_duckdb, pool_limit=pool.limit if pool.name else None
        ),
    )


def _define_assets(
    project_name: str,
    dbt_project: DbtProject,
    manifest_path: Path,
    translator: DagctlDbtTranslator | None,
    dbt_resource_key: str,
    pool: ModelPool,
) -> dg.AssetsDefinition:
    translator = translator or DagctlDbtTranslator(project_name, project_dir=dbt_project.project_dir)

    @dagster_dbt.dbt_assets(
        manifest=manifest_path,
        # No `project=`: it only adds code references, and puts the DbtProject object on
        # every asset as metadata the UI shows as "dagster_dbt/project (unserializable)".
        name=project_op_name(project_name, "dbt_build"),
        dagster_dbt_translator=translator,
        op_tags={PROJECT_TAG: project_name, FRAMEWORK_TAG: FRAMEWORK, **pool.op_tags},
        required_resource_keys={dbt_resource_key},
        pool=pool.name,
    )
    def _dbt_build(context) -> Iterator[Any]:  # no hint: dagster cannot resolve postponed ones here
        dbt: DbtRunSession = getattr(context.resources, dbt_resource_key)
        yield from run_dbt_build(context, dbt, project_name)

    return _dbt_build


def run_dbt_build(context: AssetExecutionContext, dbt: DbtRunSession, project_name: str) -> Iterator[Any]:
    """``dbt build`` of the selected nodes; each node's events reach Dagster as dbt reports it.

    ``--threads`` is the run's bound on concurrent steps (the executor's ``max_concurrent``,
    else ``MAX_CONCURRENT_MODELS``); the models the run leaves out, and their downstream, are
    excluded (see :mod:`dagctl_dagster.dbt.session`). Terminating the run stops dbt, and the
    step fails as stopped.

    dagster-dbt turns each structured log line of dbt into outputs and check results as it
    arrives. Each built node is measured (columns with the warehouse's types; ``count(*)``
    unless a view): from the run worker while dbt goes on, except on DuckDB, whose file no
    second process may open while dbt holds it (dagster-dbt would hold every event back until
    dbt exits); there dbt's own process measures, ``dagctl-dbt``, and logs it just before the
    node's result. After dbt exits, ``run_results.json`` says which nodes failed and which
    were skipped because of them.
    """
    grant = dbt.grant_of(context)
    threads = min(n for n in (dbt.max_concurrent or max_concurrent_models(), dbt.pool_limit) if n)
    _raise_unless_startable(dbt, grant, project_name)
    working_dir = os.getcwd()
    args = ["build", "--threads", str(threads), *_exclusion_args(context, grant.left_out)]
    invocation = dbt.cli(args, context=context, raise_on_error=False)
    # dagster-dbt's row-count queries each `pushd` into the project; interleaved, they can
    # leave the whole run worker in it; chdir back regardless.
    with dbt.stoppable(invocation) as stop:
        try:
            yield from _node_events(context, invocation)
        finally:
            release_warehouse(invocation.adapter)
            os.chdir(working_dir)
    try:
        if stop.stopped:
            raise grant.not_run(
                NotRun(
                    NotRunReason.RUN_STOPPED,
                    f"dbt build of project '{project_name}': the run was terminated, so dbt was stopped "
                    "before it finished; the models it had not reported built were not built.",
                )
            )
        _raise_for_outcome(context, invocation, project_name)
    finally:
        prune_invocation_dirs(invocation.target_path)


def _raise_unless_startable(dbt: DbtRunSession, grant: StepGrant, project_name: str) -> None:
    """No dbt process for a run that is stopping or no longer holds the build's claims."""
    if dbt.stopping:
        raise grant.not_run(
            NotRun(NotRunReason.RUN_STOPPED, f"dbt build of project '{project_name}': the run was terminated first.")
        )
    if not grant.holds_claims():
        raise grant.not_run(
            NotRun(
                NotRunReason.CLAIM_LOST,
                f"dbt build of project '{project_name}': this run no longer holds the claims of its models "
                "(released, or their leases expired while the run could not renew them); dbt did not start.",
            )
        )


def _exclusion_args(context: AssetExecutionContext, left_out: Mapping[str, str]) -> list[str]:
    """``--exclude m+ ...`` for the models the executor leaves out of this run (claimed by
    another live run, or paused): dbt then builds neither them nor anything downstream."""
    if not left_out:
        return []
    manifest, translator = get_manifest_and_translator_from_dbt_assets(context.assets_def)
    names = sorted(
        props["name"]
        for props in manifest.get("nodes", {}).values()
        if props.get("resource_type") in ("model", "seed", "snapshot")
        and translator.get_asset_key(props).to_user_string() in left_out
    )
    for name in names:
        context.log.warning(f"dbt build leaves out {name} and its downstream models")
    return ["--exclude", " ".join(f"{name}+" for name in names)] if names else []


def _node_events(context: AssetExecutionContext, invocation: Any) -> Iterator[Any]:
    manifest = invocation.manifest
    translator = invocation.dagster_dbt_translator

    def events() -> Iterator[Any]:
        for raw in invocation.stream_raw_events():
            measured = measured_in_dbt(raw)
            cost = cost_in_dbt(raw)
            for event in raw.to_default_asset_events(
                manifest=manifest,
                dagster_dbt_translator=translator,
                context=context,
                target_path=invocation.target_path,
                project=invocation.project,
            ):
                yield _with_cost(_with_measurement(_with_reported_rows(event, raw.raw_event, manifest), measured), cost)

    if invocation.adapter is None or is_duckdb_adapter(invocation.adapter):  # see run_dbt_build
        yield from events()
    else:
        yield from with_measurements(events(), invocation, threads=MEASURING_THREADS)


def _raise_for_outcome(context: AssetExecutionContext, invocation: Any, project_name: str) -> None:
    results, run_results_path = RunResults.of_invocation(invocation, f"dbt build of project '{project_name}'")
    manifest = invocation.manifest
    outcome = results.outcome(manifest)
    for node in outcome.failed:
        context.log.error(redact(f"dbt {node.resource_type} {node.name} {node.status}: {node.message}"))
    for unique_id, causes in sorted(outcome.skipped_because.items()):
        because = f": upstream {', '.join(c.split('.')[2] for c in causes)} failed" if causes else ""
        context.log.warning(f"dbt skipped {unique_id.split('.')[0]} {unique_id.split('.')[2]}{because}")
    if not outcome.succeeded:
        model_key = _model_key_of(manifest, invocation.dagster_dbt_translator)
        raise dg.Failure(
            description=redact(outcome.failure_message(project_name)),
            metadata={
                FAILED_MODELS_KEY: dg.MetadataValue.json(sorted({model_key(uid) for uid in outcome.failed_models})),
                SKIPPED_MODELS_KEY: dg.MetadataValue.json(sorted(model_key(uid) for uid in outcome.skipped_because)),
                "run_results": dg.MetadataValue.path(str(run_results_path)),
            },
        )
    error = invocation.get_error()
    if error is not None:
        # `from None`: the original error's text may hold secret values.
        raise dg.Failure(description=redact(str(error))) from None


def _model_key_of(manifest: Mapping[str, Any], translator: Any):
    def model_key(unique_id: str) -> str:
        props = manifest.get("nodes", {}).get(unique_id)
        return translator.get_asset_key(props).to_user_string() if props else unique_id.split(".")[-1]

    return model_key


def prune_invocation_dirs(target_path: Path, keep: int = KEEP_INVOCATION_DIRS) -> None:
    """Keep the newest ``keep`` per-invocation directories of this op; dagster-dbt makes one per run."""
    op_prefix = target_path.name.rsplit("-", 2)[0]
    siblings = [p for p in target_path.parent.glob(f"{op_prefix}-*-*") if p.is_dir()]
    siblings.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in siblings[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


def _with_measurement(event: Any, measured: Measurement | None) -> Any:
    """The columns and rows dbt's process measured for the node (``dagctl-dbt``, DuckDB)."""
    if measured is None or not isinstance(event, (dg.Output, dg.AssetMaterialization)):
        return event
    return event.with_metadata({**event.metadata, **measurement_metadata(measured)})


def _with_cost(event: Any, cost: QueryCost | None) -> Any:
    """The node's statements and their time, as dbt's process counted them (``dagctl-dbt``)."""
    if cost is None or not isinstance(event, (dg.Output, dg.AssetMaterialization)):
        return event
    return event.with_metadata({**event.metadata, **cost.metadata()})


def _with_reported_rows(event: Any, raw_event: Mapping[str, Any], manifest: Mapping[str, Any]) -> Any:
    """``dagster/row_count`` from dbt's own report when a full rebuild (table, seed) states its rows."""
    if not isinstance(event, (dg.Output, dg.AssetMaterialization)) or ROW_COUNT_KEY in event.metadata:
        return event
    data = raw_event.get("data", {})
    unique_id = data.get("node_info", {}).get("unique_id")
    materialized = manifest.get("nodes", {}).get(unique_id, {}).get("config", {}).get("materialized")
    rows = _reported_rows(data)
    if materialized not in _REBUILT_MATERIALIZATIONS or rows is None:
        return event
    return event.with_metadata({**event.metadata, ROW_COUNT_KEY: dg.MetadataValue.int(rows)})


def _reported_rows(data: Mapping[str, Any]) -> int | None:
    """The adapter response's rows, or the count in dbt's result line (``INSERT 50``, ``SELECT 200``)."""
    rows = ((data.get("run_result") or {}).get("adapter_response") or {}).get("rows_affected")
    if isinstance(rows, (int, float)) and rows >= 0:
        return int(rows)
    for text in (data.get("result_message"), data.get("status")):
        match = _RESULT_ROWS.match(str(text or ""))
        if match:
            return int(match.group(1))
    return None
