"""The `.dagctl/config.yaml` schema, loading and validation errors.

A config file lists the projects a code location serves::

    version: 3
    projects:
      - name: analytics
        framework: sqlmesh
        path: sqlmesh/analytics
        schedule: "*/15 * * * *"
      - name: marts
        framework: dbt
        path: dbt/marts
        target: prod

Paths are relative to the repository root: the directory that holds `.dagctl/`
(or, for a config file stored elsewhere, the file's own directory).

Every problem surfaces as one :class:`ConfigError` naming the file and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dagctl_dagster.k8s import layout
from dagctl_dagster.names import OBSERVABILITY_GROUP, OBSERVABILITY_PREFIX

PROJECT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ABSOLUTE_PATH_PATTERN = r"^/"
DIRECTORY_NAME_PATTERN = r"^[A-Za-z0-9._-]+$"
POOL_NAME_PATTERN = r"^[A-Za-z0-9_.\-/]+$"
_PATTERN_HINTS = {
    PROJECT_NAME_PATTERN: "is not a valid name; use letters, digits and underscores, not starting with a digit",
    ABSOLUTE_PATH_PATTERN: "is not an absolute path; it must start with '/'",
    DIRECTORY_NAME_PATTERN: "is not a single directory name; use letters, digits, '.', '_' and '-' (no '/')",
    POOL_NAME_PATTERN: "is not a pool name; use letters, digits, '_', '.', '-' and '/'",
}
# The key prefix and group of the observability assets: a project may not share them.
RESERVED_PROJECT_NAMES = frozenset({OBSERVABILITY_PREFIX, OBSERVABILITY_GROUP})
DEFAULT_JANITOR_SCHEDULE = "0 2 * * 0"
DEFAULT_STATE_BACKUP_SCHEDULE = "0 3 * * *"
DEFAULT_CONFIG_PATH = ".dagctl/config.yaml"
CONFIG_ENV_VAR = "DAGCTL_CONFIG"

# Bounds on what a config file may hold: far above any real config, far below harm.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 40
MAX_YAML_NODES = 100_000  # counted with every alias expanded
MAX_SCALAR_CHARS = 16 * 1024
# Echoed values and field names are cut to this many characters in messages.
MAX_ECHO_CHARS = 120


def default_config_path() -> str:
    """``$DAGCTL_CONFIG``, else ``.dagctl/config.yaml`` in the working directory (every CLI uses it)."""
    return os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH


def shorten(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class ConfigError(ValueError):
    """A `.dagctl/config.yaml` (or a project it names) is invalid.

    The message always starts with the file, then the field, then what to do.
    """

    def __init__(self, path: Path | str, message: str, field: str | None = None):
        self.path = Path(path)
        self.field = shorten(field) if field else field
        self.detail = shorten(" ".join(message.split()), 4 * MAX_ECHO_CHARS)
        where = f"{self.path}: {self.field}: " if self.field else f"{self.path}: "
        super().__init__(where + self.detail)


class _Strict(BaseModel):
    # protected_namespaces: field names like `model_duration_factor` are ours (pydantic<2.10 warns).
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class GitSyncConfig(_Strict):
    """Where a Kubernetes run pod clones the code location's repository from.

    A run of a job ``load_definitions`` built clones the commit the code server loaded (the
    ``dagctl/code_revision`` run tag), not ``ref``'s head; ``ref`` is what runs without that
    tag get (code not loaded from a git-sync checkout).
    """

    repository: str
    ref: str = "main"
    image: str = layout.GIT_SYNC_IMAGE
    credentials_secret: str | None = Field(
        default=None,
        description="Secret with GITSYNC_USERNAME / GITSYNC_PASSWORD keys for private repositories.",
    )
    mount_path: str = Field(
        default=layout.CODE_ROOT,
        pattern=ABSOLUTE_PATH_PATTERN,
        description="Absolute path of the emptyDir the clone lands in (git-sync's --root).",
    )
    link: str = Field(
        default=layout.CODE_LINK,
        pattern=DIRECTORY_NAME_PATTERN,
        description="Name of the checkout under mount_path (git-sync's --link); the code location "
        "must load the project from <mount_path>/<link>, as its own git-sync sidecar does.",
    )


class ResourceQuantities(_Strict):
    cpu: str | None = None
    memory: str | None = None


class ResourcesConfig(_Strict):
    requests: ResourceQuantities = ResourceQuantities()
    limits: ResourceQuantities = ResourceQuantities()

    def over(self, defaults: ResourcesConfig) -> ResourcesConfig:
        """These quantities, with ``defaults`` filling each one left unset (as a LimitRange would)."""
        merged = {
            kind: {
                **getattr(defaults, kind).model_dump(exclude_none=True),
                **getattr(self, kind).model_dump(exclude_none=True),
            }
            for kind in ("requests", "limits")
        }
        return ResourcesConfig.model_validate(merged)


class K8sDefaults(_Strict):
    """Platform defaults for every project's run pods; a project's `k8s:` block overrides them."""

    resources: ResourcesConfig = ResourcesConfig(
        requests=ResourceQuantities(cpu="250m", memory="512Mi"),
        limits=ResourceQuantities(cpu="1", memory="2Gi"),
    )
    git_sync: GitSyncConfig | None = Field(
        default=None,
        description="The repository the code server is git-synced from: every project's runs clone "
        "it (a project's own `k8s.git_sync` wins), so a run finds the definitions its code server loaded.",
    )


class SecretKeyRef(_Strict):
    secret: str
    key: str


class K8sConfig(_Strict):
    """What the Kubernetes run launcher injects into this project's run Jobs."""

    namespace: str | None = None
    image: str | None = None
    service_account: str | None = None
    git_sync: GitSyncConfig | None = None
    env_config_maps: list[str] = []
    env_secrets: list[str] = []
    state_db_password: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the SQLMesh state database password, exposed as SQLMESH_STATE_PASSWORD.",
    )
    resources: ResourcesConfig = ResourcesConfig()
    max_concurrent_models: int = Field(
        default=5, ge=1, description="Exposed to the run worker as MAX_CONCURRENT_MODELS."
    )
    run_as_user: int = Field(
        default=1000, ge=1, description="Non-root UID (and GID, fsGroup) of every container in the run pod."
    )
    ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class AlertThresholds(_Strict):
    run_duration_factor: float = Field(default=2.0, gt=0)
    model_duration_factor: float = Field(default=3.0, gt=0)
    state_growth_ratio: float = Field(default=0.2, gt=0)
    history_days: int = Field(default=7, ge=1)
    min_history: int = Field(
        default=3, ge=1, description="Earlier runs / materializations an average needs before it is compared."
    )


