"""SQLMesh's configs as ``sqlmesh`` resolves them in a project's directory, and what they say."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlmesh.core.config import Config, GatewayConfig
    from sqlmesh.core.config.connection import ConnectionConfig

# What SQLMesh's `load_configs` reads besides the project's own files
# (sqlmesh/core/config/loader.py, pinned by tests/test_sqlmesh_internals.py): the personal
# configs in SQLMesh's home, the `SQLMESH__...` variables, and a dbt project's profiles.
SQLMESH_HOME_ENV = "SQLMESH_HOME"
PERSONAL_CONFIG_NAMES = ("config.yml", "config.yaml", "sqlmesh.yml", "sqlmesh.yaml")
CONFIG_ENV_PREFIX = "sqlmesh__"
DBT_PROJECT_FILE = "dbt_project.yml"

# Connection paths DuckDB treats as something other than a file relative to the process.
_NOT_A_RELATIVE_FILE = (":memory:", "md:", "motherduck:")
_FILE_ATTACH_TYPES = {"duckdb", "sqlite"}


def load_project_configs(paths: Sequence[Path], working_dir: Path) -> dict[Path, Config]:
    """SQLMesh's configs for ``paths``, with relative DuckDB files resolved against ``working_dir``.

    ``sqlmesh`` opens ``database: db.duckdb`` relative to the directory it runs in; a run
    worker runs wherever Dagster (or a pod's image) started it, so the paths are made
    absolute as if SQLMesh ran in ``working_dir``.
    """
    from sqlmesh.core.config import Config
    from sqlmesh.core.config.loader import load_configs

    from dagctl_dagster.sqlmesh.imports import own_modules

    with own_modules(paths):  # a config.py may import the project's own modules
        configs = load_configs("config", Config, list(paths))
    return {path: _with_absolute_paths(config, working_dir) for path, config in configs.items()}


def sqlmesh_home() -> Path:
    """Where SQLMesh keeps its personal configs (``sqlmesh.core.constants.SQLMESH_PATH``)."""
    return Path(os.environ.get(SQLMESH_HOME_ENV) or Path.home() / ".sqlmesh")


@dataclass(frozen=True)
class ConfigInputs:
    """What SQLMesh's configs of a project depend on outside the project's directory."""

    personal_configs: tuple[tuple[str, bytes | None], ...]  # path, content (None: absent)
    config_variables: tuple[tuple[str, str], ...]  # `SQLMESH__...` variables, sorted


def config_inputs_outside(project_dir: Path) -> ConfigInputs | None:
    """What loading the project's configs reads besides its own files, or None when that is not
    known: a dbt project's SQLMesh config comes from its dbt profiles, wherever they are."""
    if (project_dir / DBT_PROJECT_FILE).exists():
        return None
    home = sqlmesh_home()
    personal = tuple((str(home / name), _content(home / name)) for name in PERSONAL_CONFIG_NAMES)
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.lower().startswith(CONFIG_ENV_PREFIX)))
    return ConfigInputs(personal_configs=personal, config_variables=variables)


def _content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def sqlmesh_project_name(config: Config) -> str:
    """The config's multi-repository ``project:`` name ('' when it names none)."""
    return config.project or ""


@dataclass(frozen=True)
class StateConnection:
    """Where a project's SQLMesh state lives: its gateway's state connection, else its connection."""

    backend: str  # SQLMesh's connection type: duckdb, postgres, ...
    schema: str | None
    database: str | None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None


def state_connection(config: Config, gateway: str | None) -> StateConnection:
    """The state connection of ``gateway`` (default: the config's default gateway)."""
    name = gateway or config.default_gateway_name
    connection = config.get_state_connection(name) or config.get_connection(name)
    return StateConnection(
        backend=connection.type_,
        schema=config.get_state_schema(name),
        database=getattr(connection, "database", None),
        host=getattr(connection, "host", None),
        port=getattr(connection, "port", None),
        user=getattr(connection, "user", None),
        password=getattr(connection, "password", None),
    )


def _with_absolute_paths(config: Config, working_dir: Path) -> Config:
    update: dict[str, Any] = {}
    if isinstance(config.gateways, dict):
        update["gateways"] = {name: _gateway_with_absolute_paths(g, working_dir) for name, g in config.gateways.items()}
    default_connection = config.default_connection
    if default_connection is not None:
        update["default_connection"] = _connection_with_absolute_paths(default_connection, working_dir)
    test_connection = config.default_test_connection_
    if test_connection is not None:
        update["default_test_connection_"] = _connection_with_absolute_paths(test_connection, working_dir)
    return config.model_copy(update=update) if update else config


def _gateway_with_absolute_paths(gateway: GatewayConfig, working_dir: Path) -> GatewayConfig:
    update = {
        name: _connection_with_absolute_paths(getattr(gateway, name), working_dir)
        for name in ("connection", "state_connection", "test_connection")
        if getattr(gateway, name, None) is not None
    }
    return gateway.model_copy(update=update)


def _connection_with_absolute_paths(connection: ConnectionConfig, working_dir: Path) -> ConnectionConfig:
    from sqlmesh.core.config.connection import DuckDBConnectionConfig

    if not isinstance(connection, DuckDBConnectionConfig):
        return connection
    update: dict[str, Any] = {}
    if connection.database:
        update["database"] = _absolute(connection.database, working_dir)
    if connection.catalogs:
        update["catalogs"] = {
            name: _attach_with_absolute_path(value, working_dir) for name, value in connection.catalogs.items()
        }
    return connection.model_copy(update=update) if update else connection


def _attach_with_absolute_path(value: Any, working_dir: Path) -> Any:
    """A ``catalogs:`` entry: a path string or an attach options object (``type``/``path``)."""
    if isinstance(value, str):
        return _absolute(value, working_dir)
    if getattr(value, "type", None) in _FILE_ATTACH_TYPES:
        return value.model_copy(update={"path": _absolute(value.path, working_dir)})
    return value


def _absolute(path: str, working_dir: Path) -> str:
    if not path or path.startswith(_NOT_A_RELATIVE_FILE) or "://" in path or os.path.isabs(path):
        return path
    return os.path.normpath(working_dir / path)
