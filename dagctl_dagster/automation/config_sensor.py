"""`dagctl_config_version_sensor`: deploys every project when `.dagctl/config.yaml` changes its version.

The sensor re-reads the config file the code location was loaded from on every tick
(with git-sync, the file inside the synced checkout). Its cursor is
``{"version": <last deployed version>, "commit": <git HEAD deployed then>}``:

- first tick: the current version and commit become the baseline; nothing is deployed;
- same version: nothing to do;
- a file that does not parse or validate: a skip naming the error; the cursor keeps the
  last good version, so the deploy happens once the file is fixed;
- a new version: one run per project, with ``run_key`` ``deploy:<project>:<version>``
  (Dagster launches a run key once per sensor, also across daemon restarts):

  - SQLMesh: ``<project>_plan`` applied to the project's environment (a dry run for a
    ``protected: true`` project; a person applies it with ``approved: true``);
  - dbt: ``<project>_deploy`` with the scope of the git diff since the last deployed commit
    (:mod:`dagctl_dagster.dbt.deploy_scope`); a diff that touches no dbt node deploys nothing.

With ``DAGSTER_WEBSERVER_URL`` set, the sensor first asks the webserver to reload this code
location so new models appear in the UI. ``DAGCTL_SENSOR_INTERVAL_SECONDS`` (default 30)
sets how often it ticks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import dagster as dg

from dagctl_dagster.config import ConfigError, load_config
from dagctl_dagster.frameworks import Deploy, plugin_for
from dagctl_dagster.git import head_commit
from dagctl_dagster.locations import LocationSelection
from dagctl_dagster.project import CodeLocationContext
from dagctl_dagster.run_identity import CONFIG_VERSION_SENSOR
from dagctl_dagster.settings import sensor_default_status

INTERVAL_ENV = "DAGCTL_SENSOR_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 30
WEBSERVER_URL_ENV = "DAGSTER_WEBSERVER_URL"


@dataclass(frozen=True)
class DeployCursor:
    """What the sensor last deployed."""

    version: str | None = None
    commit: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> DeployCursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return cls(version=raw)  # a bare version string, e.g. set by hand in the UI
        return cls(version=_opt_str(data.get("version")), commit=data.get("commit"))

    def serialize(self) -> str:
        return json.dumps({"version": self.version, "commit": self.commit}, sort_keys=True)


def sensor_interval_seconds() -> int:
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_SECONDS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(INTERVAL_ENV, f"must be a positive number of seconds (got {raw!r})")
    return int(raw)


def build_config_version_sensor(location: CodeLocationContext, jobs: Sequence[dg.JobDefinition]) -> dg.SensorDefinition:
    """The deploy sensor of a code location; ``jobs`` are the plan and deploy jobs it launches."""
    known_projects = {project_defs.name for project_defs in location.projects}
    config_path = location.loaded.path
    selection = location.selection

    @dg.sensor(
        name=CONFIG_VERSION_SENSOR,
        jobs=list(jobs),
        minimum_interval_seconds=sensor_interval_seconds(),
        default_status=sensor_default_status(),
        description=f"Deploys every project when the version in {config_path} changes.",
    )
    def _config_version_sensor(context: dg.SensorEvaluationContext):
        return evaluate_config_version(context, config_path, known_projects, selection)

    return _config_version_sensor


def evaluate_config_version(
    context: dg.SensorEvaluationContext,
    config_path,
    known_projects: set[str],
    selection: LocationSelection | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """One tick of the deploy sensor (see the module docstring for the rules)."""
    cursor = DeployCursor.parse(context.cursor)
    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        kept = f"version {cursor.version} stays deployed" if cursor.version else "no version is deployed yet"
        return dg.SkipReason(f"{exc} — nothing deployed; {kept} until the file is fixed")
    commit = head_commit(loaded.root)
    if cursor.version is None:
        return dg.SensorResult(
            skip_reason=f"recorded version {loaded.version} (commit {_short(commit)}) as the deployed "
            "baseline; the next version change deploys",
            cursor=DeployCursor(loaded.version, commit).serialize(),
        )
    if loaded.version == cursor.version:
        return dg.SkipReason(f"version {loaded.version} is already deployed")

    reload_message = request_location_reload(context)
    if reload_message:
        context.log.info(reload_message)
    deploy = Deploy(loaded=loaded, base_commit=cursor.commit, commit=commit, log=context.log)
    run_requests: list[dg.RunRequest] = []
    for project in loaded.projects:
        if selection is not None and not selection.serves(project):
            continue  # another code location deploys it
        if project.name not in known_projects:
            context.log.warning(
                f"project '{project.name}' is new in version {loaded.version}; its jobs appear once the "
                "code location reloads, and its first scheduled run applies it"
            )
            continue
        request = plugin_for(project.framework).deploy_request(project, deploy)
        if request is not None:
            run_requests.append(request)
    return dg.SensorResult(
        run_requests=run_requests,
        cursor=DeployCursor(loaded.version, commit).serialize(),
    )


def request_location_reload(context: dg.SensorEvaluationContext) -> str | None:
    """Ask the webserver at ``$DAGSTER_WEBSERVER_URL`` to reload this code location.

    Returns what happened (for the tick's log), or None when no webserver is configured.
    A failed reload does not stop the deploy: the runs load the code afresh anyway.
    """
    url = os.environ.get(WEBSERVER_URL_ENV, "").strip()
    if not url:
        return None
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError, ReloadRepositoryLocationStatus

    origin = context.code_location_origin
    location_name = origin.location_name if origin is not None else os.environ.get("DAGCTL_LOCATION_NAME", "dagctl")
    parsed = urlparse(url if "://" in url else f"http://{url}")
    client = DagsterGraphQLClient(
        parsed.hostname or "localhost",
        port_number=parsed.port,
        use_https=parsed.scheme == "https",
        path_prefix=parsed.path.rstrip("/"),
        timeout=60,
    )
    try:
        info = client.reload_repository_location(location_name)
    except (DagsterGraphQLClientError, OSError) as exc:
        return f"could not ask {url} to reload code location '{location_name}': {exc}"
    if info.status == ReloadRepositoryLocationStatus.SUCCESS:
        return f"asked {url} to reload code location '{location_name}': reloaded"
    return f"asked {url} to reload code location '{location_name}': {info.failure_type}: {info.message}"


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "none: not a git checkout"


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