class AlertsConfig(_Strict):
    """Slack channels per tier, thresholds and cooldown. Every field may be overridden per project."""

    failure_channel: str | None = None
    page_channel: str | None = None
    warning_channel: str | None = None
    info_channel: str | None = None
    thresholds: AlertThresholds = AlertThresholds()
    cooldown_minutes: int = Field(default=60, ge=0)


class AlertThresholdsOverride(_Strict):
    """A project's overrides of :class:`AlertThresholds`; unset fields keep the top-level value."""

    run_duration_factor: float | None = Field(default=None, gt=0)
    model_duration_factor: float | None = Field(default=None, gt=0)
    state_growth_ratio: float | None = Field(default=None, gt=0)
    history_days: int | None = Field(default=None, ge=1)
    min_history: int | None = Field(default=None, ge=1)


class AlertsOverride(_Strict):
    """A project's overrides of the top-level :class:`AlertsConfig`; unset fields are inherited."""

    failure_channel: str | None = None
    page_channel: str | None = None
    warning_channel: str | None = None
    info_channel: str | None = None
    thresholds: AlertThresholdsOverride = AlertThresholdsOverride()
    cooldown_minutes: int | None = Field(default=None, ge=0)


class FreshnessConfig(_Strict):
    """Freshness SLAs: a model is late when its last completed interval (SQLMesh: in state;
    dbt: its last build) ends before the latest tick of its cron that is ``grace_minutes`` old."""

    enabled: bool = True
    grace_minutes: int = Field(default=60, ge=0, description="How long after an interval is due it may still arrive.")
    tier: Literal["warning", "page"] = Field(default="warning", description="`page` pages on a late model.")
    check_interval_seconds: int = Field(
        default=300, ge=5, description="How often the `dagctl_freshness` sensor evaluates every model."
    )


class FreshnessOverride(_Strict):
    """A project's overrides of the top-level :class:`FreshnessConfig`; unset fields are inherited."""

    enabled: bool | None = None
    grace_minutes: int | None = Field(default=None, ge=0)
    tier: Literal["warning", "page"] | None = None


class CostConfig(_Strict):
    """Warnings on what a model costs the warehouse (its statements and their time, counted per
    materialization): each factor, when set, warns when a model's value exceeds that many times
    its rolling average."""

    queries_factor: float | None = Field(
        default=None, gt=1, description="Warn when a model sends more than this × its average number of statements."
    )
    query_time_factor: float | None = Field(
        default=None, gt=1, description="Warn when a model's statements take more than this × their average time."
    )
    history_days: int = Field(default=7, ge=1, description="The window of the rolling average.")
    min_history: int = Field(
        default=3, ge=1, description="Earlier materializations the average needs before it is compared."
    )


