"""SQLMesh housekeeping jobs: `<project>_janitor` and `<project>_state_backup`.

The janitor drops expired environments and snapshots (``sqlmesh janitor``). The state
backup writes ``sqlmesh state export`` to
``<state_backup.directory>/<project>-state-<UTC timestamp>.json`` and prunes this
project's backups older than ``state_backup.keep_days``. Restore one with
``sqlmesh state import -i FILE`` (or :func:`restore_state`).

Usable without Dagster::

    with open_context(loaded, project) as context:
        report = run_janitor(context)
        backup = backup_state(context, Path(".dagctl/state-backups"), "analytics", keep_days=7)
"""

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from dagctl_dagster.config import DagctlConfig, LoadedConfig, ProjectConfig
from dagctl_dagster.project import single_op_job
from dagctl_dagster.run_identity import JobKind

BACKUP_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass
class JanitorReport:
    """What one janitor pass removed."""

    expired_environments: list[str] = field(default_factory=list)
    cleaned_objects: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def metadata(self) -> dict[str, Any]:
        return {
            "expired_environments": dg.MetadataValue.json(self.expired_environments),
            "cleaned_objects": dg.MetadataValue.json(self.cleaned_objects),
            "cleaned_object_count": dg.MetadataValue.int(len(self.cleaned_objects)),
            "duration_s": dg.MetadataValue.float(round(self.duration_s, 3)),
        }


@dataclass
class StateBackup:
    path: Path
    size_bytes: int
    environments: list[str]
    snapshot_count: int
    pruned: list[Path] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "path": dg.MetadataValue.path(str(self.path)),
            "size_bytes": dg.MetadataValue.int(self.size_bytes),
            "environments": dg.MetadataValue.json(self.environments),
            "snapshot_count": dg.MetadataValue.int(self.snapshot_count),
            "pruned": dg.MetadataValue.json([p.name for p in self.pruned]),
        }


def run_janitor(context: Any) -> JanitorReport:
    """``context.run_janitor(ignore_ttl=False)``, recording the objects it dropped."""
    from sqlmesh.utils.date import now_timestamp

    started = time.perf_counter()
    expired = [env.name for env in context.state_sync.get_expired_environments(current_ts=now_timestamp())]
    cleaned: list[str] = []
    console = context.console
    original = console.update_cleanup_progress
    console.update_cleanup_progress = cleaned.append  # the console reports each dropped object
    try:
        context.run_janitor(ignore_ttl=False)
    finally:
        console.update_cleanup_progress = original
    return JanitorReport(
        expired_environments=sorted(expired), cleaned_objects=cleaned, duration_s=time.perf_counter() - started
    )


def backup_file_name(project_name: str, at: datetime) -> str:
    return f"{project_name}-state-{at.astimezone(UTC).strftime(BACKUP_TIMESTAMP_FORMAT)}.json"


def backup_state(
    context: Any, directory: Path, project_name: str, *, keep_days: int, now: datetime | None = None
) -> StateBackup:
    """Export the project's SQLMesh state to a timestamped file and prune old backups."""
    import json

    now = now or datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / backup_file_name(project_name, now)
    context.export_state(path, confirm=True)  # the quiet console has no prompt; True means "go ahead"
    document = json.loads(path.read_text())
    pruned = prune_backups(directory, project_name, keep_days=keep_days, now=now)
    return StateBackup(
        path=path,
        size_bytes=path.stat().st_size,
        environments=sorted(document.get("environments", {})),
        snapshot_count=len(document.get("snapshots", [])),
        pruned=pruned,
    )


def prune_backups(directory: Path, project_name: str, *, keep_days: int, now: datetime) -> list[Path]:
    """Delete this project's backups taken more than ``keep_days`` before ``now``; returns them."""
    pattern = re.compile(rf"^{re.escape(project_name)}-state-(\d{{8}}T\d{{6}}Z)\.json$")
    cutoff = now - timedelta(days=keep_days)
    pruned: list[Path] = []
    for candidate in sorted(directory.iterdir()):
        match = pattern.match(candidate.name)
        if not match:
            continue
        taken = datetime.strptime(match.group(1), BACKUP_TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        if taken < cutoff:
            candidate.unlink()
            pruned.append(candidate)
    return pruned


def restore_state(context: Any, backup: Path, *, clear: bool = True) -> None:
    """``sqlmesh state import -i BACKUP`` on the context's state database."""
    context.import_state(backup, clear=clear, confirm=True)


def backup_directory(loaded: LoadedConfig, project: ProjectConfig) -> Path:
    """``state_backup.directory``, relative to the repository root unless absolute."""
    directory = Path(project.state_backup.directory)
    return directory if directory.is_absolute() else loaded.root / directory


def build_janitor_job(loaded: LoadedConfig, project: ProjectConfig) -> dg.JobDefinition:
    """The `<project>_janitor` op job."""
    from dagctl_dagster.sqlmesh.context import open_context

    def janitor_op(context: dg.OpExecutionContext) -> dg.Output[int]:
        with open_context(loaded, project) as sqlmesh:
            report = run_janitor(sqlmesh)
        context.log.info(
            f"Janitor of '{project.name}': {len(report.expired_environments)} expired environment(s), "
            f"{len(report.cleaned_objects)} object(s) dropped."
        )
        return dg.Output(len(report.cleaned_objects), metadata=report.metadata())

    return single_op_job(
        JobKind.JANITOR, janitor_op, loaded, project, "Removes expired SQLMesh environments and snapshots."
    )


def build_state_backup_job(loaded: LoadedConfig, project: ProjectConfig) -> dg.JobDefinition:
    """The `<project>_state_backup` op job."""
    from dagctl_dagster.sqlmesh.context import open_context

    directory = backup_directory(loaded, project)

    def state_backup_op(context: dg.OpExecutionContext) -> dg.Output[str]:
        with open_context(loaded, project) as sqlmesh:
            backup = backup_state(sqlmesh, directory, project.name, keep_days=project.state_backup.keep_days)
        context.log.info(
            f"State of '{project.name}' exported to {backup.path} ({backup.snapshot_count} snapshots); "
            f"pruned {len(backup.pruned)} old backup(s)."
        )
        return dg.Output(str(backup.path), metadata=backup.metadata())

    return single_op_job(
        JobKind.STATE_BACKUP, state_backup_op, loaded, project, f"Exports SQLMesh state to {directory}."
    )


def build_maintenance_schedules(config: DagctlConfig, project: ProjectConfig) -> list[dg.ScheduleDefinition]:
    """The janitor (weekly by default) and state-backup (daily) schedules of a SQLMesh project."""
    from dagctl_dagster.automation.schedules import maintenance_schedule

    schedules = []
    if project.janitor_schedule:
        schedules.append(maintenance_schedule(config, project, JobKind.JANITOR, project.janitor_schedule))
    if project.state_backup.enabled:
        schedules.append(maintenance_schedule(config, project, JobKind.STATE_BACKUP, project.state_backup.schedule))
    return schedules
