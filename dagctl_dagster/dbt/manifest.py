"""The dbt manifest a code location loads from: parsed once, reused while the project is unchanged.

dagster-dbt builds assets from ``target/manifest.json``. Where that file comes from:

- **Development and tests.** When the code location loads, :func:`prepare_manifest`
  fingerprints the project's source files (models, seeds, macros, YAML, ``profiles.yml``)
  together with the dbt version and target. If ``target/manifest.json`` was written for
  that fingerprint it is reused; otherwise ``dbt parse`` runs once, in this process (dbt
  is imported already), under a file lock so that processes loading at the same time parse
  once between them. This is
  dagster-dbt's ``DbtProject.prepare_if_dev()`` made incremental: it also protects run
  workers and ``dagster api grpc`` from a stale manifest, and costs nothing when nothing
  changed.
- **Production images.** Prepare at build time, as dagster-dbt's
  ``dagster-dbt project prepare-and-package`` does: run ``dagctl-dagster dbt prepare`` in
  the image build, so that ``target/manifest.json`` and its fingerprint ship in the image.
  At start-up the fingerprint matches and dbt does not parse (set the same ``env_var()``
  values the runtime uses, since they are part of the fingerprint).
- ``DAGSTER_DBT_PARSE_PROJECT_ON_LOAD=1`` forces a parse at every load (the switch
  dagster-dbt's project scaffold used), e.g. when models read ``env_var()`` values that
  change the manifest.

A parse error becomes a :class:`~dagctl_dagster.ProjectLoadError` naming the project and
the file dbt complains about.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from dagster_dbt import DagsterDbtCliRuntimeError, DagsterDbtError, DbtProject
from filelock import FileLock

from dagctl_dagster.dbt.internals.parsing import parse_in_process
from dagctl_dagster.dbt.internals.resources import (
    DagctlDbtCliResource,
    dbt_core_version,
    own_dbt_executable,
    read_manifest,
)
from dagctl_dagster.errors import ProjectLoadError

PARSE_ON_LOAD_ENV = "DAGSTER_DBT_PARSE_PROJECT_ON_LOAD"
FINGERPRINT_FILE_NAME = "dagctl_manifest_fingerprint"
PARSE_LOCK_TIMEOUT_S = 300
_SOURCE_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".jinja"}
_NEVER_SOURCES = {"target", "logs", "dbt_packages", "__pycache__"}
_ENV_VAR_CALL = re.compile(r"""env_var\(\s*['"]([^'"]+)['"]""")
_FILE_IN_MESSAGE = re.compile(r"[\w./\\-]+\.(?:sql|yml|yaml|csv|py|md)\b")


def open_dbt_project(
    project_name: str, project_dir: Path, *, target: str | None, profiles_dir: Path | None
) -> DbtProject:
    """dagster-dbt's ``DbtProject``, or a :class:`ProjectLoadError` saying what is missing."""
    if not project_dir.is_dir():
        raise ProjectLoadError(
            project_name,
            f"dbt project directory {project_dir} does not exist; fix the project's `path` in the config",
        )
    if not (project_dir / "dbt_project.yml").is_file():
        raise ProjectLoadError(
            project_name,
            "no dbt_project.yml; `path` must point at the directory that holds the dbt project",
            project_dir / "dbt_project.yml",
        )
    profiles_dir = profiles_dir or project_dir
    if not (profiles_dir / "profiles.yml").is_file():
        raise ProjectLoadError(
            project_name,
            "no profiles.yml; put one in the project directory or set `profiles_dir` in the config",
            profiles_dir / "profiles.yml",
        )
    try:
        return DbtProject(project_dir=project_dir, profiles_dir=profiles_dir, target=target)
    except DagsterDbtError as exc:
        raise ProjectLoadError(project_name, str(exc), project_dir) from exc


def prepare_manifest(project_name: str, dbt_project: DbtProject) -> Path:
    """The path of a manifest that matches the project's files, parsing only if it does not.

    Raises:
        ProjectLoadError: ``dbt parse`` failed; names the file dbt reports.
    """
    fingerprint = project_fingerprint(dbt_project)
    fingerprint_path = _fingerprint_path(dbt_project)
    if not _parse_forced() and _is_current(dbt_project.manifest_path, fingerprint_path, fingerprint):
        return dbt_project.manifest_path
    dbt_project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    # Code servers and run workers may load at the same moment; one of them parses.
    with FileLock(dbt_project.manifest_path.with_name("dagctl_parse.lock"), timeout=PARSE_LOCK_TIMEOUT_S):
        if _parse_forced() or not _is_current(dbt_project.manifest_path, fingerprint_path, fingerprint):
            _parse(project_name, dbt_project)
            _write_atomically(fingerprint_path, fingerprint)
    return dbt_project.manifest_path


def manifest_is_current(dbt_project: DbtProject) -> bool:
    """Whether loading would reuse ``target/manifest.json`` rather than run ``dbt parse``."""
    fingerprint = project_fingerprint(dbt_project)
    return not _parse_forced() and _is_current(dbt_project.manifest_path, _fingerprint_path(dbt_project), fingerprint)


def dbt_executable() -> str:
    """The ``dbt`` of this Python's environment (the dbt-core dagster-dbt imports), else PATH's."""
    beside_python = own_dbt_executable()
    return str(beside_python) if beside_python.exists() else shutil.which("dbt") or "dbt"


def dbt_cli_resource(dbt_project: DbtProject, *, in_process_adapter: bool = True) -> DagctlDbtCliResource:
    """dagster-dbt's CLI resource for the project (its directory, profiles and target).

    ``in_process_adapter``: False where no row count can be taken (DuckDB, see
    :class:`~dagctl_dagster.dbt.internals.resources.DagctlDbtCliResource`).
    """
    return DagctlDbtCliResource(
        project_dir=dbt_project, dbt_executable=dbt_executable(), in_process_adapter=in_process_adapter
    )


def adapter_type(manifest_path: Path) -> str | None:
    """The adapter the manifest was parsed for (``metadata.adapter_type``: duckdb, postgres, ...)."""
    return read_manifest(manifest_path).get("metadata", {}).get("adapter_type")


def _parse(project_name: str, dbt_project: DbtProject) -> None:
    if dbt_project.has_uninstalled_deps:
        _install_deps(project_name, dbt_project)
    target_path = Path(dbt_project.project_dir, dbt_project.target_path)
    failure = parse_in_process(
        Path(dbt_project.project_dir),
        profiles_dir=Path(dbt_project.profiles_dir),
        target=dbt_project.target,
        target_path=target_path,
    )
    if failure is not None:
        message = " ".join(failure.split())
        raise ProjectLoadError(
            project_name, f"dbt parse failed: {message}", _file_named_in(message, dbt_project.project_dir)
        )
    if not dbt_project.manifest_path.is_file():
        raise ProjectLoadError(
            project_name, f"dbt parse wrote no manifest at {dbt_project.manifest_path}", dbt_project.project_dir
        )


def _install_deps(project_name: str, dbt_project: DbtProject) -> None:
    dbt = dbt_cli_resource(dbt_project)
    try:
        # dagster-dbt echoes dbt's output to stdout; its error is reported once, below.
        with contextlib.redirect_stdout(io.StringIO()):
            dbt.cli(["deps", "--quiet"], target_path=dbt_project.target_path).wait()
    except DagsterDbtCliRuntimeError as exc:
        message = _dbt_error_message(exc)
        raise ProjectLoadError(project_name, f"dbt deps failed: {message}", dbt_project.project_dir) from exc


def project_fingerprint(dbt_project: DbtProject) -> str:
    """A hash of what ``dbt parse`` reads: source files, profiles, the ``env_var()`` values
    they use, the dbt version and the target."""
    digest = hashlib.sha256(f"dbt {dbt_core_version()}\0target {dbt_project.target}\0".encode())
    project_dir = dbt_project.project_dir
    files = sorted(_source_files(project_dir, skip=Path(dbt_project.target_path).parts[0]))
    profiles = Path(dbt_project.profiles_dir) / "profiles.yml"
    if profiles.is_file() and profiles not in files:
        files.append(profiles)
    env_vars: set[str] = set()
    for path in files:
        content = path.read_bytes()
        env_vars.update(_ENV_VAR_CALL.findall(content.decode("utf-8", errors="replace")))
        digest.update(os.path.relpath(path, project_dir).encode() + b"\0")
        digest.update(hashlib.sha256(content).digest())
    # env_var() values shape the manifest (e.g. the DuckDB path names the database), as in
    # dbt's own partial parsing. Only their hash is stored, never a value.
    for name in sorted(env_vars):
        digest.update(f"env {name}={os.environ.get(name)}\0".encode())
    return digest.hexdigest()


def _source_files(project_dir: Path, *, skip: str) -> Iterator[Path]:
    for root, dirs, files in os.walk(project_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _NEVER_SOURCES | {skip}]
        for name in files:
            if Path(name).suffix in _SOURCE_SUFFIXES:
                yield Path(root, name)


def _fingerprint_path(dbt_project: DbtProject) -> Path:
    return dbt_project.manifest_path.with_name(FINGERPRINT_FILE_NAME)


def _parse_forced() -> bool:
    return os.environ.get(PARSE_ON_LOAD_ENV, "").strip().lower() in {"1", "true", "yes"}


def _is_current(manifest_path: Path, fingerprint_path: Path, fingerprint: str) -> bool:
    try:
        return manifest_path.is_file() and fingerprint_path.read_text().strip() == fingerprint
    except OSError:
        return False


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _dbt_error_message(exc: DagsterDbtCliRuntimeError) -> str:
    """dbt's own error lines, without dagster-dbt's "check the compute logs" wrapper."""
    text = str(exc)
    marker = "Errors parsed from dbt logs:"
    if marker in text:
        text = text.split(marker, 1)[1]
    text = text.replace("Encountered an error:", "")
    return " ".join(text.split())


def _file_named_in(message: str, project_dir: Path) -> Path | None:
    """The first file the message names that exists in the project, relative to it."""
    for match in _FILE_IN_MESSAGE.finditer(message):
        candidate = Path(match.group(0))
        for base in (project_dir, project_dir / "models"):
            if (base / candidate).is_file():
                return (base / candidate).relative_to(project_dir)
    return None