class CostOverride(_Strict):
    """A project's overrides of the top-level :class:`CostConfig`; unset fields are inherited."""

    queries_factor: float | None = Field(default=None, gt=1)
    query_time_factor: float | None = Field(default=None, gt=1)
    history_days: int | None = Field(default=None, ge=1)
    min_history: int | None = Field(default=None, ge=1)


class StateBackupConfig(_Strict):
    enabled: bool = True
    schedule: str = DEFAULT_STATE_BACKUP_SCHEDULE
    directory: str = ".dagctl/state-backups"
    keep_days: int = Field(default=7, ge=1)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _checked_cron(value)


class ProjectConfig(_Strict):
    """One SQLMesh or dbt project served by the code location."""

    name: str = Field(pattern=PROJECT_NAME_PATTERN)
    framework: Literal["sqlmesh", "dbt"]
    path: str
    pool: str | None = Field(
        default=None,
        pattern=POOL_NAME_PATTERN,
        description="The Dagster concurrency pool of the project's model steps: projects on one warehouse "
        "name one pool, and at most its limit (`pools:`) of their models run at once across all runs.",
    )
    location: str | None = Field(
        default=None,
        pattern=PROJECT_NAME_PATTERN,
        description="The code location that serves this project when the config is served as several "
        "(`dagctl-dagster workspace`); projects of one location load, fail and reload together. "
        "Default: a location of its own, named after the project.",
    )
    # SQLMesh
    gateway: str | None = None
    environment: str = "prod"
    max_backfill_intervals: int = Field(default=1000, ge=1)
    protected: bool = False
    janitor_schedule: str | None = DEFAULT_JANITOR_SCHEDULE
    state_backup: StateBackupConfig = StateBackupConfig()
    # dbt
    target: str | None = None
    profiles_dir: str | None = None
    # automation
    schedule: str | None = None
    timezone: str | None = None
    overlap: Literal["allow", "forbid"] = "allow"
    # deployment and alerts
    k8s: K8sConfig = K8sConfig()
    alerts: AlertsOverride = Field(
        default_factory=AlertsOverride, description="Overrides of the top-level `alerts:` block."
    )
    freshness: FreshnessOverride = Field(
        default_factory=FreshnessOverride, description="Overrides of the top-level `freshness:` block."
    )
    cost: CostOverride = Field(default_factory=CostOverride, description="Overrides of the top-level `cost:` block.")

    @field_validator("schedule", "janitor_schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return value if value is None else _checked_cron(value)

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the project path is empty; give the directory relative to the repository root")
        return value

    @model_validator(mode="after")
    def _framework_fields(self) -> ProjectConfig:
        from dagctl_dagster.frameworks import plugin_for

        plugin_for(self.framework).check_config(self)
        return self

    @property
    def effective_schedule(self) -> str | None:
        from dagctl_dagster.frameworks import plugin_for

        return self.schedule if self.schedule is not None else plugin_for(self.framework).default_schedule


class DagctlConfig(_Strict):
    """The whole `.dagctl/config.yaml`."""

    version: str | int
    timezone: str = "UTC"
    alerts: AlertsConfig = AlertsConfig()
    k8s_defaults: K8sDefaults = K8sDefaults()
    freshness: FreshnessConfig = FreshnessConfig()
    cost: CostConfig = CostConfig()
    pools: dict[str, int] = Field(
        default_factory=dict,
        description="Pool name -> the most model steps of all runs and projects in it at once (a "
        "warehouse's slots); applied to Dagster's pool of that name when a run starts.",
    )
    projects: list[ProjectConfig] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        _check_timezone(value)
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> DagctlConfig:
        seen: set[str] = set()
        for index, project in enumerate(self.projects):
            if project.name in seen:
                raise _FieldProblem(
                    f"projects[{index}].name",
                    f"duplicate project name '{project.name}'; each project needs its own name",
                )
            if project.name in RESERVED_PROJECT_NAMES:
                raise _FieldProblem(
                    f"projects[{index}].name",
                    f"'{project.name}' is reserved for dagctl's own assets and group; choose another name",
                )
            seen.add(project.name)
            if project.timezone:
                try:
                    _check_timezone(project.timezone)
                except ValueError as exc:
                    raise _FieldProblem(f"projects[{index}].timezone", str(exc)) from None
        return self

    @field_validator("pools")
    @classmethod
    def _pool_limits(cls, pools: dict[str, int]) -> dict[str, int]:
        for name, limit in pools.items():
            if not re.match(POOL_NAME_PATTERN, name):
                raise _FieldProblem(f"pools.{name}", _PATTERN_HINTS[POOL_NAME_PATTERN])
            if isinstance(limit, bool) or limit < 1:
                raise _FieldProblem(f"pools.{name}", f"the limit must be a whole number of at least 1 (got {limit})")
        return pools

    def pool_limit(self, project: ProjectConfig) -> int | None:
        """The limit ``pools:`` sets on the project's pool (None: no pool, or its limit is set in Dagster)."""
        return self.pools.get(project.pool) if project.pool else None

    def project(self, name: str) -> ProjectConfig:
        for project in self.projects:
            if project.name == name:
                return project
        raise KeyError(f"no project named '{name}' (known: {', '.join(p.name for p in self.projects)})")

    def freshness_for(self, project: ProjectConfig) -> FreshnessConfig:
        """The project's freshness settings: the top-level block with the project's overrides."""
        return self.freshness.model_copy(update=project.freshness.model_dump(exclude_none=True))

    def cost_for(self, project: ProjectConfig) -> CostConfig:
        """The project's cost warnings: the top-level block with the project's overrides."""
        return self.cost.model_copy(update=project.cost.model_dump(exclude_none=True))

    def alerts_for(self, project: ProjectConfig) -> AlertsConfig:
        """The project's alert settings: the top-level block with the project's overrides."""
        overrides = project.alerts.model_dump(exclude_none=True)
        thresholds = overrides.pop("thresholds", {})
        if not overrides and not thresholds:
            return self.alerts
        merged_thresholds = self.alerts.thresholds.model_copy(update=thresholds)
        return self.alerts.model_copy(update={**overrides, "thresholds": merged_thresholds})


class _FieldProblem(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class LoadedConfig:
    """A validated config with the paths it was read from."""

    def __init__(self, path: Path, config: DagctlConfig):
        self.path = path
        self.config = config

    @property
    def root(self) -> Path:
        return repository_root(self.path)

    def project_dir(self, project: ProjectConfig) -> Path:
        return (self.root / project.path).resolve()

    def profiles_dir(self, project: ProjectConfig) -> Path | None:
        """A dbt project's ``profiles_dir`` (relative to the repository root); None: dbt's default."""
        return (self.root / project.profiles_dir).resolve() if project.profiles_dir else None

    @property
    def projects(self) -> Sequence[ProjectConfig]:
        return self.config.projects

    @property
    def version(self) -> str:
        return str(self.config.version)


def repository_root(config_path: Path) -> Path:
    """The directory project paths are relative to."""
    config_path = Path(config_path).resolve()
    if config_path.parent.name == ".dagctl":
        return config_path.parent.parent
    return config_path.parent


def load_config(path: str | Path, *, check_paths: bool = True) -> LoadedConfig:
    """Read, parse and validate a `.dagctl/config.yaml`.

    Raises:
        ConfigError: naming the file and the field, for unreadable YAML, an unknown or
            missing key, a wrong type, an unknown framework, a duplicate project name, or
            (with ``check_paths``) a project path that does not exist.
    """
    path = Path(path).resolve()
    raw = _read_yaml(path)
    config = parse_config(raw, path)
    loaded = LoadedConfig(path, config)
    for index, project in enumerate(config.projects):
        _check_inside_repository(loaded, project, index)
    if check_paths:
        for index, project in enumerate(config.projects):
            project_dir = loaded.project_dir(project)
            if not project_dir.is_dir():
                raise ConfigError(
                    path,
                    f"project '{project.name}': directory '{project_dir}' does not exist; "
                    "paths are relative to the repository root (the directory holding .dagctl/)",
                    field=f"projects[{index}].path",
                )
        from dagctl_dagster.extras import check_config_extras  # extras reads this module's types

        check_config_extras(loaded)
    return loaded


def _check_inside_repository(loaded: LoadedConfig, project: ProjectConfig, index: int) -> None:
    """A project directory (symlinks resolved) must lie inside the repository root."""
    root = loaded.root.resolve()
    project_dir = loaded.project_dir(project)
    if project_dir != root and root not in project_dir.parents:
        raise ConfigError(
            loaded.path,
            f"project '{project.name}': '{shorten(project.path)}' resolves to '{shorten(str(project_dir))}', "
            f"outside the repository root '{root}'; project paths must stay inside it",
            field=f"projects[{index}].path",
        )


def parse_config(raw: Any, path: Path) -> DagctlConfig:
    if not isinstance(raw, dict):
        raise ConfigError(path, "the file must hold a mapping with `version` and `projects`")
    try:
        return DagctlConfig.model_validate(raw)
    except ValidationError as exc:
        raise _config_error_from_validation(exc, raw, path) from None


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(path, "config file not found; create it or point DAGCTL_CONFIG at it")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, f"cannot read the config file: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB; a config file is far smaller")
    try:
        return load_bounded_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text (byte {exc.start})") from None
    except YamlLimitError as exc:
        raise ConfigError(path, f"{exc.problem} (line {exc.line})", field=exc.field or None) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, f"not valid YAML{where}: {problem}") from None


