"""Pausing a model from the CLI or from Dagster: names, the job, and what the asset shows.

A pause is stored in the claim store's database (:mod:`.pauses`); runs read it. So that the
asset's page shows it too, every pause and resume also records an ``AssetObservation`` on
the model's asset with ``dagctl/paused`` (true/false), the reason, who and when; the
latest observation is what the asset page shows.

The Dagster way is the job ``dagctl_models_pause`` (Launchpad), with run config::

    ops:
      pause_or_resume_model:
        config: {project: shop, model: demo.orders, action: pause, reason: "source broken", by: alice}
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at runtime.
from typing import TYPE_CHECKING, Literal

import dagster as dg

from dagctl_dagster.names import PAUSED_BY_KEY, PAUSED_KEY, PAUSED_REASON_KEY, PAUSED_SINCE_KEY
from dagctl_dagster.run_identity import PAUSE_JOB, PAUSE_OP

if TYPE_CHECKING:
    from dagctl_dagster.config import LoadedConfig, ProjectConfig
    from dagctl_dagster.execution.pauses import Pause


class UnknownModelName(ValueError):
    """A model name that cannot name a model of the project."""


def model_key(project: "ProjectConfig", model: str) -> str:
    """The asset key (as ``a/b``) of ``model`` of ``project``: an asset key as given, else the
    model name as the project's framework keys it."""
    from dagctl_dagster.frameworks import plugin_for

    model = model.strip()
    if not model or any(part == "" for part in model.replace("/", ".").split(".")):
        raise UnknownModelName(
            f"'{model}' is not a model name of project '{project.name}': give the model name "
            "(SQLMesh: schema.name; dbt: the model's name) or the asset key (a/b)"
        )
    if "/" in model:
        return model
    try:
        return plugin_for(project.framework).model_key(project, model)
    except ValueError as exc:
        raise UnknownModelName(str(exc)) from None


def record_on_asset(instance: dg.DagsterInstance, key: str, pause: "Pause | None") -> None:
    """An observation on the model's asset saying whether it is paused now."""
    metadata: dict[str, dg.RawMetadataValue] = {PAUSED_KEY: pause is not None}
    if pause is not None:
        metadata |= {
            PAUSED_REASON_KEY: pause.reason,
            PAUSED_BY_KEY: pause.paused_by,
            PAUSED_SINCE_KEY: dg.MetadataValue.timestamp(pause.paused_at),
        }
    instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=dg.AssetKey.from_user_string(key),
            description=f"{'Paused: ' + pause.describe() if pause else 'Resumed'}",
            metadata=metadata,
        )
    )


class PauseRequest(dg.Config):
    project: str
    model: str
    action: Literal["pause", "resume"] = "pause"
    reason: str = ""
    by: str = ""


def build_pause_job(loaded: "LoadedConfig") -> dg.JobDefinition:
    """``dagctl_models_pause``: pause or resume one model from the Launchpad."""
    projects = {p.name: p for p in loaded.projects}

    @dg.op(name=PAUSE_OP)
    def _pause_op(context: dg.OpExecutionContext, config: PauseRequest) -> None:
        from dagctl_dagster.execution.claims import ClaimStore
        from dagctl_dagster.execution.pauses import PauseStore

        project = projects.get(config.project)
        if project is None:
            raise dg.Failure(f"no project named '{config.project}' (known: {', '.join(sorted(projects))})")
        try:
            key = model_key(project, config.model)
        except UnknownModelName as exc:
            raise dg.Failure(str(exc)) from None
        store = ClaimStore.from_environment(instance=context.instance)
        try:
            pauses = PauseStore.of(store)
            if config.action == "pause":
                pause = pauses.pause(
                    key, project=project.name, reason=config.reason, by=config.by or _run_user(context)
                )
                context.log.info(f"{key} {pause.describe()}")
            else:
                pause = None
                context.log.info(f"{key} resumed" if pauses.resume(key) else f"{key} was not paused")
        except ValueError as exc:
            raise dg.Failure(str(exc)) from None
        finally:
            store.dispose()
        record_on_asset(context.instance, key, pause)

    @dg.job(
        name=PAUSE_JOB,
        description="Pause or resume one model: runs skip a paused model and its downstream.",
        executor_def=dg.in_process_executor,
    )
    def _job():
        _pause_op()

    return _job


def _run_user(context: dg.OpExecutionContext) -> str:
    return context.run.tags.get("user") or context.run.tags.get("dagster/user") or "dagster"
