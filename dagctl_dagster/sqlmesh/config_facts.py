"""What a load needs to know of a SQLMesh project's config, cached so loads skip SQLMesh.

Before it builds anything, a load asks each project's SQLMesh config two things: the
multi-repository ``project:`` name (which projects load into one Context) and where its
gateway keeps state (two projects must not share an environment of one state). Loading a
config means importing SQLMesh; with the translation cache warm, nothing else does.

The answers are cached beside the translation (:mod:`.translation_cache`, same directory,
same switch) under a key at least as strict as the translation's: every file of the project
and the environment variables they mention, plus what SQLMesh's config loading reads outside
the project (its personal configs, ``SQLMESH__...`` variables; a dbt-format project, whose
config comes from its dbt profiles, is never cached). A config that does not load is never
cached: the next load loads it again, with the same error.

Within one load, each project's facts are read once (:func:`loaded_config_facts`): the key
hashes every file of the project, and a load asks for the facts of a project several times.
A new load (a code server's reload) reads them again, so it sees edits.

Example::

    facts = loaded_config_facts(loaded, project)
    facts.sqlmesh_project, facts.state
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.sqlmesh import internals
from dagctl_dagster.sqlmesh.translation_cache import CacheEntry, KeyDigest, caching_enabled, entry_path

FORMAT_VERSION = 1
_KIND = "config"


@dataclass(frozen=True)
class StateLocation:
    """The database and schema a gateway keeps SQLMesh state in (no credentials)."""

    backend: str  # SQLMesh's connection type: duckdb, postgres, ...
    host: str | None
    port: int | None
    database: str | None
    schema: str | None  # None: SQLMesh's default state schema


@dataclass(frozen=True)
class ConfigFacts:
    sqlmesh_project: str  # the multi-repository ``project:`` name ('' when the config names none)
    state: StateLocation | None  # None: the gateway's state connection does not resolve


_FACTS_OF_LOAD: weakref.WeakKeyDictionary[LoadedConfig, dict[str, ConfigFacts]] = weakref.WeakKeyDictionary()


def loaded_config_facts(loaded: LoadedConfig, project: ProjectConfig) -> ConfigFacts:
    """:func:`config_facts` of a project of ``loaded``, read once for that loaded config.

    Raises:
        ProjectLoadError: the config does not load (read again on every call, so every caller
            that asks gets the error).
    """
    facts_of_load = _FACTS_OF_LOAD.setdefault(loaded, {})
    facts = facts_of_load.get(project.name)
    if facts is None:
        facts = facts_of_load[project.name] = config_facts(loaded.project_dir(project), project)
    return facts


def config_facts(project_dir: Path, project: ProjectConfig) -> ConfigFacts:
    """The facts of the project's SQLMesh config as ``sqlmesh`` would load it in ``project_dir``.

    Raises:
        ProjectLoadError: the config does not load (naming the project and, where known, the file).
    """
    entry = _cache_entry(project_dir, project)
    facts = entry.load() if entry else None
    if facts is None:
        facts = _load_facts(project_dir, project)
        if entry:
            entry.store(facts)
    return facts


def _load_facts(project_dir: Path, project: ProjectConfig) -> ConfigFacts:
    from dagctl_dagster.sqlmesh.context import project_load_error

    try:
        configs = internals.load_project_configs([project_dir], project_dir)
    except Exception as exc:
        raise project_load_error(project.name, exc) from None
    config = next(iter(configs.values()), None)
    if config is None:
        return ConfigFacts(sqlmesh_project="", state=None)
    return ConfigFacts(sqlmesh_project=internals.sqlmesh_project_name(config), state=_state_location(config, project))


def _state_location(config: Any, project: ProjectConfig) -> StateLocation | None:
    try:
        state = internals.state_connection(config, project.gateway)
    except Exception:  # the project's own load names the problem
        return None
    return StateLocation(
        backend=state.backend, host=state.host, port=state.port, database=state.database, schema=state.schema
    )


def _cache_entry(project_dir: Path, project: ProjectConfig) -> CacheEntry[ConfigFacts] | None:
    if not caching_enabled():
        return None
    try:
        key = _cache_key(project_dir, project)
    except OSError:
        return None
    return CacheEntry(entry_path(project_dir, project, _KIND, key), ConfigFacts) if key else None


def _cache_key(project_dir: Path, project: ProjectConfig) -> str | None:
    """None when the config may depend on something the key cannot cover."""
    outside = internals.config_inputs_outside(project_dir)
    if outside is None:
        return None
    digest = KeyDigest()
    digest.add("format", str(FORMAT_VERSION))
    digest.add_runtime()
    digest.add("gateway", project.gateway or "")
    # Relative DuckDB paths resolve against the directory as given (and a symlink's target).
    digest.add("project_dir", str(project_dir))
    digest.add("project_dir_resolved", str(project_dir.resolve()))
    digest.add_modules("config_facts.py", "imports.py", "internals/configs.py")
    for path, content in outside.personal_configs:
        digest.add(f"personal:{path}", b"absent" if content is None else b"present:" + content)
    for name, value in outside.config_variables:
        digest.add(f"variable:{name}", value)
    digest.add_project_files(project_dir)
    return digest.hexdigest()