class YamlLimitError(Exception):
    """A YAML document exceeds a bound (nesting, nodes with aliases expanded, value size)."""

    def __init__(self, problem: str, field: str, line: int):
        self.problem = problem
        self.field = field
        self.line = line
        super().__init__(f"{field}: {problem} (line {line})")


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents past the bounds while composing them.

    Aliases are counted as expanded: an anchor bomb of a few hundred bytes is refused before
    any of it is built. The field path of the offending node is tracked for the message.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._path: list[str] = []
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._path.append(_path_part(index))
        try:
            if len(self._path) > MAX_YAML_DEPTH:
                self._refuse(f"nesting is deeper than {MAX_YAML_DEPTH} levels")
            node = super().compose_node(parent, index)
            if node is not None:
                self._measure(node)
            return node
        finally:
            self._path.pop()

    def _measure(self, node: yaml.Node) -> None:
        if id(node) in self._sizes:  # an alias: its anchor's expanded size counts again
            size = self._sizes[id(node)]
        elif isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR_CHARS:
                self._refuse(f"a value of {len(node.value)} characters is longer than {MAX_SCALAR_CHARS}", node)
            size = 1
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes.get(id(item), 1) for item in node.value)
        else:
            size = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        self._sizes[id(node)] = size
        if size > MAX_YAML_NODES:
            self._refuse(
                f"expands to more than {MAX_YAML_NODES} values (YAML aliases are counted as copies); "
                "remove the aliases or the repetition",
                node,
            )

    def _refuse(self, problem: str, node: yaml.Node | None = None) -> None:
        mark = node.start_mark if node is not None else self.peek_event().start_mark
        raise YamlLimitError(problem, "".join(self._path).lstrip("."), mark.line + 1)


