"""Which of dagctl-dagster's extras a deployment needs, and one clear error when one is missing.

The core (``pip install dagctl-dagster``) serves SQLMesh projects on DuckDB. The rest comes
with extras (``pyproject.toml``, ``docs/install.md``); what a config asks for is checked
when it loads, so a missing extra is one line naming the field and the install command::

    error: .dagctl/config.yaml: alerts.failure_channel: Slack alerting needs the `slack` extra,
    which is not installed: pip install 'dagctl-dagster[slack]'
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dagctl_dagster.config import AlertsConfig, AlertsOverride, ConfigError, LoadedConfig, ProjectConfig

# An extra counts as installed when its modules import; one module each is enough to tell.
EXTRA_MODULES: dict[str, str] = {
    "dbt": "dagster_dbt",
    "duckdb": "dbt.adapters.duckdb",
    "postgres": "psycopg2",
    "k8s": "dagster_k8s",
    "slack": "dagster_slack",
    "dev-ui": "dagster_webserver",
}
# dbt adapter types an extra brings (the adapter's own package otherwise: dbt-<type>).
DBT_ADAPTER_EXTRAS = {"duckdb": "duckdb"}
ALERT_CHANNELS = ("failure_channel", "page_channel", "warning_channel", "info_channel")
CLAIMS_URL_ENV = "DAGCTL_CLAIMS_URL"


class MissingExtra(ImportError):
    """A part of dagctl-dagster was used whose extra is not installed."""


@dataclass(frozen=True)
class Need:
    """``what`` (at ``field`` of the config) needs ``module``, which ``package`` installs."""

    field: str
    what: str
    module: str
    package: str  # a requirement for pip: 'dagctl-dagster[slack]', dbt-snowflake

    def message(self) -> str:
        return f"{self.what} needs {_described(self.package)}, which is not installed: pip install {self.package}"


def extra_requirement(extra: str) -> str:
    return f"'dagctl-dagster[{extra}]'"


def _described(package: str) -> str:
    prefix = "'dagctl-dagster["
    if package.startswith(prefix):
        return f"the `{package[len(prefix) : -2]}` extra"
    return package


def is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (``dbt`` of ``dbt.adapters.duckdb``) is missing
        return False


K8S_USERS = "dagctl_dagster.k8s (DagctlK8sRunLauncher, `dagctl-dagster k8s`)"


def missing_extra(extra: str, needed_by: str) -> MissingExtra:
    """The error for ``needed_by`` (what the user tried) without ``extra``."""
    package = extra_requirement(extra)
    return MissingExtra(f"{needed_by} needs {_described(package)}, which is not installed: pip install {package}")


def check_config_extras(loaded: LoadedConfig) -> None:
    """Raise a :class:`ConfigError` for the first thing ``loaded`` asks for that is not installed."""
    for need in config_needs(loaded):
        if not is_installed(need.module):
            raise ConfigError(loaded.path, need.message(), field=need.field)


def config_needs(loaded: LoadedConfig) -> list[Need]:
    """Every installed part the config (and ``$DAGCTL_CLAIMS_URL``) relies on beyond the core."""
    needs = _alert_needs(loaded)
    for index, project in enumerate(loaded.projects):
        if project.framework == "dbt":
            needs.extend(_dbt_needs(loaded, project, index))
        else:
            needs.extend(_sqlmesh_needs(loaded, project, index))
    if os.environ.get(CLAIMS_URL_ENV, "").startswith("postgres"):
        needs.append(_extra_need(f"${CLAIMS_URL_ENV}", "a PostgreSQL claim store", "postgres", "psycopg2"))
    return needs


def _extra_need(field: str, what: str, extra: str, module: str | None = None) -> Need:
    return Need(field, what, module or EXTRA_MODULES[extra], extra_requirement(extra))


def _alert_needs(loaded: LoadedConfig) -> list[Need]:
    blocks: list[tuple[str, AlertsConfig | AlertsOverride]] = [("alerts", loaded.config.alerts)]
    blocks += [(f"projects[{i}].alerts", p.alerts) for i, p in enumerate(loaded.projects)]
    return [
        _extra_need(f"{prefix}.{channel}", "Slack alerting", "slack")
        for prefix, block in blocks
        for channel in ALERT_CHANNELS
        if getattr(block, channel)
    ][:1]


def _dbt_needs(loaded: LoadedConfig, project: ProjectConfig, index: int) -> list[Need]:
    needs = [_extra_need(f"projects[{index}].framework", f"dbt project '{project.name}'", "dbt")]
    adapter = dbt_adapter_type(loaded, project)
    if adapter is None:
        return needs
    field = f"projects[{index}].target"
    what = f"dbt project '{project.name}' (target type `{adapter}`)"
    extra = DBT_ADAPTER_EXTRAS.get(adapter)
    module = f"dbt.adapters.{adapter}"
    if extra:
        needs.append(_extra_need(field, what, extra, module))
    else:
        needs.append(Need(field, what, module, f"dbt-{adapter}"))
    return needs


def _sqlmesh_needs(loaded: LoadedConfig, project: ProjectConfig, index: int) -> list[Need]:
    types = sqlmesh_connection_types(loaded.project_dir(project), project.gateway)
    if "postgres" not in types:
        return []
    field = f"projects[{index}].gateway"
    return [_extra_need(field, f"SQLMesh project '{project.name}' (a postgres connection)", "postgres")]


def dbt_adapter_type(loaded: LoadedConfig, project: ProjectConfig) -> str | None:
    """The ``type`` of the dbt output the project runs with, when its profiles.yml states it plainly."""
    project_dir = loaded.project_dir(project)
    profile_name = _mapping(_read(project_dir / "dbt_project.yml")).get("profile")
    profiles_dir = loaded.profiles_dir(project) or project_dir
    candidates = [profiles_dir / "profiles.yml", Path.home() / ".dbt" / "profiles.yml"]
    for path in candidates:
        profile = _mapping(_mapping(_read(path)).get(profile_name))
        if profile:
            output = _mapping(_mapping(profile.get("outputs")).get(project.target or profile.get("target")))
            kind = output.get("type")
            return kind if isinstance(kind, str) and "{{" not in kind else None
    return None


def sqlmesh_connection_types(project_dir: Path, gateway: str | None) -> set[str]:
    """Connection types of the gateway a SQLMesh ``config.yaml`` runs with (none for ``config.py``)."""
    config = _mapping(_read(project_dir / "config.yaml") or _read(project_dir / "config.yml"))
    gateways = _mapping(config.get("gateways"))
    name = gateway or config.get("default_gateway") or next(iter(gateways), None)
    chosen = _mapping(gateways.get(name))
    connections = [chosen.get(key) for key in ("connection", "state_connection")]
    connections += [config.get(key) for key in ("default_connection", "default_state_connection")]
    return {c["type"] for c in connections if isinstance(c, dict) and isinstance(c.get("type"), str)}


def _read(path: Path) -> Any:
    """A YAML file's content, or None when it is absent or unreadable (the engine reports those)."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