def _path_part(index: Any) -> str:
    if isinstance(index, int) and not isinstance(index, bool):
        return f"[{index}]"
    if isinstance(index, yaml.ScalarNode):
        return "." + shorten(index.value, 40)
    return ""


def load_bounded_yaml(text: str) -> Any:
    """``yaml.safe_load`` with bounds on nesting, value size and aliases (see :class:`_BoundedLoader`).

    Raises:
        YamlLimitError: naming the field path and line of the node past a bound.
        yaml.YAMLError: the text is not YAML.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _config_error_from_validation(exc: ValidationError, raw: dict, path: Path) -> ConfigError:
    error = exc.errors()[0]
    location = list(error["loc"])
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _FieldProblem):
        return ConfigError(path, str(ctx_error), field=ctx_error.field)
    field = _format_location(location)
    field = _name_project(field, location, raw)
    return ConfigError(path, _describe(dict(error)), field=field or None)


def _format_location(location: list[Any]) -> str:
    parts: list[str] = []
    for item in location:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("function-after", "function-before") or str(item).startswith("literal["):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _name_project(field: str, location: list[Any], raw: dict) -> str:
    if len(location) >= 2 and location[0] == "projects" and isinstance(location[1], int):
        projects = raw.get("projects") or []
        if location[1] < len(projects) and isinstance(projects[location[1]], dict):
            name = projects[location[1]].get("name")
            if name:
                return f"{field} (project '{name}')"
    return field


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    given = error.get("input")
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling against docs/config.md"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        return f"'{shorten(str(given))}' is not allowed; use one of {expected}"
    if kind == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern", "")
        hint = _PATTERN_HINTS.get(pattern, f"does not match the pattern {pattern}")
        return f"'{shorten(str(given))}' {hint}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message


_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


def _checked_cron(value: str) -> str:
    if not _is_cron(value):
        raise ValueError(f"'{shorten(value)}' is not a cron expression (five fields, e.g. '*/15 * * * *')")
    return value


def _is_cron(value: str) -> bool:
    if value.startswith("@"):
        return value in {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"}
    fields = value.split()
    return len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)


def _check_timezone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{shorten(value)}' is not an IANA timezone (e.g. 'UTC', 'Europe/Berlin')") from None
